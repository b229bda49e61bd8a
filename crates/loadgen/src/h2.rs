//! HTTP/2 over cleartext with prior knowledge (h2c), on the `h2` crate itself.
//!
//! hyper's pooled client resends requests it believes were not sent and does
//! not say which streams the server processed. Here each of `h2_conns` slots
//! owns one connection at a time, and `h2_streams` lanes per slot each run one
//! stream at a time on it, so every stream is accounted for. A connection
//! that is going away (GOAWAY received, closed, a send refused) is retired:
//! its streams in flight finish or fail on it, new requests of the slot go to
//! a new connection.
//!
//! A failed stream is classified by RFC 9113 §8.7, with what [`sniff`] saw
//! on the wire (`h2` keeps GOAWAY's last-stream-id to itself):
//!
//! - *not sent*: `ready()`/`send_request` failed, no HEADERS left the client;
//!   the request goes to a new connection and has no outcome of its own;
//! - *refused unprocessed*: its stream id is above a GOAWAY's last-stream-id,
//!   or it was reset with REFUSED_STREAM, before any response head; it is
//!   resent once, and a 2xx answer to the resend is `refused_resent`;
//! - *failed*: anything else (a reset of a stream the server may have
//!   processed, the connection's end, a timeout, an error status).
//!
//! [`sniff`]: crate::sniff

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;
use h2::client::SendRequest;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::conn;
use crate::context::RunContext;
use crate::error::Error;
use crate::mix::{Plan, Route};
use crate::outcome::{self, Kind, Marks, Outcome, Phase, Response};
use crate::sniff::{self, Frame, Sniffer};
use crate::worker::{self, Queue};

/// Times in a row a request may find its connection going away before it
/// was sent. Each time costs a new connection; a server that sends GOAWAY on
/// every new connection must not make a request loop until its timeout.
const MAX_NOT_SENT: u32 = 8;

/// REFUSED_STREAM resets remembered per connection and not yet looked up
/// (looked up when their stream fails, so normally a handful).
const MAX_REFUSED_KEPT: usize = 1024;

/// Bytes of a non-HTTP/2 answer kept for the probe's message.
const PREVIEW: usize = 64;

/// Sentinel of [`Seen::goaway_last`]: no GOAWAY yet (real ids are 31-bit).
const NO_GOAWAY: u32 = u32::MAX;

/// What was seen on one connection, shared by its reader and its streams.
#[derive(Debug)]
struct Seen {
    /// The lowest last-stream-id of the GOAWAYs received, or [`NO_GOAWAY`].
    goaway_last: AtomicU32,
    /// Takes no new requests: GOAWAY received, closed, or a send failed.
    retired: AtomicBool,
    /// Streams reset with REFUSED_STREAM, until their stream looks.
    refused: Mutex<VecDeque<u32>>,
    /// The server opened with a SETTINGS frame, as HTTP/2 servers do.
    spoke_h2: AtomicBool,
    /// The first bytes of the server's answer, when that was not HTTP/2.
    not_h2: OnceLock<Vec<u8>>,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            goaway_last: AtomicU32::new(NO_GOAWAY),
            retired: AtomicBool::new(false),
            refused: Mutex::new(VecDeque::new()),
            spoke_h2: AtomicBool::new(false),
            not_h2: OnceLock::new(),
        }
    }
}

impl Seen {
    fn goaway(&self, last_stream_id: u32) {
        self.goaway_last.fetch_min(last_stream_id, Ordering::AcqRel);
        self.retire();
    }

