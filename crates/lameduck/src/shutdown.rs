//! The shutdown state machine. This module alone moves the phase forward;
//! the accept loop, the connection tasks, `/readyz` and `/metrics` read it.
//!
//! ```text
//! Serving ──signal──▶ Draining ──drain_delay──▶ Closing ──all conns done──▶ Done
//!                        │                         └──shutdown_timeout──▶ Forced
//!       second signal ───┴─────────────────────────────────────────────▶ Forced
//! ```
//!
//! Once Done or Forced, with the final figures set, it waits for every
//! recent scraper of `/metrics` to read them (the linger, see `scrapers`),
//! at most `final_scrape_timeout`; a second signal ends the wait, and a
//! shutdown forced by one does not wait.

use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::LONGEST;
use crate::context::ServerContext;
use crate::lifecycle::{Phase, millis};
use crate::scrapers::Awaited;

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
    /// The wall-clock time of the shutdown signal.
    pub signalled_at: SystemTime,
    /// The wait for the final scrape, after `duration`.
    pub linger: Linger,
}

/// The wait, once the shutdown ended, for the scrapers of `/metrics` to read
/// the final figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Linger {
    /// How long it took; zero when nobody was waited for.
    pub duration: Duration,
    /// The scrapers waited for, by address.
    pub scrapers: Vec<Scraper>,
}

/// A scraper the shutdown waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scraper {
    /// The address it scraped from.
    pub address: IpAddr,
    /// Whether it read the final figures before the wait ended.
    pub scraped: bool,
}

impl ShutdownReport {
    /// Whether connections had to be dropped; the binary exits 1 then.
    pub fn is_forced(&self) -> bool {
        self.outcome == Phase::Forced
    }
}

/// How the wait for the connections ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Every connection closed in time.
    Clean,
    /// The shutdown timeout expired.
    Timeout,
    /// A second signal (or one before any shutdown request).
    Force,
}

/// Drives one shutdown from the signal to its end, then waits for the final
/// scrape.
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

    let mut end = if forced_at_once {
        End::Force
    } else {
        End::Clean
    };
    // A zero delay skips the timer, whose resolution is a millisecond.
    if end == End::Clean && !config.drain_delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(config.drain_delay) => {}
            () = &mut force => end = End::Force,
        }
    }
    // Closed before Closing is announced, so that anyone who saw the phase
    // change (a log line, a scrape) sees refused connections.
    close_listener.await;
    if end == End::Clean {
        lifecycle.enter(Phase::Closing);
        connections.close();
        end = tokio::select! {
            biased;
            () = connections.wait() => End::Clean,
            () = tokio::time::sleep(config.shutdown_timeout) => End::Timeout,
            () = &mut force => End::Force,
        };
    }
    let forced = end != End::Clean;

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
    shared.metrics.count_shutdown(forced);
    // Last: a scrape that sees this phase sees every final figure.
    lifecycle.enter(outcome);
    let mut report = ShutdownReport {
        outcome,
        duration,
        completed: shared
            .metrics
            .requests_completed()
            .saturating_sub(completed_before),
        aborted,
        aborted_upgraded,
        signalled_at: lifecycle
            .clock()
            .signalled_at()
            .unwrap_or_else(SystemTime::now),
        linger: Linger::default(),
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
    report.linger = if end == End::Force {
        not_waiting(shared);
        Linger::default()
    } else {
        linger(shared, force).await
    };
    report
}

