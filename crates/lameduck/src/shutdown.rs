//! The shutdown state machine. This module alone moves the phase forward;
//! the accept loop, the connection tasks, `/readyz` and `/metrics` read it.
//!
//! ```text
//! Serving ──signal──▶ Draining ──drain_delay──▶ Closing ──all conns done──▶ Done
//!                        │                         └──shutdown_timeout──▶ Forced
//!       second signal ───┴─────────────────────────────────────────────▶ Forced
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::server::Shared;

/// Where a server is in its shutdown. Phases only move forward, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Normal operation.
    Serving = 0,
    /// The lame-duck window: still accepting and serving, `/readyz` fails,
    /// HTTP/1.1 responses close their connection, HTTP/2 connections got GOAWAY.
    Draining = 1,
    /// The listener is closed; in-flight requests finish, idle connections close.
    Closing = 2,
    /// Every connection closed in time.
    Done = 3,
    /// The shutdown timeout expired or a second signal came; connections were dropped.
    Forced = 4,
}

impl Phase {
    /// The phase's name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Closing => "closing",
            Phase::Done => "done",
            Phase::Forced => "forced",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Phase::Serving,
            1 => Phase::Draining,
            2 => Phase::Closing,
            3 => Phase::Done,
            _ => Phase::Forced,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// Time since the shutdown signal: 0 before it, growing during the
/// shutdown, frozen once it ended. Shared with the metrics, which read it
/// whenever they are gathered.
#[derive(Debug, Default)]
pub(crate) struct ShutdownClock {
    signalled_at: OnceLock<Instant>,
    final_duration: OnceLock<Duration>,
}

impl ShutdownClock {
    pub(crate) fn elapsed(&self) -> Duration {
        match (self.final_duration.get(), self.signalled_at.get()) {
            (Some(frozen), _) => *frozen,
            (None, Some(at)) => at.elapsed(),
            (None, None) => Duration::ZERO,
        }
    }
}

/// The current phase and the shutdown clock, shared by every task of a server.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    // Internal: the atomic is what the request path reads (one load); the
    // watch channel wakes the tasks that wait for a change.
    phase: AtomicU8,
    changes: watch::Sender<Phase>,
    pub(crate) clock: Arc<ShutdownClock>,
}

impl Lifecycle {
    pub(crate) fn new(clock: Arc<ShutdownClock>) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Serving as u8),
            changes: watch::Sender::new(Phase::Serving),
            clock,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.changes.subscribe()
    }

    pub(crate) fn drain(&self) -> crate::Drain {
        crate::Drain::new(self.subscribe())
    }

    fn enter(&self, shared: &Shared, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        shared.metrics.shutdown_phase.set(phase as i64);
        self.changes.send_replace(phase);
        info!(
            phase = phase.as_str(),
            elapsed_ms = millis(self.clock.elapsed()),
            "shutdown phase changed"
        );
    }
}

/// Drives one shutdown from the signal to its end.
///
/// `close_listener` stops accepting and completes once the application
/// listener is closed; `connections` tracks every application connection;
/// `cut` drops them when the shutdown is forced.
pub(crate) async fn run(
    shared: &Shared,
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
    let _ = lifecycle.clock.signalled_at.set(Instant::now());
    let completed_before = shared.metrics.requests_completed();
    lifecycle.enter(shared, Phase::Draining);

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
        lifecycle.enter(shared, Phase::Closing);
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

    let duration = lifecycle.clock.elapsed();
    let _ = lifecycle.clock.final_duration.set(duration);
    let outcome = if forced { Phase::Forced } else { Phase::Done };
    lifecycle.enter(shared, outcome);
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

/// Milliseconds with microsecond precision, for log fields.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_and_round_trip() {
        let all = [
            Phase::Serving,
            Phase::Draining,
            Phase::Closing,
            Phase::Done,
            Phase::Forced,
        ];
        for pair in all.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for phase in all {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
    }

    #[test]
    fn elapsed_is_zero_before_the_signal_and_frozen_after() {
        let clock = ShutdownClock::default();
        assert_eq!(clock.elapsed(), Duration::ZERO);
        clock.signalled_at.set(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.elapsed() >= Duration::from_millis(5));
        clock.final_duration.set(Duration::from_millis(7)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.elapsed(), Duration::from_millis(7));
    }
}