    fn goaway_last(&self) -> Option<u32> {
        let last = self.goaway_last.load(Ordering::Acquire);
        (last != NO_GOAWAY).then_some(last)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn refused(&self, stream_id: u32) {
        let mut ids = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() == MAX_REFUSED_KEPT {
            // h2's own error still names REFUSED_STREAM; this is a backup.
            ids.pop_front();
        }
        ids.push_back(stream_id);
    }

    /// Whether `stream_id` was reset with REFUSED_STREAM (forgets it).
    fn take_refused(&self, stream_id: u32) -> bool {
        let mut ids = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        match ids.iter().position(|&id| id == stream_id) {
            Some(i) => {
                ids.remove(i);
                true
            }
            None => false,
        }
    }

    /// Classifies a stream that failed; `head` says whether its response
    /// head had arrived.
    fn failed(&self, stream_id: u32, head: bool, err: &h2::Error) -> Attempt {
        let refused_on_wire = self.take_refused(stream_id);
        match classify(
            stream_id,
            head,
            self.goaway_last(),
            refused_on_wire,
            Cause::of(err),
            &outcome::chain(err),
        ) {
            Verdict::Refused(refusal) => Attempt::Refused(refusal),
            Verdict::Failed(kind, message) => Attempt::Done(Outcome::failed(kind, message)),
        }
    }
}

/// The TCP stream, with the server's frame headers parsed as they are read.
#[derive(Debug)]
struct SniffIo {
    io: TcpStream,
    sniffer: Sniffer,
    seen: Arc<Seen>,
    /// For counting GOAWAYs; none for the probe.
    shared: Option<Arc<RunContext>>,
    /// Whether the first frame header has been looked at.
    first_known: bool,
    preview: [u8; PREVIEW],
    preview_len: usize,
}

impl SniffIo {
    fn new(io: TcpStream, seen: Arc<Seen>, shared: Option<Arc<RunContext>>) -> Self {
        Self {
            io,
            sniffer: Sniffer::default(),
            seen,
            shared,
            first_known: false,
            preview: [0; PREVIEW],
            preview_len: 0,
        }
    }

    fn observe(&mut self, bytes: &[u8]) {
        if !self.first_known {
            let take = (PREVIEW - self.preview_len).min(bytes.len());
            self.preview[self.preview_len..self.preview_len + take].copy_from_slice(&bytes[..take]);
            self.preview_len += take;
        }
        let Self {
            sniffer,
            seen,
            shared,
            ..
        } = self;
        sniffer.feed(bytes, |frame| match frame {
            Frame::GoAway { last_stream_id, .. } => {
                seen.goaway(last_stream_id);
                if let Some(shared) = shared {
                    shared.recorder.h2_goaway();
                }
            }
            Frame::Reset {
                stream_id,
                error_code: sniff::REFUSED_STREAM,
            } => seen.refused(stream_id),
            Frame::Reset { .. } => {}
        });
        if !self.first_known
            && let Some(kind) = self.sniffer.first_kind()
        {
            self.first_known = true;
            if kind == sniff::SETTINGS {
                self.seen.spoke_h2.store(true, Ordering::Release);
            } else {
                let _ = self
                    .seen
                    .not_h2
                    .set(self.preview[..self.preview_len].to_vec());
            }
        }
    }
}

impl AsyncRead for SniffIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        self.observe(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SniffIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One HTTP/2 connection and the task that drives it; dropped when no lane
/// uses it any more, which closes it.
#[derive(Debug)]
struct H2Conn {
    sender: SendRequest<Bytes>,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts HTTP/2 on a connected stream: the preface and SETTINGS are written,
/// the connection runs in a task of its own.
async fn handshake(
    stream: TcpStream,
    seen: Arc<Seen>,
    shared: Option<Arc<RunContext>>,
) -> Result<H2Conn, h2::Error> {
    // Requests are single small writes; do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let io = SniffIo::new(stream, seen.clone(), shared);
    let (sender, connection) = h2::client::Builder::new()
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            // Its errors reach the streams; a closed connection takes no
            // new ones.
            let _ = connection.await;
            seen.retire();
        }
    });
    Ok(H2Conn { sender, seen, task })
}

/// Opens a connection for a slot.
async fn open(shared: &Arc<RunContext>) -> Result<H2Conn, Outcome> {
    let stream = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| outcome::connect_failure(&e))?;
    shared.recorder.h2_connection_opened();
    handshake(stream, Arc::new(Seen::default()), Some(shared.clone()))
        .await
        .map_err(|e| {
            Outcome::failed(
                Kind::Reset,
                format!("HTTP/2 handshake: {}", outcome::chain(&e)),
            )
        })
}

/// A `GET` for an absolute `uri` (its scheme and authority become
/// `:scheme` and `:authority`).
fn request(uri: &Uri) -> Request<()> {
    let mut req = Request::new(());
    *req.uri_mut() = uri.clone();
    *req.version_mut() = Version::HTTP_2;
    req
}

