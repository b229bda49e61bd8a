//! What a connection task, its socket wrapper and its requests know about
//! each other: requests in flight, the last sign of life, the parked socket,
//! HTTP/2's going-away and the upgrade.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LONGEST;
use crate::context::ServerContext;

/// What a connection task and its requests know about each other.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) shared: Arc<ServerContext>,
    in_flight: AtomicU32,
    /// Last sign of life, in nanoseconds since `shared.epoch`: bytes read, or
    /// a response finished.
    last_active: AtomicU64,
    /// When the first byte of the request now arriving was read (valid while
    /// `request_arriving`): the header read timeout counts from there.
    headers_since: AtomicU64,
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
    pub(crate) fn new(shared: Arc<ServerContext>, cut: CancellationToken) -> Self {
        let now = shared.nanos_since_epoch(Instant::now());
        Self {
            shared,
            in_flight: AtomicU32::new(0),
            last_active: AtomicU64::new(now),
            headers_since: AtomicU64::new(now),
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

    /// Records that the peer sent bytes; the first since the last request
    /// started or ended starts the next request's header read timeout.
    pub(crate) fn touch(&self) {
        let now = self.shared.nanos_since_epoch(Instant::now());
        self.last_active.store(now, Ordering::Relaxed);
        // Only the connection's own task reads the socket, so a load and a
        // store do what a swap would, for less.
        if !self.request_arriving.load(Ordering::Relaxed) {
            self.headers_since.store(now, Ordering::Relaxed);
            self.request_arriving.store(true, Ordering::Relaxed);
        }
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
        if self.busy() {
            return None;
        }
        let now = self.shared.nanos_since_epoch(now);
        let since = self.last_active.load(Ordering::Relaxed);
        Some(Duration::from_nanos(now.saturating_sub(since)))
    }

    /// When a connection with nothing of its next request yet is closed:
    /// the idle timeout after its last sign of life.
    pub(crate) fn idle_deadline(&self) -> Instant {
        self.stamp(&self.last_active) + self.shared.config.idle_timeout.min(LONGEST)
    }

    /// When the request now arriving must have its headers complete: the
    /// header read timeout after their first byte.
    pub(crate) fn header_deadline(&self) -> Instant {
        // A library caller may pass any duration; past a year it makes no
        // difference, and `Instant` cannot overflow.
        self.stamp(&self.headers_since) + self.shared.config.header_read_timeout.min(LONGEST)
    }

    /// The read limit the connection is under, and when it expires; `None`
    /// while a request is in flight. Bytes arriving move it from
    /// [`ReadLimit::Idle`] to [`ReadLimit::Headers`], and a request that
    /// ends moves it back.
    pub(crate) fn read_limit(&self) -> Option<(ReadLimit, Instant)> {
        if self.busy() {
            None
        } else if self.request_arriving() {
            Some((ReadLimit::Headers, self.header_deadline()))
        } else {
            Some((ReadLimit::Idle, self.idle_deadline()))
        }
    }

    fn stamp(&self, stamp: &AtomicU64) -> Instant {
        self.shared.instant_at(stamp.load(Ordering::Relaxed))
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

    /// Records that a request started; returns when its headers arrived.
    pub(crate) fn start_request(&self) -> u64 {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.request_arriving.store(false, Ordering::Relaxed);
        // The connection's last sign of life is the read that brought
        // the headers in (or, pipelined, the end of the request
        // before), microseconds ago; reading it saves a clock read.
        self.last_active.load(Ordering::Relaxed)
    }

    /// Records that a request ended at `now` (see `nanos_since_epoch`);
    /// returns whether it was the last one in flight.
    pub(crate) fn end_request(&self, now: u64) -> bool {
        self.last_active.store(now, Ordering::Relaxed);
        self.request_arriving.store(false, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Records that a response switches the connection to another protocol:
    /// the socket is the application's once hyper has written it.
    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
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
}

/// What a connection waiting for a request is waiting under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadLimit {
    /// Nothing of the next request has arrived (or of the first, on a new
    /// connection): `idle_timeout` from the last sign of life. A pool may
    /// keep a connection unused for as long as it likes, and may have opened
    /// it ahead of need.
    Idle,
    /// The request's headers have started: `header_read_timeout` from their
    /// first byte.
    Headers,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;

    /// A connection's state under a server with these limits.
    pub(crate) fn conn_state(header_read_timeout: Duration, idle_timeout: Duration) -> ConnState {
        let config = Config {
            header_read_timeout,
            idle_timeout,
            ..Config::default()
        };
        let lifecycle = Arc::default();
        let metrics = Metrics::new(prometheus::Registry::new(), Arc::clone(&lifecycle)).unwrap();
        let shared = Arc::new(ServerContext::new(config, metrics, lifecycle));
        ConnState::new(shared, CancellationToken::new())
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn idle_until_bytes_arrive_then_the_header_timeout_from_the_first_byte() {
        let opened = Instant::now();
        let state = conn_state(2 * SECOND, 60 * SECOND);
        // A new connection that has sent nothing is idle, not slow.
        assert_eq!(
            state.read_limit(),
            Some((ReadLimit::Idle, opened + 60 * SECOND))
        );
        advance(10 * SECOND).await;
        state.touch();
        assert_eq!(
            state.read_limit(),
            Some((ReadLimit::Headers, opened + 12 * SECOND))
        );
        // More of the same headers does not restart the clock.
        advance(SECOND).await;
        state.touch();
        assert_eq!(
            state.read_limit(),
            Some((ReadLimit::Headers, opened + 12 * SECOND))
        );
        // A request in flight is under neither limit.
        state.start_request();
        advance(30 * SECOND).await;
        assert_eq!(state.read_limit(), None);
        // After it, the connection is idle again, from the response's end.
        let ended = Instant::now();
        state.end_request(state.shared.nanos_since_epoch(ended));
        assert_eq!(
            state.read_limit(),
            Some((ReadLimit::Idle, ended + 60 * SECOND))
        );
        advance(59 * SECOND).await;
        state.touch();
        assert_eq!(
            state.read_limit(),
            Some((ReadLimit::Headers, ended + 61 * SECOND)),
            "bytes that arrive before the idle deadline lift it"
        );
    }
}
