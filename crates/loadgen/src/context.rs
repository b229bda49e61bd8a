//! What every task of one run shares, behind one `Arc`: the settings, the
//! resolved target, the request mix, the books, the in-flight bound and the
//! stop and abort signals. The engine builds it; the scheduler, the workers,
//! the HTTP/2 lanes and the long-lived clients take it. It imports only
//! modules that import none of those, so no module imports one that imports
//! it back.

use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::mix::Mix;
use crate::stats::Recorder;
use crate::streams::ledger::Ledger;

/// State shared by the scheduler, the workers and the handles.
#[derive(Debug)]
pub(crate) struct RunContext {
    pub(crate) config: Config,
    pub(crate) addr: SocketAddr,
    pub(crate) host: HeaderValue,
    pub(crate) mix: Mix,
    pub(crate) recorder: Recorder,
    /// The long-lived clients' books.
    pub(crate) streams: Ledger,
    pub(crate) permits: Arc<Semaphore>,
    /// Schedule no more requests: set by a stop request.
    pub(crate) stop: CancellationToken,
    /// Cut off requests in flight and start no queued one: set when the
    /// drain time runs out.
    pub(crate) abort: CancellationToken,
}

impl RunContext {
    /// A run of `config` against `addr` (sent as `host`), with books and an
    /// in-flight bound of its own.
    pub(crate) fn new(config: Config, addr: SocketAddr, host: HeaderValue, mix: Mix) -> Self {
        Self {
            addr,
            host,
            mix,
            recorder: Recorder::new(&config),
            streams: Ledger::new(&config),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
            config,
        }
    }
}