/// Waits until every scraper worth waiting for has read the final figures,
/// each until it is given up (see `scrapers`), or until `stop`.
async fn linger(shared: &ServerContext, mut stop: Pin<&mut impl Future<Output = ()>>) -> Linger {
    let bound = shared.config.final_scrape_timeout.min(LONGEST);
    let start = Instant::now();
    let plan = if bound.is_zero() {
        Vec::new()
    } else {
        shared.scrapers.plan(start, bound)
    };
    if plan.is_empty() {
        return Linger::default();
    }
    info!(
        scrapers = %addresses(&plan, |_| true),
        bound_ms = millis(bound),
        "waiting for a final scrape"
    );
    let scrapers = &shared.scrapers;
    let mut finals = scrapers.finals();
    let stopped = loop {
        finals.borrow_and_update();
        let now = Instant::now();
        let next = plan
            .iter()
            .filter(|a| !scrapers.read_final(a.address))
            .filter_map(|a| a.until)
            .filter(|&until| until > now)
            .min();
        let Some(next) = next else { break false };
        tokio::select! {
            biased;
            () = &mut stop => break true,
            _ = finals.changed() => {}
            () = tokio::time::sleep_until(next) => {}
        }
    };
    let duration = start.elapsed();
    let scraped = addresses(&plan, |a| scrapers.read_final(a));
    let missed = addresses(&plan, |a| !scrapers.read_final(a));
    let waited_ms = millis(duration);
    if stopped {
        info!(waited_ms, %scraped, %missed, "final scrape wait ended by a signal");
    } else if missed.is_empty() {
        info!(waited_ms, %scraped, "final scrape read");
    } else {
        info!(waited_ms, %scraped, %missed, "final scrape wait ended without every scraper");
    }
    Linger {
        duration,
        scrapers: plan
            .iter()
            .map(|a| Scraper {
                address: a.address,
                scraped: scrapers.read_final(a.address),
            })
            .collect(),
    }
}

/// A shutdown forced by a signal was asked to stop now: it does not wait,
/// but says whom it leaves without the final figures.
fn not_waiting(shared: &ServerContext) {
    let bound = shared.config.final_scrape_timeout.min(LONGEST);
    if bound.is_zero() {
        return;
    }
    let plan = shared.scrapers.plan(Instant::now(), bound);
    let missed = addresses(&plan, |a| !shared.scrapers.read_final(a));
    if !missed.is_empty() {
        info!(%missed, "forced by a signal: not waiting for a final scrape");
    }
}

