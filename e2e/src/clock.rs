//! The load generator's clock against the runner's. The load timeline is
//! stamped by the load generator's clock (in a cluster, its node's), the
//! replicas' transitions by the runner's; on a real cluster the two can
//! differ by seconds. The runner asks the load generator for its time while
//! it polls its progress, keeps the answer with the shortest round trip, and
//! moves the load report onto its own clock, or fails the run when the
//! offset could not be measured closely enough.

use serde::Serialize;

/// Largest uncertainty (half the best round trip) the verdict accepts.
pub const MAX_UNCERTAINTY_MS: u64 = 250;

/// One question: when the runner asked, what the remote clock said, when
/// the answer came back (Unix milliseconds; runner, remote, runner).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster's load generator is remote
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub sent_ms: u64,
    pub remote_ms: u64,
    pub received_ms: u64,
}

/// How far the remote clock is ahead of the runner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Offset {
    /// Remote minus runner, in milliseconds.
    pub offset_ms: i64,
    /// Half the round trip of the sample it came from: the true offset is
    /// within this of `offset_ms`.
    pub uncertainty_ms: u64,
    /// Samples it was chosen from.
    pub samples: usize,
}

impl Offset {
    /// The same clock (the load generator runs in the runner's process).
    pub const SAME: Offset = Offset {
        offset_ms: 0,
        uncertainty_ms: 0,
        samples: 0,
    };

    /// The sample with the shortest round trip; None without one.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn best(samples: &[Sample]) -> Option<Offset> {
        let best = samples
            .iter()
            .filter(|s| s.received_ms >= s.sent_ms)
            .min_by_key(|s| s.received_ms - s.sent_ms)?;
        // Twice the midpoint, to stay in whole milliseconds.
        let twice_mid = i128::from(best.sent_ms) + i128::from(best.received_ms);
        let offset = (2 * i128::from(best.remote_ms) - twice_mid) / 2;
        Some(Offset {
            offset_ms: i64::try_from(offset).unwrap_or(i64::MAX),
            uncertainty_ms: (best.received_ms - best.sent_ms).div_ceil(2),
            samples: samples.len(),
        })
    }

    /// A remote time on the runner's clock.
    pub fn to_runner(self, remote_ms: u64) -> u64 {
        u64::try_from(i128::from(remote_ms) - i128::from(self.offset_ms)).unwrap_or(0)
    }
}

/// Moves every time of a load report onto the runner's clock.
pub fn to_runner(report: &mut loadgen::Report, offset: Offset) {
    report.started_unix_ms = offset.to_runner(report.started_unix_ms);
    for second in &mut report.timeline {
        second.t_unix_ms = offset.to_runner(second.t_unix_ms);
    }
    for error in &mut report.errors {
        error.at_unix_ms = offset.to_runner(error.at_unix_ms);
    }
}

/// The verdict's view: passed, and what to say.
pub fn judged(offset: Option<Offset>) -> (bool, String) {
    match offset {
        None => (
            false,
            "unknown: the load generator never told its time, so its timeline cannot be set against the replicas' transitions".to_owned(),
        ),
        Some(o) if o.samples == 0 => (true, "the runner's own clock".to_owned()),
        Some(o) => (
            o.uncertainty_ms <= MAX_UNCERTAINTY_MS,
            format!(
                "{:+} ms ± {} ms (best round trip of {} samples; at most ± {MAX_UNCERTAINTY_MS} ms accepted); the load timeline is moved onto the runner's clock",
                o.offset_ms, o.uncertainty_ms, o.samples
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_round_trip_wins() {
        let samples = [
            Sample {
                sent_ms: 1_000,
                remote_ms: 6_400,
                received_ms: 1_600,
            },
            Sample {
                sent_ms: 2_000,
                remote_ms: 7_010,
                received_ms: 2_020,
            },
        ];
        let o = Offset::best(&samples).unwrap();
        assert_eq!((o.offset_ms, o.uncertainty_ms, o.samples), (5_000, 10, 2));
        assert_eq!(o.to_runner(7_010), 2_010);
        assert!(judged(Some(o)).0);
    }

    #[test]
    fn a_remote_clock_behind_the_runner_is_a_negative_offset() {
        let o = Offset::best(&[Sample {
            sent_ms: 10_000,
            remote_ms: 7_001,
            received_ms: 10_002,
        }])
        .unwrap();
        assert_eq!(o.offset_ms, -3_000);
        assert_eq!(o.to_runner(7_500), 10_500);
    }

    #[test]
    fn no_sample_or_a_slow_one_is_unknown() {
        assert_eq!(Offset::best(&[]), None);
        let (passed, detail) = judged(None);
        assert!(!passed && detail.starts_with("unknown"), "{detail}");
        let slow = Offset::best(&[Sample {
            sent_ms: 0,
            remote_ms: 400,
            received_ms: 800,
        }]);
        assert!(!judged(slow).0);
    }

    #[test]
    fn a_report_moves_onto_the_runner_s_clock() {
        let mut r = crate::verdict::fixtures::report(&[(10_000, 5, &[]), (11_000, 5, &[])], 0);
        r.started_unix_ms = 9_500;
        let o = Offset {
            offset_ms: 2_000,
            uncertainty_ms: 1,
            samples: 3,
        };
        to_runner(&mut r, o);
        assert_eq!(r.started_unix_ms, 7_500);
        let starts: Vec<u64> = r.timeline.iter().map(|s| s.t_unix_ms).collect();
        assert_eq!(starts, [8_000, 9_000]);
    }
}
