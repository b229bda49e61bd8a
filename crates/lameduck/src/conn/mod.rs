//! One application connection, from accept to close: protocol detection,
//! serving, and what each shutdown phase asks of it.
//!
//! - HTTP/2 gets GOAWAY as soon as draining starts (only the server can move
//!   a client off a connection it has pinned), then closes with its last
//!   stream; a connection opened during the drain gets it after its first
//!   request, which a GOAWAY would otherwise refuse. The final GOAWAY waits
//!   `idle_grace` for streams the client opened before it saw the first one
//!   (see `frames`).
//! - HTTP/1 responses carry `Connection: close` from draining on (see
//!   `track`), which closes busy connections after their response. Idle ones
//!   are left alone until closing, then closed once idle for `idle_grace`: a
//!   connection used more recently may be carrying the client's next request,
//!   and closing it would race that request.
//! - An HTTP/1 connection idle for a second is parked: hyper lets go of it
//!   (and of its buffers) and the task waits for the next request with
//!   nothing but the socket, as it did for the first; the shutdown treats it
//!   as any idle connection.
//! - Waiting for a request, an HTTP/1 connection is under one of two limits
//!   (see [`ReadLimit`]): with nothing of the request arrived yet it is idle,
//!   and closed after `idle_timeout`, longer than the idle pools of the
//!   proxies in front, so that the server never closes a connection that a
//!   proxy is about to reuse; once the headers' first byte arrived, they
//!   must be complete within `header_read_timeout`.

mod frames;
mod io;
mod state;
mod track;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use self::io::{ActivityIo, PREFIX_CAPACITY};
use self::state::{ConnState, ReadLimit};
use self::track::Tracked;
use crate::config::LONGEST;
use crate::context::ServerContext;
use crate::lifecycle::Phase;
use crate::quiet::Quiet;
use crate::service::AppService;

const H2_PREFACE: &[u8; PREFIX_CAPACITY] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves one accepted connection until it closes, or until `cut` drops it.
pub(crate) async fn serve(
    mut stream: TcpStream,
    service: impl AppService,
    shared: Arc<ServerContext>,
    cut: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let state = Arc::new(ConnState::new(shared, cut.clone()));
    let _open = OpenConnection::new(&state.shared);
    let service = Tracked::new(service, Arc::clone(&state));
    let mut parked = false;
    loop {
        let mut prefix = [0; PREFIX_CAPACITY];
        // A parked connection goes on with HTTP/1.
        let Some((protocol, len)) = detect(&mut stream, &mut prefix, &state, &cut, !parked).await
        else {
            return;
        };
        let io = match protocol {
            Protocol::Http1 => ActivityIo::new(stream, &prefix[..len], Arc::clone(&state)),
            Protocol::Http2 => ActivityIo::http2(stream, &prefix[..len], Arc::clone(&state)),
        };
        let io = TokioIo::new(io);
        let shared = &state.shared;
        // Boxed, so that a parked connection's task holds neither hyper's
        // connection state nor its buffers.
        let outcome = match protocol {
            Protocol::Http1 => {
                let conn = shared.h1.serve_connection(io, service.clone());
                let mut conn = Box::pin(conn.with_upgrades());
                drive(
                    conn.as_mut(),
                    |c| c.graceful_shutdown(),
                    protocol,
                    &state,
                    &cut,
                )
                .await
            }
            Protocol::Http2 => {
                let mut conn = Box::pin(shared.h2.serve_connection(io, service.clone()));
                drive(
                    conn.as_mut(),
                    |c| c.graceful_shutdown(),
                    protocol,
                    &state,
                    &cut,
                )
                .await
            }
        };
        match (outcome, state.take_parked()) {
            (Outcome::Parked, Some(socket)) => {
                stream = socket;
                parked = true;
            }
            _ if state.upgraded() => return upgraded(&state, &cut).await,
            _ => return,
        }
    }
}

/// Holds the connection (its permit, its place in the open connections and
/// in the shutdown's wait) while the application owns the upgraded socket:
/// until it drops the socket, or a forced shutdown cuts it off.
async fn upgraded(state: &ConnState, cut: &CancellationToken) {
    let metrics = &state.shared.metrics;
    metrics.upgraded_connections.inc();
    tokio::select! {
        // The socket's drop stores a permit if it comes first (a client
        // gone before the upgrade completed, say).
        () = state.upgrade_closed.notified() => debug!("upgraded connection closed"),
        // Counted by the shutdown, which reads the gauge before cutting.
        () = cut.cancelled() => debug!("upgraded connection dropped by a forced shutdown"),
    }
    metrics.upgraded_connections.dec();
}

/// How [`drive`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The connection is closed.
    Closed,
    /// hyper let go of an idle HTTP/1 connection; its socket is parked.
    Parked,
}

