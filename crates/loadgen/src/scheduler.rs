//! The open-loop schedule: request `n` is due at `start + n / rate`, however
//! long earlier requests take. When the in-flight bound holds a request back
//! it is sent as soon as a slot frees, and counted as late when it starts;
//! nothing scheduled is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::context::RunContext;
use crate::mix::Mode;
use crate::report::StopReason;
use crate::worker::{self, Job};

/// Dispatches requests until a bound or a stop; returns why it stopped and
/// how many requests it dispatched.
pub(crate) async fn schedule(
    shared: &Arc<RunContext>,
    start: Instant,
    keepalive: mpsc::Sender<Job>,
    http2: mpsc::Sender<Job>,
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
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::select! {
                biased;
                () = shared.stop.cancelled() => return (StopReason::Stopped, seq),
                permit = shared.permits.clone().acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
            },
        };
        let plan = shared.mix.plan(seq);
        let job = Job { due, plan, permit };
        match job.plan.mode {
            Mode::Fresh => {
                tokio::spawn(worker::fresh_request(shared.clone(), job));
            }
            Mode::Keepalive | Mode::Http2 => {
                let queue = if job.plan.mode == Mode::Http2 {
                    &http2
                } else {
                    &keepalive
                };
                // Capacity equals the in-flight bound and each job holds a
                // permit, so this never waits; the workers outlive the sender.
                if queue.send(job).await.is_err() {
                    unreachable!("pooled workers exit only after the schedule");
                }
            }
        }
        seq += 1;
    }
}

/// Offset of slot `seq` from the start; computed per slot, so rounding
/// errors do not accumulate.
fn slot_offset(seq: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

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
