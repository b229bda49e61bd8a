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

    // A zero delay skips the timer, whose resolution is a millisecond.
    let forced = forced_at_once
        || (!config.drain_delay.is_zero()
            && tokio::select! {
                () = tokio::time::sleep(config.drain_delay) => false,
                () = &mut force => true,
            });
    // Closed before Closing is announced, so that anyone who saw the phase
    // change (a log line, a scrape) sees refused connections.
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
        // Read before cutting, since the dropped requests' guards (and
        // upgraded connections) decrement the gauges as they go.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus::Registry;
    use tokio::time::{Instant, sleep};

    use super::*;
    use crate::config::Config;
    use crate::lifecycle::Lifecycle;
    use crate::metrics::Metrics;

    fn context(drain_delay: u64, shutdown_timeout: u64) -> Arc<ServerContext> {
        let config = Config {
            drain_delay: Duration::from_secs(drain_delay),
            shutdown_timeout: Duration::from_secs(shutdown_timeout),
            ..Config::default()
        };
        let lifecycle = Arc::<Lifecycle>::default();
        let metrics = Metrics::new(Registry::new(), Arc::clone(&lifecycle)).unwrap();
        Arc::new(ServerContext::new(config, metrics, lifecycle))
    }

    /// Every phase the lifecycle enters, with the seconds since `start`.
    fn record_phases(
        context: &ServerContext,
        start: Instant,
    ) -> tokio::task::JoinHandle<Vec<(Phase, u64)>> {
        let mut phases = context.lifecycle.subscribe();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while phases.changed().await.is_ok() {
                let phase = *phases.borrow_and_update();
                seen.push((phase, start.elapsed().as_secs()));
                if phase >= Phase::Done {
                    break;
                }
            }
            seen
        })
    }

    /// A connection that holds `requests` in flight for `busy` seconds, or
    /// until the shutdown cuts it.
    fn connection(
        context: &Arc<ServerContext>,
        tracker: &TaskTracker,
        cut: &CancellationToken,
        requests: i64,
        busy: u64,
    ) {
        let (context, cut) = (Arc::clone(context), cut.clone());
        context.metrics.active_requests.add(requests);
        tracker.spawn(async move {
            tokio::select! {
                () = sleep(Duration::from_secs(busy)) => {}
                () = cut.cancelled() => {}
            }
            context.metrics.active_requests.sub(requests);
        });
    }

    struct Run {
        report: ShutdownReport,
        phases: Vec<(Phase, u64)>,
        /// Seconds from the start to the listener's closing, and the phase then.
        listener_closed: (u64, Phase),
        cut: bool,
    }

    /// Runs a shutdown signalled at `signal_at` and forced at `force_at`
    /// (seconds; `None`: never), over connections busy for `busy` seconds.
    async fn run_shutdown(
        context: Arc<ServerContext>,
        busy: &[(i64, u64)],
        signal_at: Option<u64>,
        force_at: Option<u64>,
    ) -> Run {
        let start = Instant::now();
        let (tracker, cut) = (TaskTracker::new(), CancellationToken::new());
        for &(requests, seconds) in busy {
            connection(&context, &tracker, &cut, requests, seconds);
        }
        let recorder = record_phases(&context, start);
        let at = |seconds: Option<u64>| async move {
            match seconds {
                Some(s) => sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        let listener_closed = std::sync::Mutex::new(None);
        // Yields, as closing the real listener does (it joins the accept
        // task), so that the recorder sees Draining before Closing; a watch
        // shows only the last of the phases entered in one poll.
        let close_listener = async {
            tokio::task::yield_now().await;
            *listener_closed.lock().unwrap() =
                Some((start.elapsed().as_secs(), context.lifecycle.phase()));
        };
        let report = run(
            &context,
            at(signal_at),
            at(force_at),
            close_listener,
            &tracker,
            &cut,
        )
        .await;
        let listener_closed = listener_closed
            .lock()
            .unwrap()
            .expect("the listener was never closed");
        Run {
            report,
            phases: recorder.await.unwrap(),
            listener_closed,
            cut: cut.is_cancelled(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drain_delay_then_closing_then_done() {
        let context = context(5, 20);
        let run = run_shutdown(Arc::clone(&context), &[(1, 13), (0, 9)], Some(1), None).await;
        assert_eq!(
            run.phases,
            [(Phase::Draining, 1), (Phase::Closing, 6), (Phase::Done, 13)]
        );
        assert_eq!(run.listener_closed, (6, Phase::Draining));
        assert_eq!(run.report.outcome, Phase::Done);
        assert_eq!(run.report.duration, Duration::from_secs(12));
        assert_eq!((run.report.aborted, run.report.aborted_upgraded), (0, 0));
        assert!(!run.cut);
        // The clock is frozen from now on.
        sleep(Duration::from_secs(5)).await;
        assert_eq!(context.lifecycle.clock().elapsed(), Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_forces_and_counts_what_it_cuts() {
        let context = context(0, 3);
        context.metrics.upgraded_connections.inc();
        let run = run_shutdown(Arc::clone(&context), &[(2, 60), (1, 60)], Some(0), None).await;
        assert_eq!(
            run.phases,
            [
                (Phase::Draining, 0),
                (Phase::Closing, 0),
                (Phase::Forced, 3)
            ]
        );
        assert_eq!(run.report.outcome, Phase::Forced);
        assert_eq!(run.report.duration, Duration::from_secs(3));
        assert_eq!((run.report.aborted, run.report.aborted_upgraded), (3, 1));
        assert!(run.cut);
        assert_eq!(context.metrics.aborted.get(), 3);
        assert_eq!(context.metrics.aborted_upgraded.get(), 1);
        assert_eq!(context.metrics.active_requests.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_while_draining_forces_at_once() {
        let run = run_shutdown(context(10, 20), &[(1, 60)], Some(1), Some(4)).await;
        assert_eq!(run.phases, [(Phase::Draining, 1), (Phase::Forced, 4)]);
        assert_eq!(run.listener_closed, (4, Phase::Draining));
        assert_eq!((run.report.outcome, run.report.aborted), (Phase::Forced, 1));
        assert!(run.cut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_while_closing_forces_at_once() {
        let run = run_shutdown(context(2, 20), &[(1, 60)], Some(1), Some(7)).await;
        assert_eq!(
            run.phases,
            [
                (Phase::Draining, 1),
                (Phase::Closing, 3),
                (Phase::Forced, 7)
            ]
        );
        assert_eq!((run.report.outcome, run.report.aborted), (Phase::Forced, 1));
        assert_eq!(run.report.duration, Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn force_before_any_shutdown_signal_stops_at_once() {
        let run = run_shutdown(context(5, 20), &[(1, 60)], None, Some(2)).await;
        assert_eq!(run.phases, [(Phase::Draining, 2), (Phase::Forced, 2)]);
        assert_eq!(run.listener_closed, (2, Phase::Draining));
        assert_eq!((run.report.outcome, run.report.aborted), (Phase::Forced, 1));
        assert_eq!(run.report.duration, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn without_connections_closing_ends_at_once() {
        let run = run_shutdown(context(5, 20), &[], Some(0), None).await;
        // Closing and Done were entered in one poll: the watch shows Done.
        assert_eq!(run.phases, [(Phase::Draining, 0), (Phase::Done, 5)]);
        assert_eq!(run.listener_closed, (5, Phase::Draining));
        assert_eq!((run.report.outcome, run.report.completed), (Phase::Done, 0));
    }
}
