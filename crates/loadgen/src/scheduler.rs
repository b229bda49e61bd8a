//! The open-loop schedule: request `n` is due at `start + n / rate`, however
//! long earlier requests take; or, with a burst schedule, the requests of
//! burst `i` are all due at `start + offset(i)`. When the in-flight bound
//! holds a request back it is sent as soon as a slot frees, and counted as
//! late when it starts; nothing scheduled is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::bursts::Bursts;
use crate::context::RunContext;
use crate::mix::Mode;
use crate::report::StopReason;
use crate::worker::{self, Job};

/// Dispatches requests until a bound or a stop (or after the last burst);
/// returns why it stopped and how many requests it dispatched.
pub(crate) async fn schedule(
    shared: &Arc<RunContext>,
    start: Instant,
    keepalive: mpsc::Sender<Job>,
    http2: mpsc::Sender<Job>,
) -> (StopReason, u64) {
    match shared.config.bursts {
        Some(bursts) => schedule_bursts(shared, start, &bursts, &keepalive, &http2).await,
        None => schedule_rate(shared, start, &keepalive, &http2).await,
    }
}

async fn schedule_rate(
    shared: &Arc<RunContext>,
    start: Instant,
    keepalive: &mpsc::Sender<Job>,
    http2: &mpsc::Sender<Job>,
) -> (StopReason, u64) {
    let config = &shared.config;
    let end = config.duration.map(|d| start + d);
    let mut seq: u64 = 0;
    loop {
        if config.max_requests.is_some_and(|max| seq >= max) {
            return (StopReason::MaxRequests, seq);
        }
        let due = start + slot_offset(seq, config.rate);
        if end.is_some_and(|end| due >= end) {
            return (StopReason::Duration, seq);
        }
        if shared.stop.is_cancelled() {
            return (StopReason::Stopped, seq);
        }
        if due > Instant::now() {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return (StopReason::Stopped, seq),
                () = tokio::time::sleep_until(due.into()) => {}
            }
        } else {
            // Catching up must not monopolise a runtime thread.
            tokio::task::coop::consume_budget().await;
        }
        let Some(permit) = permit(shared).await else {
            return (StopReason::Stopped, seq);
        };
        let plan = shared.mix.plan(seq);
        let job = Job {
            due,
            plan,
            permit,
            burst: None,
        };
        dispatch(shared, job, keepalive, http2).await;
        seq += 1;
    }
}

/// Every request of a burst is dispatched at the burst's instant, one
/// after the other without waiting (the pooled workers and fresh tasks
/// start them in parallel); the next burst waits for its own instant.
async fn schedule_bursts(
    shared: &Arc<RunContext>,
    start: Instant,
    bursts: &Bursts,
    keepalive: &mpsc::Sender<Job>,
    http2: &mpsc::Sender<Job>,
) -> (StopReason, u64) {
    let mut seq: u64 = 0;
    for i in 0..bursts.count {
        let due = start + bursts.offset(i);
        if shared.stop.is_cancelled() {
            return (StopReason::Stopped, seq);
        }
        if due > Instant::now() {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => return (StopReason::Stopped, seq),
                () = tokio::time::sleep_until(due.into()) => {}
            }
        }
        shared.recorder.burst_started();
        // Validated: at most `MAX_BURSTS`.
        let burst = u32::try_from(i).ok();
        for _ in 0..bursts.size {
            let Some(permit) = permit(shared).await else {
                return (StopReason::Stopped, seq);
            };
            let plan = shared.mix.plan(seq);
            let job = Job {
                due,
                plan,
                permit,
                burst,
            };
            dispatch(shared, job, keepalive, http2).await;
            seq += 1;
        }
    }
    (StopReason::BurstsDone, seq)
}