/// The head of the request `plan` says: a `GET`, or a `POST` whose body
/// follows in a DATA frame.
fn plan_request(plan: &Plan) -> Request<()> {
    let mut req = request(&plan.uri);
    if plan.route == Route::Echo {
        *req.method_mut() = Method::POST;
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, conn::OCTETS);
        headers.insert(CONTENT_LENGTH, HeaderValue::from(plan.body.len()));
    }
    req
}

/// A connection slot: the connection its lanes share, replaced when retired.
#[derive(Debug, Default)]
struct Slot {
    current: tokio::sync::Mutex<Option<Arc<H2Conn>>>,
}

/// Runs one stream at a time on its slot's connection.
#[derive(Debug)]
struct Lane {
    slot: Arc<Slot>,
    /// The connection in use and this lane's handle on it (cloning one per
    /// request would lock the connection's state each time).
    conn: Option<(Arc<H2Conn>, SendRequest<Bytes>)>,
}

/// Why a stream was refused unprocessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    AboveGoAway { stream_id: u32, last_stream_id: u32 },
    RefusedStream { stream_id: u32 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AboveGoAway {
                stream_id,
                last_stream_id,
            } => write!(
                f,
                "stream {stream_id} refused unprocessed: above GOAWAY's last-stream-id \
                 {last_stream_id}"
            ),
            Refusal::RefusedStream { stream_id } => write!(
                f,
                "stream {stream_id} refused unprocessed: RST_STREAM with REFUSED_STREAM"
            ),
        }
    }
}

/// How far a request got, for the message if it times out.
#[derive(Debug)]
struct Track {
    phase: Phase,
    stream_id: Option<u32>,
    /// Set once the request has been refused and is being resent.
    refusal: Option<Refusal>,
}

impl Track {
    fn new() -> Self {
        Self {
            phase: Phase::Connecting,
            stream_id: None,
            refusal: None,
        }
    }

    fn timeout_message(&self, timeout: Duration) -> String {
        let mut msg = outcome::timeout_message(timeout, self.phase, self.stream_id);
        if let Some(refusal) = self.refusal {
            msg.push_str(&format!(", resent after: {refusal}"));
        }
        msg
    }
}

/// The end of one attempt on one connection.
#[derive(Debug)]
enum Attempt {
    /// A response, or a failure that is the request's outcome.
    Done(Outcome),
    /// Nothing was sent: the connection was going away.
    NotSent(h2::Error),
    /// The server did not process it.
    Refused(Refusal),
}

impl Lane {
    /// The slot's connection, opened or replaced if need be.
    async fn connection(
        &mut self,
        shared: &Arc<RunContext>,
    ) -> Result<&mut (Arc<H2Conn>, SendRequest<Bytes>), Outcome> {
        let usable = match self.conn.take() {
            Some(c) if !c.0.seen.is_retired() => c,
            _ => {
                // One lane opens the slot's next connection; the others wait
                // for it rather than open their own.
                let mut current = self.slot.current.lock().await;
                if current.as_ref().is_some_and(|c| c.seen.is_retired()) {
                    *current = None;
                }
                let conn = match &*current {
                    Some(c) => c.clone(),
                    None => current.insert(Arc::new(open(shared).await?)).clone(),
                };
                let sender = conn.sender.clone();
                (conn, sender)
            }
        };
        Ok(self.conn.insert(usable))
    }