/// The addresses in `plan` that `pick` keeps, comma-separated.
fn addresses(plan: &[Awaited], pick: impl Fn(IpAddr) -> bool) -> String {
    let mut out = String::new();
    for awaited in plan.iter().filter(|a| pick(a.address)) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", awaited.address);
    }
    out
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
        context_lingering(drain_delay, shutdown_timeout, 65)
    }

    fn context_lingering(
        drain_delay: u64,
        shutdown_timeout: u64,
        final_scrape_timeout: u64,
    ) -> Arc<ServerContext> {
        let config = Config {
            drain_delay: Duration::from_secs(drain_delay),
            shutdown_timeout: Duration::from_secs(shutdown_timeout),
            final_scrape_timeout: Duration::from_secs(final_scrape_timeout),
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A scraper at 10.0.0.`last` that reads `/metrics` `count` times, every
    /// `interval_ms`, from `first_ms` on.
    fn scraper(
        context: &Arc<ServerContext>,
        last: u8,
        first_ms: u64,
        interval_ms: u64,
        count: u32,
    ) {
        let context = Arc::clone(context);
        tokio::spawn(async move {
            sleep(ms(first_ms)).await;
            for i in 0..count {
                if i > 0 {
                    sleep(ms(interval_ms)).await;
                }
                let final_figures = context.lifecycle.phase() >= Phase::Done;
                context.scrapers.record(ip(last), final_figures);
            }
        });
    }

    fn scraped(run: &Run) -> Vec<(IpAddr, bool)> {
        let scrapers = &run.report.linger.scrapers;
        scrapers.iter().map(|s| (s.address, s.scraped)).collect()
    }

    struct Run {
        report: ShutdownReport,
        /// Milliseconds from the start until `run` returned.
        returned_ms: u128,
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
        let returned_ms = start.elapsed().as_millis();
        let listener_closed = listener_closed
            .lock()
            .unwrap()
            .expect("the listener was never closed");
        Run {
            report,
            returned_ms,
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

    #[tokio::test(start_paused = true)]
    async fn without_scrapers_it_returns_at_once() {
        let run = run_shutdown(context(0, 20), &[(1, 13)], Some(1), None).await;
        assert_eq!(run.returned_ms, 13_000);
        assert_eq!(run.report.linger, Linger::default());
    }

    #[tokio::test(start_paused = true)]
    async fn it_waits_for_the_next_scrape_of_each_scraper() {
        let context = context(0, 20);
        // Every 5 s from 0.5 s, and every 4 s from 3 s; done at 13 s.
        scraper(&context, 1, 500, 5_000, 10);
        scraper(&context, 2, 3_000, 4_000, 10);
        let run = run_shutdown(Arc::clone(&context), &[(1, 13)], Some(1), None).await;
        assert_eq!(run.report.outcome, Phase::Done);
        assert_eq!(run.report.duration, Duration::from_secs(12));
        assert_eq!(
            run.returned_ms, 15_500,
            "10.0.0.2 read at 15 s, 10.0.0.1 at 15.5 s"
        );
        assert_eq!(run.report.linger.duration, ms(2_500));
        assert_eq!(scraped(&run), [(ip(1), true), (ip(2), true)]);
        // The duration stayed frozen through the wait.
        assert_eq!(context.lifecycle.clock().elapsed(), Duration::from_secs(12));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scraper_that_stops_is_given_up_after_twice_its_interval() {
        // Every 2 s until 12 s: expected by 12 + 4 + 1 s at the latest.
        let context = context(0, 20);
        scraper(&context, 1, 0, 2_000, 7);
        let run = run_shutdown(context, &[(1, 13)], Some(1), None).await;
        assert_eq!(run.returned_ms, 17_000);
        assert_eq!(scraped(&run), [(ip(1), false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_flag_bounds_the_wait() {
        // Seen once, at 12 s: expected until the bound, 3 s after done.
        let context = context_lingering(0, 20, 3);
        scraper(&context, 1, 12_000, 1, 1);
        // Seen once, at 1 s, longer ago than the bound: not expected.
        scraper(&context, 2, 1_000, 1, 1);
        let run = run_shutdown(context, &[(1, 13)], Some(1), None).await;
        assert_eq!(run.returned_ms, 16_000);
        assert_eq!(scraped(&run), [(ip(1), false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_bound_does_not_wait() {
        let context = context_lingering(0, 20, 0);
        scraper(&context, 1, 500, 5_000, 10);
        let run = run_shutdown(context, &[(1, 13)], Some(1), None).await;
        assert_eq!(run.returned_ms, 13_000);
        assert_eq!(run.report.linger, Linger::default());
    }

    #[tokio::test(start_paused = true)]
    async fn a_forced_shutdown_waits_too_and_its_scrape_sees_the_aborted_requests() {
        let context = context(0, 3);
        scraper(&context, 1, 500, 5_000, 10);
        let run = run_shutdown(Arc::clone(&context), &[(2, 60)], Some(0), None).await;
        assert_eq!((run.report.outcome, run.report.aborted), (Phase::Forced, 2));
        assert_eq!(run.returned_ms, 5_500);
        assert_eq!(scraped(&run), [(ip(1), true)]);
        let text = String::from_utf8(context.metrics.encode()).unwrap();
        assert!(
            text.contains(r#"lameduck_shutdowns_total{outcome="forced"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("lameduck_shutdown_aborted_requests_total 2"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_ends_the_wait() {
        let context = context(0, 20);
        scraper(&context, 1, 500, 5_000, 10);
        let run = run_shutdown(context, &[(1, 13)], Some(1), Some(14)).await;
        assert_eq!(run.report.outcome, Phase::Done);
        assert_eq!(run.returned_ms, 14_000);
        assert_eq!(scraped(&run), [(ip(1), false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_forced_by_a_signal_does_not_wait() {
        let context = context(10, 20);
        scraper(&context, 1, 500, 5_000, 10);
        let run = run_shutdown(context, &[(1, 60)], Some(1), Some(4)).await;
        assert_eq!(run.report.outcome, Phase::Forced);
        assert_eq!(run.returned_ms, 4_000);
        assert_eq!(run.report.linger, Linger::default());
    }
}