/// A place under the in-flight bound, waited for if need be; `None` when
/// a stop comes first.
async fn permit(shared: &RunContext) -> Option<OwnedSemaphorePermit> {
    match shared.permits.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => tokio::select! {
            biased;
            () = shared.stop.cancelled() => None,
            permit = shared.permits.clone().acquire_owned() => {
                Some(permit.expect("the semaphore is never closed"))
            }
        },
    }
}

/// Hands a job to its connection mode: a task of its own for a fresh
/// connection, the queue of the keep-alive workers or of the HTTP/2 lanes.
async fn dispatch(
    shared: &Arc<RunContext>,
    job: Job,
    keepalive: &mpsc::Sender<Job>,
    http2: &mpsc::Sender<Job>,
) {
    match job.plan.mode {
        Mode::Fresh => {
            tokio::spawn(worker::fresh_request(shared.clone(), job));
        }
        Mode::Keepalive | Mode::Http2 => {
            let queue = if job.plan.mode == Mode::Http2 {
                http2
            } else {
                keepalive
            };
            // Capacity equals the in-flight bound and each job holds a
            // permit, so this never waits; the workers outlive the sender.
            if queue.send(job).await.is_err() {
                unreachable!("pooled workers exit only after the schedule");
            }
        }
    }
}

