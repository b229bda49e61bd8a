//! A run from start to report: resolve, schedule, drain, account.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;

use http::HeaderValue;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::context::RunContext;
use crate::error::Error;
use crate::h2;
use crate::mix::Mix;
use crate::report::{self, Progress, Report};
use crate::scheduler;
use crate::streams;
use crate::worker;

/// A prepared run: the configuration is valid and the target resolved.
///
/// ```no_run
/// # async fn demo() -> Result<(), loadgen::Error> {
/// use std::time::Duration;
/// let config = loadgen::Config {
///     rate: 500.0,
///     duration: Some(Duration::from_secs(10)),
///     ..loadgen::Config::new("127.0.0.1:8080")
/// };
/// let run = loadgen::LoadGen::new(config).await?;
/// let handle = run.handle(); // progress snapshots, stop from elsewhere
/// let report = run.run(std::future::pending()).await?;
/// assert_eq!(report.sent, report.outcomes.total());
/// # drop(handle); Ok(()) }
/// ```
#[derive(Debug)]
pub struct LoadGen {
    shared: Arc<RunContext>,
}

/// Watches and steers a run from elsewhere; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<RunContext>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("target", &self.shared.config.target)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A snapshot of the counters so far.
    pub fn progress(&self) -> Progress {
        let (streams_open, stream_failures) = self.shared.streams.progress();
        Progress {
            streams_open,
            stream_failures,
            ..self
                .shared
                .recorder
                .progress(self.shared.stop.is_cancelled())
        }
    }

    /// Stops the run gracefully: no more requests are scheduled; those
    /// already dispatched (in flight, or waiting for a pooled connection)
    /// finish within the drain timeout; then the report is made.
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }

    /// Stops the run at once: requests in flight are cut off and counted as
    /// aborted.
    pub fn abort(&self) {
        self.shared.stop.cancel();
        self.shared.abort.cancel();
    }
}

impl LoadGen {
    /// Checks the configuration and resolves the target (once: the address
    /// of a Service does not change during a run; IPv4 is preferred). With
    /// HTTP/2 requests in the mix, it also makes one HTTP/2 request to the
    /// target, and fails with [`Error::NotH2c`] when what answers is not
    /// HTTP/2 (a failed connect only logs a warning).
    pub async fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let host = HeaderValue::from_str(&config.target)
            .map_err(|_| ConfigError(format!("target {:?} is not a valid host", config.target)))?;
        let resolve_err = |source| Error::Resolve {
            target: config.target.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(config.target.as_str())
            .await
            .map_err(resolve_err)?
            .collect();
        // `localhost` may list ::1 first while servers often listen on IPv4
        // only; with one address for the whole run, prefer IPv4.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| resolve_err(std::io::Error::other("no address")))?;
        let mix = Mix::new(&config)?;
        if config.h2_fraction > 0.0 {
            h2::probe(addr, &config.target, mix.h2_root(), config.timeout).await?;
        }
        Ok(Self {
            shared: Arc::new(RunContext::new(config, addr, host, mix)),
        })
    }

    /// A handle for progress snapshots and stopping.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// The address the target resolved to.
    pub fn target_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Runs until a bound is reached or `stop` completes (or a handle stops
    /// it), lets requests in flight finish, and reports.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<Report, Error> {
        let shared = self.shared;
        let config = &shared.config;
        let start = shared.recorder.begin();
        shared.streams.begin(start);

        let (tx, rx) = mpsc::channel(config.max_in_flight);
        let queue: worker::Queue = Arc::new(Mutex::new(rx));
        let keepalive_workers = if config.keepalive_fraction() > 0.0 {
            config.keepalive_conns
        } else {
            0
        };
        let mut workers: Vec<_> = (0..keepalive_workers)
            .map(|_| tokio::spawn(worker::keepalive_worker(shared.clone(), queue.clone())))
            .collect();
        let (h2_tx, h2_rx) = mpsc::channel(config.max_in_flight);
        let h2_queue: worker::Queue = Arc::new(Mutex::new(h2_rx));
        if config.h2_fraction > 0.0 {
            workers.extend(h2::spawn_lanes(&shared, &h2_queue));
        }

        // The long-lived clients run while requests are scheduled.
        let end_streams = CancellationToken::new();
        let stream_clients = streams::spawn(&shared, &end_streams);

        let mut watcher = pin!(async {
            stop.await;
            shared.stop.cancel();
            std::future::pending::<Infallible>().await
        });
        let (reason, scheduled) = tokio::select! {
            res = scheduler::schedule(&shared, start, tx, h2_tx) => res,
            never = &mut watcher => match never {},
        };
        end_streams.cancel();
        tokio::select! {
            () = drain(&shared, stream_clients) => {}
            never = &mut watcher => match never {},
        }
        drop((queue, h2_queue));
        for w in workers {
            // A worker's panic is a bug; its requests are already accounted.
            let _ = w.await;
        }
        let streams = shared.streams.report();
        let mut report = Report {
            stream_failures: streams.failed(),
            streams,
            ..shared
                .recorder
                .report(config, shared.addr.to_string(), reason, scheduled)
        };
        report::place_stream_failures(
            &mut report.timeline,
            report.started_unix_ms,
            &shared.streams.failures_per_second(),
        );
        Ok(report)
    }
}

/// Waits until every dispatched request has ended or been dropped, and every
/// long-lived client has closed its stream; past the drain timeout the rest
/// are aborted (and counted so).
async fn drain(shared: &RunContext, stream_clients: Vec<JoinHandle<()>>) {
    let all = u32::try_from(shared.config.max_in_flight).expect("validated bound fits u32");
    let requests = async {
        let _ = shared.permits.acquire_many(all).await;
    };
    // A client's panic is a bug; its streams are already accounted.
    let clients = futures_util::future::join_all(stream_clients);
    let mut everything = pin!(async { tokio::join!(requests, clients) });
    if tokio::time::timeout(shared.config.drain_timeout, &mut everything)
        .await
        .is_err()
    {
        tracing::warn!(
            drain_timeout = ?shared.config.drain_timeout,
            "requests or streams still open at the end of the drain; aborting them"
        );
        shared.abort.cancel();
        everything.await;
    }
}

/// Runs `config` until a bound is reached or `stop` completes, and reports.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<Report, Error> {
    LoadGen::new(config).await?.run(stop).await
}
