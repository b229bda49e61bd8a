//! The per-server context: what the accept loop, every connection task, the
//! admin listener and the shutdown share, behind one `Arc`.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;

use crate::config::{Config, LONGEST};
use crate::drain::Drain;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::scrapers::Scrapers;

/// What every task of one server shares: its settings, lifecycle and
/// metrics, and the protocol builders its connections are served with.
#[derive(Debug)]
pub(crate) struct ServerContext {
    pub(crate) config: Config,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) metrics: Metrics,
    /// Who reads `/metrics`, for the final scrape.
    pub(crate) scrapers: Scrapers,
    /// Application HTTP/1: no hyper timer. Its header read timeout would arm
    /// and drop a timer for every request; `conn` enforces it lazily instead.
    pub(crate) h1: http1::Builder,
    /// Admin HTTP/1, with hyper's own header read timeout.
    pub(crate) admin_h1: http1::Builder,
    pub(crate) h2: http2::Builder<TokioExecutor>,
    /// Handed to every request, in its extensions.
    pub(crate) drain: Drain,
    epoch: Instant,
}

impl ServerContext {
    pub(crate) fn new(config: Config, metrics: Metrics, lifecycle: Arc<Lifecycle>) -> Self {
        let h1 = http1::Builder::new();
        let mut admin_h1 = http1::Builder::new();
        admin_h1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout.min(LONGEST));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        Self {
            config,
            drain: Drain::new(lifecycle.subscribe()),
            lifecycle,
            metrics,
            scrapers: Scrapers::default(),
            h1,
            admin_h1,
            h2,
            epoch: Instant::now(),
        }
    }

    /// The instant a timestamp from [`Self::nanos_since_epoch`] stands for.
    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// A compact timestamp for per-connection atomics.
    pub(crate) fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}