/// Offset of slot `seq` from the start; computed per slot, so rounding
/// errors do not accumulate.
fn slot_offset(seq: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::config::Config;
    use crate::mix::{Mix, Plan};

    fn context(bursts: Bursts) -> Arc<RunContext> {
        let config = Config {
            bursts: Some(bursts),
            keepalive_conns: bursts.size,
            fresh_fraction: 0.0,
            h2_fraction: 0.5,
            post_fraction: 0.3,
            max_in_flight: 1000,
            ..Config::new("127.0.0.1:1")
        };
        config.validate().unwrap();
        let mix = Mix::new(&config).unwrap();
        let host = HeaderValue::from_static("127.0.0.1:1");
        Arc::new(RunContext::new(
            config,
            "127.0.0.1:1".parse().unwrap(),
            host,
            mix,
        ))
    }

    /// A dispatched job, and when (on the paused clock) it was handed out.
    struct Seen {
        job: Job,
        at: Instant,
    }

    /// Runs the schedule, collecting what it hands to the two queues, in
    /// the order of each; `stop_after` jobs in all, it stops the run.
    async fn collect(
        shared: &Arc<RunContext>,
        stop_after: Option<usize>,
    ) -> ((StopReason, u64), Vec<Seen>, Vec<Seen>) {
        let start = shared.recorder.begin();
        let (tx, mut keepalive) = mpsc::channel(1000);
        let (h2_tx, mut http2) = mpsc::channel(1000);
        let scheduled = tokio::spawn({
            let shared = shared.clone();
            async move { schedule(&shared, start, tx, h2_tx).await }
        });
        let (mut ka, mut h2) = (Vec::new(), Vec::new());
        let mut open = (true, true);
        while open.0 || open.1 {
            let now = || tokio::time::Instant::now().into_std();
            tokio::select! {
                job = keepalive.recv(), if open.0 => match job {
                    Some(job) => ka.push(Seen { job, at: now() }),
                    None => open.0 = false,
                },
                job = http2.recv(), if open.1 => match job {
                    Some(job) => h2.push(Seen { job, at: now() }),
                    None => open.1 = false,
                },
            }
            if stop_after.is_some_and(|n| ka.len() + h2.len() == n) {
                shared.stop.cancel();
            }
        }
        (scheduled.await.unwrap(), ka, h2)
    }

    fn same_plan(a: &Plan, b: &Plan) -> bool {
        (a.route, a.mode, &a.uri, &a.body) == (b.route, b.mode, &b.uri, &b.body)
    }

    /// On a paused clock the scheduler's instants are exact: every request
    /// of burst `i` is handed out at `start + offset(i)` (the timer wheel
    /// wakes on the next millisecond at most), none earlier, and the mix is
    /// the one a rate would have used for the same sequence numbers.
    #[tokio::test(start_paused = true)]
    async fn every_request_of_a_burst_is_dispatched_at_its_instant() {
        let bursts = Bursts {
            count: 6,
            size: 7,
            period_from: Duration::from_millis(940),
            period_to: Duration::from_millis(1060),
        };
        let shared = context(bursts);
        let ((reason, dispatched), ka, h2) = collect(&shared, None).await;
        assert_eq!((reason, dispatched), (StopReason::BurstsDone, 42));
        assert_eq!(ka.len() + h2.len(), 42);
        // Both protocols and both methods were planned.
        assert!(!ka.is_empty() && !h2.is_empty());
        let all: Vec<&Seen> = ka.iter().chain(&h2).collect();
        assert!(
            all.iter()
                .any(|s| s.job.plan.route == crate::mix::Route::Echo)
        );
        let start = all
            .iter()
            .find(|s| s.job.burst == Some(0))
            .map(|s| s.job.due)
            .unwrap();
        for i in 0..bursts.count {
            let of_burst: Vec<&&Seen> = all
                .iter()
                .filter(|s| s.job.burst == Some(i as u32))
                .collect();
            assert_eq!(of_burst.len(), bursts.size, "burst {i}");
            let due = start + bursts.offset(i);
            for s in &of_burst {
                assert_eq!(s.job.due, due, "burst {i}");
                if i > 0 {
                    assert!(s.at >= due, "burst {i} handed out early");
                    assert!(
                        s.at <= due + Duration::from_millis(1),
                        "burst {i}: {:?} after its instant",
                        s.at - due
                    );
                }
                // The whole burst at one instant: no time passes between
                // its first request and its last.
                assert_eq!(s.at, of_burst[0].at, "burst {i}");
            }
        }
        // The gaps: 940, 970, 1000, 1030, 1060 ms.
        let gaps: Vec<Duration> = (0..5).map(|i| bursts.gap(i)).collect();
        assert_eq!(
            gaps,
            [940, 970, 1000, 1030, 1060].map(Duration::from_millis)
        );
        // Sequence numbers run on from burst to burst: each queue holds the
        // plans of its protocol, in order.
        for (queue, mode) in [(&ka, Mode::Keepalive), (&h2, Mode::Http2)] {
            let want: Vec<Plan> = (0..42)
                .map(|seq| shared.mix.plan(seq))
                .filter(|p| p.mode == mode)
                .collect();
            assert_eq!(queue.len(), want.len());
            assert!(
                queue
                    .iter()
                    .zip(&want)
                    .all(|(s, p)| same_plan(&s.job.plan, p))
            );
        }
        assert_eq!(shared.recorder.progress(false).sent, 0, "nothing started");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_bursts() {
        let bursts = Bursts {
            count: 10,
            size: 5,
            period_from: Duration::from_secs(2),
            period_to: Duration::from_secs(2),
        };
        let shared = context(bursts);
        // Stopped once the third burst was handed out: no fourth comes.
        let ((reason, dispatched), ka, h2) = collect(&shared, Some(15)).await;
        assert_eq!((reason, dispatched), (StopReason::Stopped, 15));
        assert_eq!(ka.len() + h2.len(), 15);
    }

    #[test]
    fn slots_are_evenly_spaced() {
        assert_eq!(slot_offset(0, 2000.0), Duration::ZERO);
        assert_eq!(slot_offset(1, 2000.0), Duration::from_micros(500));
        assert_eq!(slot_offset(2000, 2000.0), Duration::from_secs(1));
        assert_eq!(slot_offset(3, 0.5), Duration::from_secs(6));
        // A day at a high rate still lands on the right millisecond.
        let n = 86_400 * 50_000;
        let off = slot_offset(n, 50_000.0);
        assert!(off.abs_diff(Duration::from_secs(86_400)) < Duration::from_micros(1));
    }
}