/// Waits for a request's first bytes, within the idle timeout; with
/// `allow_h2`, reads until they tell HTTP/2's preface from anything else
/// (treated as HTTP/1), within the header read timeout. Returns the protocol
/// and how many bytes of `buf` were read; `None` if the connection should
/// just close.
///
/// A new connection starts here, and so does a parked one: idle, it holds
/// nothing but its socket.
async fn detect(
    stream: &mut TcpStream,
    buf: &mut [u8; PREFIX_CAPACITY],
    state: &ConnState,
    cut: &CancellationToken,
    allow_h2: bool,
) -> Option<(Protocol, usize)> {
    let shared = &state.shared;
    let mut phase = shared.lifecycle.subscribe();
    let mut len = 0;
    loop {
        // Exact, since only this loop reads: no byte yet, the connection is
        // idle; then the headers have started.
        let (limit, deadline) = if len == 0 {
            (ReadLimit::Idle, state.idle_deadline())
        } else {
            (ReadLimit::Headers, state.header_deadline())
        };
        let read = tokio::select! {
            biased;
            () = cut.cancelled() => return None,
            read = stream.read(&mut buf[len..]) => read,
            () = tokio::time::sleep_until(deadline) => {
                log_read_limit(limit);
                return None;
            }
            // Only while nothing has arrived; a partial request is not idle,
            // and the header read timeout bounds it.
            () = idle_while_closing(&mut phase, state), if len == 0 => return None,
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                state.touch();
                len += n;
            }
        }
        if !allow_h2 || buf[..len] != H2_PREFACE[..len] {
            return Some((Protocol::Http1, len));
        }
        if len == H2_PREFACE.len() {
            return Some((Protocol::Http2, len));
        }
    }
}

/// Serves `conn` to its end, asking it to close when the shutdown phase says
/// so; an HTTP/1 connection idle for [`PARK_AFTER`] is parked instead.
async fn drive<C>(
    mut conn: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    protocol: Protocol,
    state: &ConnState,
    cut: &CancellationToken,
) -> Outcome
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut phase = state.shared.lifecycle.subscribe();
    let accepted_while_draining = *phase.borrow() >= Phase::Draining;
    let close_requested = async {
        match protocol {
            Protocol::Http2 if accepted_while_draining => {
                // The client connected to send a request; a GOAWAY ahead of it
                // would refuse it. Serve its first stream, then ask it to move
                // on (or when closing starts, whichever first).
                tokio::select! {
                    () = first_request(state) => {}
                    _ = phase.wait_for(|p| *p >= Phase::Closing) => {}
                }
            }
            Protocol::Http2 => {
                let _ = phase.wait_for(|p| *p >= Phase::Draining).await;
            }
            Protocol::Http1 => idle_while_closing(&mut phase, state).await,
        }
    };
    let read_timeout = async {
        match protocol {
            Protocol::Http1 => read_timeout(state).await,
            Protocol::Http2 => std::future::pending().await,
        }
    };
    // Woken for every read and write, the task polls these only when they
    // fire (see `quiet`).
    let mut close_requested = pin!(Quiet::new(close_requested));
    let mut cancelled = pin!(Quiet::new(cut.cancelled()));
    let mut read_timeout = pin!(Quiet::new(read_timeout));
    let park = async {
        match protocol {
            Protocol::Http1 => idle_at_least(state, PARK_AFTER).await,
            Protocol::Http2 => std::future::pending().await,
        }
    };
    let mut park = pin!(Quiet::new(park));
    let mut asked = false;
    let mut parking = false;
    loop {
        tokio::select! {
            biased;
            () = &mut cancelled => {
                debug!("connection dropped by a forced shutdown");
                return Outcome::Closed;
            }
            result = conn.as_mut() => {
                if let Err(error) = result {
                    debug!(%error, "connection ended with an error");
                }
                if parking {
                    debug!("idle connection parked");
                    return Outcome::Parked;
                }
                return Outcome::Closed;
            }
            () = &mut close_requested, if !asked => {
                if protocol == Protocol::Http1 && state.request_arriving() {
                    // Headers started, then nothing for the whole grace:
                    // hyper would wait for the header read timeout, and the
                    // shutdown with it. No response is pending, so just close.
                    debug!("closing a connection stalled in its request headers");
                    return Outcome::Closed;
                }
                // HTTP/2: GOAWAY, the connection ends with its last stream.
                // HTTP/1: idle, so hyper closes it at once.
                if protocol == Protocol::Http2 {
                    state.start_going_away();
                }
                graceful_shutdown(conn.as_mut());
                asked = true;
            }
            limit = &mut read_timeout => {
                // No response is pending, so just close (as hyper does).
                log_read_limit(limit);
                return Outcome::Closed;
            }
            () = &mut park, if !asked => {
                // Idle, nothing arriving, and hyper is polled only by this
                // task: it closes at once and hands the socket back (see
                // `io`). Bytes arriving meanwhile wait in the socket.
                state.start_parking();
                graceful_shutdown(conn.as_mut());
                asked = true;
                parking = true;
            }
        }
    }
}

