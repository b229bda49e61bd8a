//! The burst schedule, the alternative to a rate: `count` bursts of `size`
//! requests, all of a burst due at the same instant, the gap between one
//! burst and the next going linearly from `period_from` to `period_to`.
//!
//! It is the load that shows the keep-alive race behind a proxy without
//! any rollout: between bursts the proxy's pooled upstream connections sit
//! idle for about one period, and each burst reuses them all at once.
//! Sweeping the period across the server's idle keep-alive lifetime makes
//! some of those reuses land just as the server closes the connection.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::serde_ms;

/// Most bursts in one run (the report keeps a line per burst).
pub const MAX_BURSTS: u64 = 10_000;

/// Most requests in one burst (each may hold a socket at the same time).
pub const MAX_BURST_SIZE: usize = 10_000;

/// Shortest and longest gap between two bursts.
pub const BURST_PERIOD_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);

/// A burst schedule (`--bursts`, `--burst-size`, `--burst-period`).
///
/// Burst 0 is due when the run starts; burst `i + 1` is due `gap(i)` after
/// burst `i`, the gaps going linearly from `period_from` (the first) to
/// `period_to` (the last). Periods are echoed in reports as whole
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bursts {
    /// Bursts in the run (`--bursts`).
    pub count: u64,
    /// Requests per burst, all started at the burst's instant
    /// (`--burst-size`).
    pub size: usize,
    /// The first gap between two bursts (`--burst-period FROM..`).
    #[serde(rename = "period_from_ms", with = "serde_ms::ms")]
    pub period_from: Duration,
    /// The last gap between two bursts (`--burst-period ..TO`).
    #[serde(rename = "period_to_ms", with = "serde_ms::ms")]
    pub period_to: Duration,
}

impl Bursts {
    /// Requests in the whole schedule.
    pub fn requests(&self) -> u64 {
        self.count.saturating_mul(self.size as u64)
    }

    /// When burst `i` is due, from the run's start. Computed per burst in
    /// whole nanoseconds, so rounding does not accumulate: burst `i` is
    /// due at `i·FROM + (TO − FROM)·i·(i − 1) / (2·(count − 2))`, the sum
    /// of the gaps before it (with two bursts, the one gap is `FROM`).
    pub fn offset(&self, i: u64) -> Duration {
        let (from, to) = (self.period_from.as_nanos(), self.period_to.as_nanos());
        let i = u128::from(i);
        let mut ns = i * from;
        if self.count > 2 {
            // The gaps grow by (TO − FROM) / (count − 2) from one to the
            // next; a shrinking sweep is refused by `check`.
            let steps = i * i.saturating_sub(1) / 2;
            ns += to.saturating_sub(from) * steps / u128::from(self.count - 2);
        }
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The gap between burst `i` and burst `i + 1`.
    pub fn gap(&self, i: u64) -> Duration {
        self.offset(i + 1) - self.offset(i)
    }

    /// When the last burst is due, from the run's start.
    pub fn span(&self) -> Duration {
        self.offset(self.count.saturating_sub(1))
    }

    /// Why the schedule cannot run, in one line naming the flag.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=MAX_BURSTS).contains(&self.count) {
            return Err(format!(
                "--bursts must be in 1..={MAX_BURSTS}, got {}",
                self.count
            ));
        }
        if !(1..=MAX_BURST_SIZE).contains(&self.size) {
            return Err(format!(
                "--burst-size must be in 1..={MAX_BURST_SIZE}, got {}",
                self.size
            ));
        }
        let (from, to) = (self.period_from, self.period_to);
        if !BURST_PERIOD_RANGE.contains(&from) || !BURST_PERIOD_RANGE.contains(&to) {
            return Err(format!(
                "--burst-period must be between 1ms and 1h at both ends, got {from:?}..{to:?}"
            ));
        }
        if from > to {
            return Err(format!(
                "--burst-period FROM..TO needs FROM <= TO, got {from:?}..{to:?}"
            ));
        }
        Ok(())
    }
}

/// `--burst-period`: `FROM..TO`, or one duration for both; humantime each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodRange {
    /// The first gap.
    pub from: Duration,
    /// The last gap.
    pub to: Duration,
}