    /// Runs a request to its outcome: connects if need be, puts it on a new
    /// connection if it could not be sent, resends it once if refused.
    async fn request(
        &mut self,
        shared: &Arc<RunContext>,
        plan: &Plan,
        track: &mut Track,
    ) -> Outcome {
        let mut not_sent = 0;
        loop {
            track.phase = Phase::Connecting;
            let (conn, sender) = match self.connection(shared).await {
                Ok(c) => c,
                Err(failed) => return failed,
            };
            match exchange(&conn.seen, sender, plan, track).await {
                Attempt::Done(outcome) => return outcome,
                Attempt::NotSent(err) => {
                    conn.seen.retire();
                    not_sent += 1;
                    if not_sent == MAX_NOT_SENT {
                        return Outcome::failed(
                            Kind::Reset,
                            format!(
                                "not sent: {MAX_NOT_SENT} HTTP/2 connections in a row were going \
                                 away before the request could be sent; the last said: {}",
                                outcome::chain(&err)
                            ),
                        );
                    }
                    shared.recorder.h2_requeued_not_sent();
                }
                Attempt::Refused(refusal) => {
                    if let Some(first) = track.refusal {
                        return Outcome::failed(
                            Kind::Reset,
                            format!("{refusal}, again after being resent once (first: {first})"),
                        );
                    }
                    // A GOAWAY has retired the connection already; after a
                    // REFUSED_STREAM alone it may take the resend.
                    track.refusal = Some(refusal);
                    shared.recorder.h2_resent();
                }
            }
        }
    }
}

/// One stream: send the request, read the whole response.
async fn exchange(
    seen: &Seen,
    sender: &mut SendRequest<Bytes>,
    plan: &Plan,
    track: &mut Track,
) -> Attempt {
    if let Err(e) = poll_fn(|cx| sender.poll_ready(cx)).await {
        return Attempt::NotSent(e);
    }
    let post = plan.route == Route::Echo;
    let (response, mut body_out) = match sender.send_request(plan_request(plan), !post) {
        Ok(sent) => sent,
        Err(e) => return Attempt::NotSent(e),
    };
    let id = u32::from(response.stream_id());
    track.stream_id = Some(id);
    track.phase = Phase::AwaitingResponse;
    // A few hundred bytes, far within the stream's initial window: h2 sends
    // them right after the HEADERS.
    if post && let Err(e) = body_out.send_data(plan.body.clone(), true) {
        return seen.failed(id, false, &e);
    }
    let mut echo = conn::echo_of(plan);
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return seen.failed(id, false, &e),
    };
    track.phase = Phase::ReadingBody;
    let (mut parts, mut body) = response.into_parts();
    let mut kept = Bytes::new();
    while let Some(chunk) = body.data().await {
        let data = match chunk {
            Ok(data) => data,
            Err(e) => return seen.failed(id, true, &e),
        };
        // Hand the window back, or the connection's window would run out
        // for its other streams.
        let _ = body.flow_control().release_capacity(data.len());
        if let Some(echo) = &mut echo {
            echo.feed(&data);
        }
        conn::keep(&mut kept, data);
    }
    Attempt::Done(Outcome::Response(Response {
        status: parts.status,
        close: false,
        body: kept,
        resent: track.refusal.is_some(),
        wrong_echo: echo.and_then(crate::echo::EchoCheck::finish),
        marks: Marks::take(&mut parts.headers),
    }))
}

/// What an `h2` error says about how a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The connection broke or closed.
    Io,
    /// The server reset the stream.
    RemoteReset(Reason),
    /// The server's GOAWAY ended the connection.
    RemoteGoAway(Reason),
    /// `h2` gave up on it: a protocol error of the server, or a local limit.
    Local,
}

impl Cause {
    fn of(err: &h2::Error) -> Self {
        match err.reason() {
            _ if err.is_io() => Cause::Io,
            Some(reason) if err.is_remote() && err.is_reset() => Cause::RemoteReset(reason),
            Some(reason) if err.is_remote() && err.is_go_away() => Cause::RemoteGoAway(reason),
            _ => Cause::Local,
        }
    }
}

/// The classification of a failed stream.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not processed by the server: may be resent (RFC 9113 §8.7).
    Refused(Refusal),
    /// The request's outcome.
    Failed(Kind, String),
}