/// Resolves, with the limit that expired, once an HTTP/1 connection waiting
/// for a request has been idle for the idle timeout, or has waited the
/// header read timeout for the rest of headers that started arriving.
///
/// hyper's own header read timeout arms and drops a timer for every
/// request, and also runs while the connection is idle. This one sleeps
/// until the earliest possible deadline and checks again on waking, so a
/// request costs no timer at all.
async fn read_timeout(state: &ConnState) -> ReadLimit {
    let config = &state.shared.config;
    let header = config.header_read_timeout.min(LONGEST);
    loop {
        let now = Instant::now();
        let wake = match state.read_limit() {
            Some((limit, deadline)) if deadline <= now => return limit,
            // Bytes arriving from now on set a header deadline no earlier
            // than `now + header`, which may come before the idle one.
            Some((ReadLimit::Idle, deadline)) => deadline.min(now + header),
            Some((ReadLimit::Headers, deadline)) => deadline,
            // After the request in flight, either deadline is at least this
            // far away.
            None => now + header.min(config.idle_timeout.min(LONGEST)),
        };
        tokio::time::sleep_until(wake).await;
    }
}

fn log_read_limit(limit: ReadLimit) {
    match limit {
        ReadLimit::Idle => debug!("closing a connection idle for the idle timeout"),
        ReadLimit::Headers => {
            debug!("no complete request headers within the header read timeout");
        }
    }
}

/// How long an HTTP/1 connection must have been idle before it is parked:
/// hyper lets go of it, and with it of its buffers (about 16 KiB), and the
/// task waits for the next request with nothing but the socket. Rebuilding
/// hyper's state for the next request takes microseconds, nothing next to a
/// second of idleness.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// Resolves once the connection has been idle for `after` with no request
/// on its way. Lazy, like [`header_read_timeout`].
async fn idle_at_least(state: &ConnState, after: Duration) {
    loop {
        match state.idle_for(Instant::now()) {
            Some(idle) if idle >= after && !state.request_arriving() => return,
            Some(idle) if idle < after => tokio::time::sleep(after - idle).await,
            _ => tokio::time::sleep(after).await,
        }
    }
}

/// Resolves once a request is in flight on a connection accepted while draining.
async fn first_request(state: &ConnState) {
    while !state.busy() {
        state.requests_changed.notified().await;
    }
}

/// Resolves once the server is closing and the connection has been idle for
/// `idle_grace`.
async fn idle_while_closing(phase: &mut watch::Receiver<Phase>, state: &ConnState) {
    // An error means the lifecycle is gone, which only happens once the
    // server itself is; treat it as closing.
    let _ = phase.wait_for(|p| *p >= Phase::Closing).await;
    let grace = state.shared.config.idle_grace;
    loop {
        match state.idle_for(Instant::now()) {
            Some(idle) if idle >= grace => return,
            Some(idle) => tokio::time::sleep(grace - idle).await,
            // The permit of a notification sent before we wait is kept, so
            // a request ending right now is not missed.
            None => state.requests_changed.notified().await,
        }
    }
}

/// Counts the connection in `http_server_open_connections` while it lives.
struct OpenConnection<'a>(&'a ServerContext);

impl<'a> OpenConnection<'a> {
    fn new(shared: &'a ServerContext) -> Self {
        shared.metrics.open_connections.inc();
        Self(shared)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.metrics.open_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::sleep;

    use super::state::tests::conn_state;
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_outlives_the_header_timeout_until_the_idle_timeout() {
        let state = conn_state(2 * SECOND, 60 * SECOND);
        let start = Instant::now();
        assert_eq!(read_timeout(&state).await, ReadLimit::Idle);
        assert_eq!(start.elapsed(), 60 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_that_start_late_get_the_header_timeout_from_their_first_byte() {
        let state = conn_state(2 * SECOND, 60 * SECOND);
        let start = Instant::now();
        let (limit, ()) = tokio::join!(read_timeout(&state), async {
            sleep(9 * SECOND + SECOND / 2).await;
            state.touch();
        });
        assert_eq!(limit, ReadLimit::Headers);
        assert_eq!(start.elapsed(), 11 * SECOND + SECOND / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_under_neither_limit() {
        let state = conn_state(2 * SECOND, 60 * SECOND);
        let start = Instant::now();
        let (limit, ()) = tokio::join!(read_timeout(&state), async {
            sleep(SECOND).await;
            state.touch();
            state.start_request();
            sleep(29 * SECOND).await;
            state.end_request(state.shared.nanos_since_epoch(Instant::now()));
        });
        assert_eq!(limit, ReadLimit::Idle);
        assert_eq!(start.elapsed(), 90 * SECOND);
    }
}
