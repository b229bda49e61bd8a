//! The shutdown state machine. This module alone moves the phase forward;
//! the accept loop, the connection tasks, `/readyz` and `/metrics` read it.
//!
//! ```text
//! Serving ──signal──▶ Draining ──drain_delay──▶ Closing ──all conns done──▶ Done
//!                        │                         └──shutdown_timeout──▶ Forced
//!       second signal ───┴─────────────────────────────────────────────▶ Forced
//! ```

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::context::ServerContext;
use crate::lifecycle::{Phase, millis};

/// What a shutdown came to, returned by [`Server::serve`](crate::Server::serve).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// [`Phase::Done`] or [`Phase::Forced`].
    pub outcome: Phase,
    /// From the shutdown signal to the last connection closing (or being dropped).
    pub duration: Duration,
    /// Requests that finished after the shutdown signal.
    pub completed: u64,
    /// Requests in flight when a forced shutdown dropped their connections.
    pub aborted: u64,
    /// Upgraded connections (WebSocket and the like) still open when a
    /// forced shutdown dropped them.
    pub aborted_upgraded: u64,
}

impl ShutdownReport {
    /// Whether connections had to be dropped; the binary exits 1 then.
    pub fn is_forced(&self) -> bool {
        self.outcome == Phase::Forced
    }
}

/// Drives one shutdown from the signal to its end.
///
/// `close_listener` stops accepting and completes once the application
/// listener is closed; `connections` tracks every application connection;
/// `cut` drops them when the shutdown is forced.
pub(crate) async fn run(
    shared: &ServerContext,
    shutdown: impl Future<Output = ()>,
    force: impl Future<Output = ()>,
    close_listener: impl Future<Output = ()>,
    connections: &TaskTracker,
    cut: &CancellationToken,
) -> ShutdownReport {
    let lifecycle = &shared.lifecycle;
    let config = &shared.config;
    let mut force = std::pin::pin!(force);

    // A force request before any shutdown request means "stop now" as well.
    let forced_at_once = tokio::select! {
        () = shutdown => false,
        () = &mut force => true,
    };
    lifecycle.clock().start();
    let completed_before = shared.metrics.requests_completed();
    lifecycle.enter(Phase::Draining);

    // Internal: a zero delay skips the timer, whose resolution is a millisecond.
    let forced = forced_at_once
        || (!config.drain_delay.is_zero()
            && tokio::select! {
                () = tokio::time::sleep(config.drain_delay) => false,
                () = &mut force => true,
            });
    // Internal: closed before Closing is announced, so that anyone who saw
    // the phase change (a log line, a scrape) sees refused connections.
    close_listener.await;
    let forced = forced || {
        lifecycle.enter(Phase::Closing);
        connections.close();
        tokio::select! {
            biased;
            () = connections.wait() => false,
            () = tokio::time::sleep(config.shutdown_timeout) => true,
            () = &mut force => true,
        }
    };

    let (aborted, aborted_upgraded) = if forced {
        // Internal: read before cutting, since the dropped requests' guards
        // (and upgraded connections) decrement the gauges as they go.
        let metrics = &shared.metrics;
        let aborted = u64::try_from(metrics.active_requests.get()).unwrap_or(0);
        let aborted_upgraded = u64::try_from(metrics.upgraded_connections.get()).unwrap_or(0);
        metrics.aborted.inc_by(aborted);
        metrics.aborted_upgraded.inc_by(aborted_upgraded);
        cut.cancel();
        connections.close();
        // Dropping a connection is immediate; the bound only guards against a
        // task that never yields.
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
        (aborted, aborted_upgraded)
    } else {
        (0, 0)
    };

    let duration = lifecycle.clock().elapsed();
    lifecycle.clock().freeze(duration);
    let outcome = if forced { Phase::Forced } else { Phase::Done };
    lifecycle.enter(outcome);
    let report = ShutdownReport {
        outcome,
        duration,
        completed: shared
            .metrics
            .requests_completed()
            .saturating_sub(completed_before),
        aborted,
        aborted_upgraded,
    };
    let duration_ms = millis(duration);
    if forced {
        warn!(
            outcome = outcome.as_str(),
            duration_ms,
            completed = report.completed,
            aborted,
            aborted_upgraded,
            "shutdown forced: {aborted} requests aborted"
        );
    } else {
        info!(
            outcome = outcome.as_str(),
            duration_ms,
            completed = report.completed,
            aborted,
            aborted_upgraded,
            "shutdown finished"
        );
    }
    report
}