/// Classifies stream `id`, failed with `cause` (`msg`), before (`head`
/// false) or after its response head; `goaway_last` is the lowest GOAWAY
/// last-stream-id seen on its connection, `refused_on_wire` whether a
/// RST_STREAM with REFUSED_STREAM was seen for it.
fn classify(
    id: u32,
    head: bool,
    goaway_last: Option<u32>,
    refused_on_wire: bool,
    cause: Cause,
    msg: &str,
) -> Verdict {
    let refused_stream = refused_on_wire || cause == Cause::RemoteReset(Reason::REFUSED_STREAM);
    // A response head means the server processed the stream, whatever it
    // says afterwards.
    if !head {
        if refused_stream {
            return Verdict::Refused(Refusal::RefusedStream { stream_id: id });
        }
        if let Some(last) = goaway_last
            && id > last
        {
            return Verdict::Refused(Refusal::AboveGoAway {
                stream_id: id,
                last_stream_id: last,
            });
        }
    }
    let goaway = match goaway_last {
        Some(last) if id <= last => format!(" although GOAWAY's last-stream-id {last} covers it"),
        Some(last) => format!(
            " after its response head had arrived, although GOAWAY's last-stream-id {last} is \
             below it"
        ),
        None => String::new(),
    };
    let (kind, what) = match cause {
        Cause::RemoteReset(_) if refused_stream => (
            Kind::Reset,
            format!(
                "stream {id} reset with REFUSED_STREAM after its response head had arrived, so \
                 it was processed"
            ),
        ),
        Cause::RemoteReset(reason) => (
            Kind::Reset,
            format!("stream {id} reset by the server with {reason:?}{goaway}"),
        ),
        Cause::Io | Cause::RemoteGoAway(_) if goaway.is_empty() => (
            Kind::Reset,
            format!("stream {id} ended by the connection's end, no GOAWAY received"),
        ),
        Cause::Io | Cause::RemoteGoAway(_) => (
            Kind::Reset,
            format!("stream {id} ended by the connection's end{goaway}"),
        ),
        Cause::Local => (Kind::Other, format!("stream {id} failed{goaway}")),
    };
    Verdict::Failed(kind, format!("{what}: {msg}"))
}

/// Starts the lanes: `h2_streams` per slot, `h2_conns` slots, all taking
/// jobs from `queue`.
pub(crate) fn spawn_lanes(shared: &Arc<RunContext>, queue: &Queue) -> Vec<JoinHandle<()>> {
    let config = &shared.config;
    let mut lanes = Vec::with_capacity(config.h2_conns * config.h2_streams);
    for _ in 0..config.h2_conns {
        let slot = Arc::new(Slot::default());
        for _ in 0..config.h2_streams {
            lanes.push(tokio::spawn(lane(
                shared.clone(),
                queue.clone(),
                slot.clone(),
            )));
        }
    }
    lanes
}

/// How a request left the lane's `select!`.
enum End {
    Done(Outcome),
    TimedOut,
    Aborted,
}

/// Takes jobs one at a time and runs each on the slot's connection.
async fn lane(shared: Arc<RunContext>, queue: Queue, slot: Arc<Slot>) {
    let mut lane = Lane { slot, conn: None };
    let timeout = shared.config.timeout;
    // One timer and one abort waiter for the lane's life. The timer is not
    // re-armed per request: when it fires, it is moved on to the deadline of
    // the request then running, if that is later. Under load it fires about
    // once per `timeout`, however many requests the lane runs meanwhile.
    let mut timer = pin!(tokio::time::sleep(timeout));
    let mut aborted = pin!(shared.abort.cancelled());
    while let Some((job, started)) = worker::next_job(&shared, &queue).await {
        let deadline = started + timeout;
        let mut track = Track::new();
        let end = {
            let mut request = pin!(lane.request(&shared, &job.plan, &mut track));
            loop {
                tokio::select! {
                    biased;
                    () = &mut aborted => break End::Aborted,
                    () = &mut timer => {
                        if Instant::now() >= deadline {
                            break End::TimedOut;
                        }
                        timer.as_mut().reset(deadline.into());
                    }
                    outcome = &mut request => break End::Done(outcome),
                }
            }
        };
        let outcome = match end {
            End::Done(outcome) => outcome,
            End::TimedOut => Outcome::failed(Kind::Timeout, track.timeout_message(timeout)),
            End::Aborted => outcome::aborted(),
        };
        let reused = track.stream_id.is_some_and(|id| id > 1);
        shared.recorder.ended(
            &job.plan,
            started,
            Instant::now(),
            &outcome,
            reused,
            job.burst,
        );
        drop(job.permit);
    }
}

