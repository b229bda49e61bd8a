//! Request tracking: wraps the application's service so that every request is
//! counted while in flight (per connection and in the metrics), timed, and,
//! once shutdown began, answered over HTTP/1 with `Connection: close`.
//!
//! A request is in flight from the moment hyper hands it to the service until
//! its response body has been written or dropped: the guard travels from the
//! service future into the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::method_index;
use crate::server::Shared;
use crate::shutdown::Phase;

/// What a connection task and its requests know about each other.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) shared: Arc<Shared>,
    in_flight: AtomicU32,
    /// Last sign of life, in nanoseconds since `shared.epoch`: bytes read, or
    /// a response finished.
    last_active: AtomicU64,
    /// When the connection began waiting for request headers: when it
    /// opened, then whenever a request ended.
    waiting_since: AtomicU64,
    /// Bytes arrived that no request has claimed yet: a request is on its way.
    request_arriving: AtomicBool,
    /// Set while an idle HTTP/1 connection is being parked: hyper hands the
    /// socket back instead of shutting it down (see `conn`).
    parking: AtomicBool,
    /// The socket, once hyper has let go of it.
    parked: Mutex<Option<TcpStream>>,
    /// HTTP/2: the connection was asked to go away (see `frames`).
    going_away: AtomicBool,
    /// HTTP/1: a response switched protocols; the socket goes to the
    /// application once hyper has written it (see `conn`).
    upgraded: AtomicBool,
    /// Notified when the socket is dropped after an upgrade.
    pub(crate) upgrade_closed: Notify,
    /// Dropping the connection, forced shutdown: an upgraded socket fails its
    /// next read or write (see `io`).
    pub(crate) cut: CancellationToken,
    /// Wakes the connection task, during shutdown, when a request starts or
    /// the last one finishes.
    pub(crate) requests_changed: Notify,
}

impl ConnState {
    pub(crate) fn new(shared: Arc<Shared>, cut: CancellationToken) -> Self {
        let now = shared.nanos_since_epoch(Instant::now());
        Self {
            shared,
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(now),
            waiting_since: AtomicU64::new(now),
            request_arriving: AtomicBool::new(false),
            parking: AtomicBool::new(false),
            parked: Mutex::new(None),
            going_away: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            upgrade_closed: Notify::new(),
            cut,
            requests_changed: Notify::new(),
        }
    }

    /// Records that the peer sent bytes.
    pub(crate) fn touch(&self) {
        let now = self.shared.nanos_since_epoch(Instant::now());
        self.last_active.store(now, Ordering::Relaxed);
        self.request_arriving.store(true, Ordering::Relaxed);
    }

    /// Whether bytes arrived since the last request started or ended: with
    /// nothing in flight, that is a request whose headers are incomplete.
    pub(crate) fn request_arriving(&self) -> bool {
        self.request_arriving.load(Ordering::Relaxed)
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// How long the connection has been idle at `now`; `None` while a request
    /// is in flight.
    pub(crate) fn idle_for(&self, now: Instant) -> Option<Duration> {
        self.unless_busy_since(&self.last_active, now)
    }

    /// When the header read timeout of the request now awaited expires.
    pub(crate) fn header_deadline(&self) -> Instant {
        let since = self
            .shared
            .instant_at(self.waiting_since.load(Ordering::Relaxed));
        // Internal: a library caller may pass any duration; past a year it
        // makes no difference, and `Instant` cannot overflow.
        since
            + self
                .shared
                .config
                .header_read_timeout
                .min(crate::config::LONGEST)
    }

    /// Asks the socket's next shutdown to hand the socket back instead.
    pub(crate) fn start_parking(&self) {
        self.parking.store(true, Ordering::Release);
    }

    /// Whether a shutdown of the socket should hand it back.
    pub(crate) fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }

    /// Keeps the socket hyper let go of.
    pub(crate) fn keep_parked(&self, stream: TcpStream) {
        *self.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
    }

    /// Records that an HTTP/2 connection is being asked to go away.
    pub(crate) fn start_going_away(&self) {
        self.going_away.store(true, Ordering::Release);
    }

