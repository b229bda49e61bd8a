//! Repeated measurements, their median and their spread, and how a figure
//! compares with its goal.
//!
//! Spread is the interquartile range (Q3 − Q1, quantiles interpolated
//! linearly between order statistics): the width of the middle half of the
//! repeated measurements, so one disturbed repetition on a shared machine
//! does not widen it the way it would widen min–max. Min and max are reported
//! next to it.

use std::fmt;

/// The median and spread of repeated measurements of one figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// How many measurements.
    pub n: usize,
    /// The figure reported.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest measurement.
    pub min: f64,
    /// Largest measurement.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none (or one is NaN).
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            n: sorted.len(),
            median: quantile(&sorted, 0.5),
            q1: quantile(&sorted, 0.25),
            q3: quantile(&sorted, 0.75),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }

    /// The spread: Q3 − Q1.
    pub fn spread(&self) -> f64 {
        self.q3 - self.q1
    }
}

/// The `p`-quantile (0..=1) of sorted, non-empty `sorted`, interpolating
/// linearly between the closest ranks.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of nothing");
    let rank = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

/// `a[i] / b[i]` for each pair.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// What a figure should be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// Higher is better; the figure should reach this.
    AtLeast(f64),
    /// Lower is better; the figure should stay within this.
    AtMost(f64),
    /// Reported for information.
    None,
}

impl Goal {
    /// By how much `value` falls short of the goal (0 when it meets it).
    pub fn shortfall(self, value: f64) -> f64 {
        match self {
            Goal::AtLeast(goal) => (goal - value).max(0.0),
            Goal::AtMost(goal) => (value - goal).max(0.0),
            Goal::None => 0.0,
        }
    }
}

/// How a figure compares with its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The median meets the goal.
    Meets,
    /// The median misses the goal by no more than the measured spread: the
    /// run cannot tell it from noise.
    WithinSpread,
    /// The median misses the goal by more than the measured spread.
    Misses,
    /// No goal.
    NoGoal,
}

impl Verdict {
    /// Whether `just bench-check` fails on it.
    pub fn fails_check(self) -> bool {
        self == Verdict::Misses
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Meets => "meets",
            Verdict::WithinSpread => "misses, within spread",
            Verdict::Misses => "MISSES",
            Verdict::NoGoal => "no goal",
        })
    }
}

/// Judges a summary's median against `goal`, allowing its spread.
pub fn judge(goal: Goal, summary: &Summary) -> Verdict {
    if goal == Goal::None {
        return Verdict::NoGoal;
    }
    let shortfall = goal.shortfall(summary.median);
    if shortfall == 0.0 {
        Verdict::Meets
    } else if shortfall <= summary.spread() {
        Verdict::WithinSpread
    } else {
        Verdict::Misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&sorted, 0.0), 1.0);
        assert_eq!(quantile(&sorted, 0.5), 2.5);
        assert_eq!(quantile(&sorted, 0.25), 1.75);
        assert_eq!(quantile(&sorted, 0.75), 3.25);
        assert_eq!(quantile(&sorted, 1.0), 4.0);
        assert_eq!(quantile(&[7.0], 0.3), 7.0);
    }

    #[test]
    fn summary_sorts_and_measures_the_middle_half() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!((s.q1, s.q3), (2.0, 4.0));
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert_eq!(s.spread(), 2.0);
        // One outlier moves min–max, not the interquartile range.
        let t = Summary::of(&[5.0, 1.0, 3.0, 2.0, 400.0]).unwrap();
        assert_eq!(t.spread(), 3.0);
        assert_eq!(t.max, 400.0);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn ratios_pair_up() {
        assert_eq!(ratios(&[1.0, 3.0], &[2.0, 3.0]), vec![0.5, 1.0]);
    }

    #[test]
    fn verdicts_allow_the_spread_and_no_more() {
        let s = |median: f64, q1: f64, q3: f64| Summary {
            n: 6,
            median,
            q1,
            q3,
            min: q1,
            max: q3,
        };
        let at_least = Goal::AtLeast(0.97);
        assert_eq!(judge(at_least, &s(0.98, 0.97, 0.99)), Verdict::Meets);
        assert_eq!(judge(at_least, &s(0.97, 0.96, 0.98)), Verdict::Meets);
        assert_eq!(judge(at_least, &s(0.95, 0.94, 0.97)), Verdict::WithinSpread);
        assert_eq!(judge(at_least, &s(0.90, 0.89, 0.91)), Verdict::Misses);
        let at_most = Goal::AtMost(5.0);
        assert_eq!(judge(at_most, &s(4.0, 3.0, 6.0)), Verdict::Meets);
        assert_eq!(judge(at_most, &s(6.0, 5.0, 7.5)), Verdict::WithinSpread);
        assert_eq!(judge(at_most, &s(9.0, 8.0, 10.0)), Verdict::Misses);
        assert_eq!(judge(Goal::None, &s(9.0, 8.0, 10.0)), Verdict::NoGoal);
        assert!(Verdict::Misses.fails_check());
        assert!(!Verdict::WithinSpread.fails_check());
    }
}