/// Before a run with HTTP/2: one connection, the h2 handshake and `GET uri`.
/// Fails only when a connection is made and what answers is not HTTP/2; a
/// failed connect is logged and the run goes on (in a cluster the Service
/// may not be ready yet).
pub(crate) async fn probe(
    addr: SocketAddr,
    target: &str,
    uri: &Uri,
    timeout: Duration,
) -> Result<(), Error> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%target, error = %e, "HTTP/2 probe: cannot connect; starting anyway");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(%target, ?timeout, "HTTP/2 probe: connect timed out; starting anyway");
            return Ok(());
        }
    };
    let seen = Arc::new(Seen::default());
    let attempt = async {
        let mut conn = handshake(stream, seen.clone(), None).await?;
        poll_fn(|cx| conn.sender.poll_ready(cx)).await?;
        let (response, _no_body) = conn.sender.send_request(request(uri), true)?;
        let response = response.await?;
        let status = response.status();
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk?.len());
        }
        Ok::<StatusCode, h2::Error>(status)
    };
    let result = tokio::time::timeout(timeout, attempt).await;
    let spoke_h2 = seen.spoke_h2.load(Ordering::Acquire);
    let not_h2 = |reason: String| Error::NotH2c {
        target: target.to_owned(),
        reason,
    };
    match result {
        Ok(Ok(status)) => {
            tracing::debug!(%target, %status, "HTTP/2 probe answered");
            Ok(())
        }
        Ok(Err(e)) if spoke_h2 => {
            let error = outcome::chain(&e);
            tracing::warn!(%target, %error, "HTTP/2 probe: GET / failed; starting anyway");
            Ok(())
        }
        Ok(Err(e)) => Err(not_h2(match seen.not_h2.get() {
            Some(bytes) => answered_with(bytes),
            None => format!(
                "it closed the connection without an HTTP/2 frame ({})",
                outcome::chain(&e)
            ),
        })),
        Err(_) => match seen.not_h2.get() {
            Some(bytes) => Err(not_h2(answered_with(bytes))),
            None => {
                tracing::warn!(
                    %target,
                    ?timeout,
                    "HTTP/2 probe: no answer in time; starting anyway"
                );
                Ok(())
            }
        },
    }
}