    /// Whether an HTTP/2 connection was asked to go away.
    pub(crate) fn going_away(&self) -> bool {
        self.going_away.load(Ordering::Acquire)
    }

    /// Whether a response switched the connection to another protocol.
    pub(crate) fn upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// The parked socket, if hyper handed it back; ends the parking.
    pub(crate) fn take_parked(&self) -> Option<TcpStream> {
        self.parking.store(false, Ordering::Release);
        self.parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// How long the connection has been waiting for complete request
    /// headers at `now` (partial headers do not restart the clock); `None`
    /// while a request is in flight.
    pub(crate) fn waiting_for_headers(&self, now: Instant) -> Option<Duration> {
        self.unless_busy_since(&self.waiting_since, now)
    }

    /// Time from the timestamp `stamp` to `now`; `None` while a request is
    /// in flight.
    fn unless_busy_since(&self, stamp: &AtomicU64, now: Instant) -> Option<Duration> {
        if self.busy() {
            return None;
        }
        let now = self.shared.nanos_since_epoch(now);
        let since = stamp.load(Ordering::Relaxed);
        Some(Duration::from_nanos(now.saturating_sub(since)))
    }
}

/// The application's service, tracked. One per connection.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnState>) -> Self {
        Self { inner, conn }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let guard = RequestGuard::start(&self.conn, &request);
        request
            .extensions_mut()
            .insert(self.conn.shared.drain.clone());
        TrackedFuture {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The application's response future; adds `Connection: close` and moves
    /// the request guard into the body.
    #[derive(Debug)]
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<RequestGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let mut guard = this
            .guard
            .take()
            .expect("TrackedFuture polled after completion");
        guard.status = Some(response.status());
        if guard.http1 && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Internal: set before hyper writes the response, so before the
            // application can read or write the upgraded socket.
            guard.conn.upgraded.store(true, Ordering::Release);
        } else if guard.http1 && guard.conn.shared.lifecycle.phase() >= Phase::Draining {
            // Internal: the phase is read when the response is ready, not
            // when the request arrived, so a request that straddles the
            // signal still closes its connection.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

pin_project! {
    /// The application's response body; the request ends when it is dropped.
    #[derive(Debug)]
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: RequestGuard,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request in flight. Dropping it ends the request: in the counters, in
/// the latency histogram (if a response was produced), and in the connection's
/// idle clock.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    conn: Arc<ConnState>,
    /// When the read that completed the request's headers returned, in
    /// nanoseconds since `shared.epoch`.
    started: u64,
    method: u8,
    http1: bool,
    status: Option<StatusCode>,
}

impl RequestGuard {
    fn start(conn: &Arc<ConnState>, request: &Request<Incoming>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.request_arriving.store(false, Ordering::Relaxed);
        conn.shared.metrics.active_requests.inc();
        if conn.shared.lifecycle.phase() >= Phase::Draining {
            conn.requests_changed.notify_one();
        }
        Self {
            conn: Arc::clone(conn),
            // Internal: the connection's last sign of life is the read that
            // brought the headers in (or, pipelined, the end of the request
            // before), microseconds ago; reading it saves a clock read.
            started: conn.last_active.load(Ordering::Relaxed),
            method: method_index(request.method()),
            http1: request.version() < Version::HTTP_2,
            status: None,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let shared = &self.conn.shared;
        let now = shared.nanos_since_epoch(Instant::now());
        shared.metrics.active_requests.dec();
        if let Some(status) = self.status {
            let seconds = Duration::from_nanos(now.saturating_sub(self.started)).as_secs_f64();
            shared.metrics.observe(self.method, status, seconds);
        }
        self.conn.last_active.store(now, Ordering::Relaxed);
        self.conn.waiting_since.store(now, Ordering::Relaxed);
        self.conn.request_arriving.store(false, Ordering::Relaxed);
        let was_last = self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
        if was_last && shared.lifecycle.phase() >= Phase::Closing {
            self.conn.requests_changed.notify_one();
        }
    }
}