impl FromStr for PeriodRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let one = |t: &str| {
            humantime::parse_duration(t.trim())
                .map_err(|e| format!("{t:?} is not a duration (FROM..TO, e.g. 940ms..1060ms): {e}"))
        };
        match s.split_once("..") {
            Some((from, to)) => Ok(Self {
                from: one(from)?,
                to: one(to)?,
            }),
            None => {
                let d = one(s)?;
                Ok(Self { from: d, to: d })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bursts(count: u64, from_ms: u64, to_ms: u64) -> Bursts {
        Bursts {
            count,
            size: 1,
            period_from: Duration::from_millis(from_ms),
            period_to: Duration::from_millis(to_ms),
        }
    }

    fn offsets(b: &Bursts) -> Vec<Duration> {
        (0..b.count).map(|i| b.offset(i)).collect()
    }

    #[test]
    fn gaps_go_linearly_from_the_first_period_to_the_last() {
        // 5 bursts, 4 gaps: 100, 133.33…, 166.66…, 200 ms.
        let b = bursts(5, 100, 200);
        let ns = |n: u64| Duration::from_nanos(n);
        assert_eq!(
            offsets(&b),
            [
                ns(0),
                ns(100_000_000),
                ns(233_333_333),
                ns(400_000_000),
                ns(600_000_000),
            ]
        );
        assert_eq!(b.gap(0), Duration::from_millis(100));
        assert_eq!(b.gap(3), Duration::from_millis(200));
        assert_eq!(b.span(), Duration::from_millis(600));
    }

    #[test]
    fn the_sweep_of_the_issue_crosses_one_second() {
        // 120 bursts, gaps from 0.94 s to 1.06 s: 119 gaps, every one a
        // little longer than the one before, both ends exact.
        let b = Bursts {
            size: 100,
            ..bursts(120, 940, 1060)
        };
        assert_eq!(b.requests(), 12_000);
        let gaps: Vec<Duration> = (0..119).map(|i| b.gap(i)).collect();
        assert_eq!(gaps[0], Duration::from_millis(940));
        assert_eq!(gaps[118], Duration::from_millis(1060));
        // Each gap is a difference of two offsets floored to the
        // nanosecond: a step is 120 ms / 118 within a few nanoseconds.
        let step = Duration::from_nanos(120_000_000 / 118);
        for w in gaps.windows(2) {
            let d = w[1] - w[0];
            assert!(d.abs_diff(step) <= Duration::from_nanos(3), "{w:?}");
        }
        // The gaps around one second, where a 1 s idle close races.
        assert_eq!(
            gaps.iter()
                .filter(|g| g.abs_diff(Duration::from_secs(1)) < Duration::from_millis(5))
                .count(),
            9
        );
        // 119 gaps averaging one second.
        assert_eq!(b.span(), Duration::from_secs(119));
    }

    #[test]
    fn a_constant_period_and_short_schedules() {
        let b = bursts(4, 250, 250);
        assert_eq!(
            offsets(&b),
            [0, 250, 500, 750].map(Duration::from_millis).to_vec()
        );
        assert_eq!(offsets(&bursts(1, 10, 20)), [Duration::ZERO]);
        assert_eq!(bursts(1, 10, 20).span(), Duration::ZERO);
        assert_eq!(
            offsets(&bursts(2, 10, 20)),
            [Duration::ZERO, Duration::from_millis(10)]
        );
        // Three bursts: the two gaps are the two ends.
        assert_eq!(
            offsets(&bursts(3, 10, 20)),
            [0, 10, 30].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn the_longest_schedule_is_exact() {
        let b = bursts(MAX_BURSTS, 3_599_999, 3_600_000);
        b.check().unwrap();
        assert_eq!(b.gap(0), Duration::from_millis(3_599_999));
        assert_eq!(b.gap(MAX_BURSTS - 2), Duration::from_secs(3600));
        let mean = (3_599_999_000_000u128 + 3_600_000_000_000) / 2;
        let want = mean * u128::from(MAX_BURSTS - 1);
        assert_eq!(b.span().as_nanos(), want);
    }

    #[test]
    fn nonsense_is_refused_naming_the_flag() {
        for (b, needle) in [
            (bursts(0, 10, 10), "--bursts must be in 1..=10000, got 0"),
            (bursts(MAX_BURSTS + 1, 10, 10), "--bursts"),
            (
                Bursts {
                    size: 0,
                    ..bursts(1, 10, 10)
                },
                "--burst-size must be in 1..=10000, got 0",
            ),
            (
                Bursts {
                    size: MAX_BURST_SIZE + 1,
                    ..bursts(1, 10, 10)
                },
                "--burst-size",
            ),
            (
                bursts(3, 1060, 940),
                "--burst-period FROM..TO needs FROM <= TO, got 1.06s..940ms",
            ),
            (
                bursts(3, 0, 10),
                "--burst-period must be between 1ms and 1h",
            ),
            (bursts(3, 10, 3_600_001), "--burst-period"),
        ] {
            let err = b.check().unwrap_err();
            assert!(err.contains(needle), "{b:?}: {err}");
            assert!(!err.contains('\n'));
        }
        bursts(1, 1, 1).check().unwrap();
        bursts(MAX_BURSTS, 3_600_000, 3_600_000).check().unwrap();
    }

    #[test]
    fn serialises_like_the_other_durations() {
        let b = Bursts {
            size: 100,
            ..bursts(120, 940, 1060)
        };
        let v = serde_json::to_value(b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "count": 120, "size": 100, "period_from_ms": 940, "period_to_ms": 1060
            })
        );
        assert_eq!(serde_json::from_value::<Bursts>(v).unwrap(), b);
    }
}