/// Describes a non-HTTP/2 answer by its first line, quoted and escaped so
/// that the message stays on one line.
fn answered_with(bytes: &[u8]) -> String {
    let line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(bytes);
    format!(
        "it answered the connection preface with {:?}",
        String::from_utf8_lossy(line)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(v: Verdict) -> (Kind, String) {
        match v {
            Verdict::Failed(kind, msg) => (kind, msg),
            Verdict::Refused(r) => panic!("refused: {r}"),
        }
    }

    #[test]
    fn above_goaway_before_a_head_is_refused() {
        let v = classify(
            5,
            false,
            Some(1),
            false,
            Cause::RemoteGoAway(Reason::NO_ERROR),
            "x",
        );
        assert_eq!(
            v,
            Verdict::Refused(Refusal::AboveGoAway {
                stream_id: 5,
                last_stream_id: 1
            })
        );
        // However h2 ends it: the connection may be gone already.
        let v = classify(3, false, Some(1), false, Cause::Io, "x");
        assert!(matches!(v, Verdict::Refused(_)));
    }

    #[test]
    fn refused_stream_is_refused_from_the_wire_or_from_h2() {
        let by_h2 = classify(
            7,
            false,
            None,
            false,
            Cause::RemoteReset(Reason::REFUSED_STREAM),
            "x",
        );
        let by_wire = classify(7, false, None, true, Cause::Io, "x");
        for v in [by_h2, by_wire] {
            assert_eq!(v, Verdict::Refused(Refusal::RefusedStream { stream_id: 7 }));
        }
        assert_eq!(
            Refusal::RefusedStream { stream_id: 7 }.to_string(),
            "stream 7 refused unprocessed: RST_STREAM with REFUSED_STREAM"
        );
    }

    #[test]
    fn covered_streams_ended_by_the_connection_failed() {
        let msg = "connection error received: not a result of an error";
        let (kind, text) = failed(classify(
            17,
            false,
            Some(19),
            false,
            Cause::RemoteGoAway(Reason::NO_ERROR),
            msg,
        ));
        assert_eq!(kind, Kind::Reset);
        assert_eq!(
            text,
            "stream 17 ended by the connection's end although GOAWAY's last-stream-id 19 \
             covers it: connection error received: not a result of an error"
        );
        // The last-stream-id itself is covered.
        let (_, text) = failed(classify(5, false, Some(5), false, Cause::Io, "broken pipe"));
        assert!(
            text.contains("stream 5") && text.contains("last-stream-id 5"),
            "{text}"
        );
        let (kind, text) = failed(classify(5, false, None, false, Cause::Io, "broken pipe"));
        assert_eq!(kind, Kind::Reset);
        assert!(text.contains("no GOAWAY"), "{text}");
    }

    #[test]
    fn other_resets_failed() {
        let (kind, text) = failed(classify(
            3,
            false,
            None,
            false,
            Cause::RemoteReset(Reason::INTERNAL_ERROR),
            "stream error received: unexpected internal error encountered",
        ));
        assert_eq!(kind, Kind::Reset);
        assert!(
            text.starts_with("stream 3 reset by the server with INTERNAL_ERROR: "),
            "{text}"
        );
    }

    #[test]
    fn after_the_response_head_nothing_is_refused() {
        let (kind, text) = failed(classify(
            9,
            true,
            None,
            true,
            Cause::RemoteReset(Reason::REFUSED_STREAM),
            "x",
        ));
        assert_eq!(kind, Kind::Reset);
        assert!(text.contains("so it was processed"), "{text}");
        let (_, text) = failed(classify(9, true, Some(1), false, Cause::Io, "x"));
        assert!(text.contains("response head had arrived"), "{text}");
    }

    #[test]
    fn protocol_errors_are_other() {
        let (kind, text) = failed(classify(
            1,
            false,
            None,
            false,
            Cause::Local,
            "frame with invalid size",
        ));
        assert_eq!(kind, Kind::Other);
        assert_eq!(text, "stream 1 failed: frame with invalid size");
    }

    #[test]
    fn causes_of_h2_errors() {
        assert_eq!(
            Cause::of(&h2::Error::from(Reason::PROTOCOL_ERROR)),
            Cause::Local
        );
    }

    #[test]
    fn timeout_messages_name_the_stream_and_the_refusal() {
        let mut track = Track::new();
        track.phase = Phase::AwaitingResponse;
        track.stream_id = Some(3);
        track.refusal = Some(Refusal::AboveGoAway {
            stream_id: 5,
            last_stream_id: 1,
        });
        let msg = track.timeout_message(Duration::from_secs(1));
        assert!(
            msg.contains("(timed out while waiting for the response head of stream 3)"),
            "{msg}"
        );
        assert!(
            msg.ends_with(
                "resent after: stream 5 refused unprocessed: above GOAWAY's last-stream-id 1"
            ),
            "{msg}"
        );
    }

    #[test]
    fn non_http2_answers_are_quoted_on_one_line() {
        assert_eq!(
            answered_with(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"),
            r#"it answered the connection preface with "HTTP/1.1 400 Bad Request""#
        );
        let odd = answered_with(b"\x00\x01\x02\"\t");
        assert!(!odd.contains('\n'), "{odd}");
    }

    #[test]
    fn seen_keeps_the_lowest_goaway_and_forgets_looked_up_refusals() {
        let seen = Seen::default();
        assert_eq!(seen.goaway_last(), None);
        assert!(!seen.is_retired());
        seen.goaway(0x7fff_ffff);
        seen.goaway(7);
        seen.goaway(9);
        assert_eq!(seen.goaway_last(), Some(7));
        assert!(seen.is_retired());
        seen.refused(3);
        seen.refused(5);
        assert!(seen.take_refused(5));
        assert!(!seen.take_refused(5));
        assert!(seen.take_refused(3));
        for id in 0..(MAX_REFUSED_KEPT as u32 + 10) {
            seen.refused(id);
        }
        assert!(!seen.take_refused(0), "the oldest was dropped");
        assert!(seen.take_refused(MAX_REFUSED_KEPT as u32 + 9));
    }
}
