//! What a Prometheus recorded of the run, asked the same way of the local
//! backend's Prometheus and of a cluster's. Every question is scoped to the
//! run's own replicas and to its time window, and the raw samples are
//! filtered by their timestamps here: data an earlier run left in the same
//! Prometheus cannot pass a check.

use anyhow::Result;

use crate::promql::Series;
use crate::verdict::{Check, Outcome, Span, Termination, Verdict};

/// Prometheus' clock may differ a little from the runner's (in a cluster it
/// runs on a node): this much is allowed at each end of a window.
const CLOCK_SLACK_MS: u64 = 1_000;

/// A Prometheus' query API: instant queries of range selectors, answered
/// with raw samples.
pub trait Ask {
    /// `promql` (a range selector) evaluated at `at_s` (Unix seconds).
    async fn matrix(&self, promql: &str, at_s: f64) -> Result<Vec<Series>>;
}

/// Which series belong to the run: a label naming each replica, and the
/// other labels that pin them down (a cluster's namespace).
#[derive(Debug, Clone)]
pub struct Scope {
    label: &'static str,
    fixed: String,
    names: Vec<String>,
}

impl Scope {
    /// A cluster's pods in `namespace` (deploy/prometheus's `namespace` and
    /// `pod` labels).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn pods(namespace: &str, names: &[String]) -> Self {
        Self {
            label: "pod",
            fixed: format!("namespace=\"{}\",", quote(namespace)),
            names: names.to_vec(),
        }
    }

    /// The local backend's replicas (its `replica` label).
    pub fn replicas(names: &[String]) -> Self {
        Self {
            label: "replica",
            fixed: String::new(),
            names: names.to_vec(),
        }
    }

    /// A selector for every replica of the run.
    fn all(&self) -> String {
        let alternatives: Vec<String> = self.names.iter().map(|n| regex_quote(n)).collect();
        format!(
            "{{{}{}=~\"{}\"}}",
            self.fixed,
            self.label,
            alternatives.join("|")
        )
    }

    /// A selector for one replica.
    fn one(&self, name: &str) -> String {
        format!("{{{}{}=\"{}\"}}", self.fixed, self.label, quote(name))
    }
}

/// The samples of one replica's shutdown series between its deletion and
/// its exit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub phase: Vec<(f64, f64)>,
    pub duration: Vec<(f64, f64)>,
    pub aborted: Vec<(f64, f64)>,
    pub aborted_upgraded: Vec<(f64, f64)>,
}

/// Requests in flight were recorded during the run, and each terminated
/// replica's final figures between its deletion and its exit: the outcome
/// (phase 3 clean, 4 forced), a duration above zero, and what it cut off.
pub async fn check(
    prometheus: &impl Ask,
    scope: &Scope,
    terminations: &[Termination],
    run: Span,
    outcome: Outcome,
    verdict: &mut Verdict,
) -> Result<()> {
    let in_flight = ask(prometheus, "http_server_active_requests", &scope.all(), run).await?;
    verdict.checks.push(in_flight_check(&in_flight, run));
    for t in terminations {
        let window = Span {
            from_ms: t.terminating_ms,
            to_ms: t.exited_ms,
        };
        let one = scope.one(&t.name);
        let recorded = Recorded {
            phase: ask(prometheus, "lameduck_shutdown_phase", &one, window).await?,
            duration: ask(
                prometheus,
                "lameduck_shutdown_duration_seconds",
                &one,
                window,
            )
            .await?,
            aborted: ask(
                prometheus,
                "lameduck_shutdown_aborted_requests_total",
                &one,
                window,
            )
            .await?,
            aborted_upgraded: ask(
                prometheus,
                "lameduck_shutdown_aborted_upgraded_connections_total",
                &one,
                window,
            )
            .await?,
        };
        verdict
            .checks
            .push(shutdown_check(&t.name, &recorded, window, outcome));
    }
    Ok(())
}

/// The raw samples of `metric{selector}` inside `window` (with the slack).
async fn ask(
    prometheus: &impl Ask,
    metric: &str,
    selector: &str,
    window: Span,
) -> Result<Vec<(f64, f64)>> {
    let window = window.widened(CLOCK_SLACK_MS);
    let range_s = (window.to_ms - window.from_ms).div_ceil(1000) + 1;
    let series = prometheus
        .matrix(
            &format!("{metric}{selector}[{range_s}s]"),
            window.to_ms as f64 / 1e3,
        )
        .await?;
    Ok(inside(&series, window))
}

/// The samples whose timestamps fall inside `window`.
fn inside(series: &[Series], window: Span) -> Vec<(f64, f64)> {
    let (from, to) = (window.from_ms as f64 / 1e3, window.to_ms as f64 / 1e3);
    series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(at, _)| (from..=to).contains(at))
        .collect()
}

fn highest(samples: &[(f64, f64)]) -> Option<f64> {
    samples.iter().map(|(_, v)| *v).reduce(f64::max)
}

/// Prometheus saw requests in flight on the run's replicas during the run.
pub fn in_flight_check(samples: &[(f64, f64)], run: Span) -> Check {
    let peak = highest(samples);
    Check {
        name: "Prometheus saw requests in flight".to_owned(),
        passed: peak.is_some_and(|p| p > 0.0),
        detail: match peak {
            Some(p) => format!(
                "max http_server_active_requests = {p} over {} samples of the run's replicas during its {:.1} s",
                samples.len(),
                run.seconds()
            ),
            None => "unknown: no sample of http_server_active_requests from the run's replicas during the run".to_owned(),
        },
    }
}

/// Prometheus recorded `name`'s final figures while it terminated: the
/// outcome `want` (phase 3 clean, 4 forced), a duration above zero, and
/// aborted requests and upgraded connections counted (none for a clean
/// shutdown, some requests for a forced one).
pub fn shutdown_check(name: &str, r: &Recorded, window: Span, want: Outcome) -> Check {
    let final_phase = highest(&r.phase);
    let duration = highest(&r.duration);
    let (aborted, upgraded) = (highest(&r.aborted), highest(&r.aborted_upgraded));
    let outcome = match final_phase {
        Some(3.0) => Some(Outcome::Clean),
        Some(4.0) => Some(Outcome::Forced),
        _ => None,
    };
    let counts_as_wanted = match want {
        Outcome::Clean => aborted == Some(0.0) && upgraded == Some(0.0),
        Outcome::Forced => aborted.is_some_and(|a| a > 0.0) && upgraded.is_some(),
    };
    let passed = outcome == Some(want) && duration.is_some_and(|d| d > 0.0) && counts_as_wanted;
    let seen = format!(
        "{} samples between its deletion and its exit ({:.1} s): final phase {} (3 clean, 4 forced; {want:?} wanted), shutdown duration {}, aborted requests {}, aborted upgraded connections {}",
        r.phase.len(),
        window.seconds(),
        fmt(final_phase),
        duration.map_or("-".to_owned(), |d| format!("{d:.3} s")),
        fmt(aborted),
        fmt(upgraded),
    );
    Check {
        name: format!("Prometheus recorded {name}'s final shutdown figures"),
        passed,
        detail: if r.phase.is_empty() {
            format!("unknown: no sample of lameduck_shutdown_phase; {seen}")
        } else if outcome.is_none() {
            format!("unknown: its final figures were never scraped; {seen}")
        } else {
            seen
        },
    }
}

fn fmt(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

/// A PromQL string literal's content.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A PromQL regex that matches `value` literally.
fn regex_quote(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    quote(&out)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::verdict::fixtures::termination;

    /// Answers every question with the same series, and notes the questions.
    struct Fake {
        series: Vec<(f64, f64)>,
        asked: Mutex<Vec<(String, f64)>>,
    }

    impl Ask for Fake {
        async fn matrix(&self, promql: &str, at_s: f64) -> Result<Vec<Series>> {
            self.asked.lock().unwrap().push((promql.to_owned(), at_s));
            Ok(vec![Series {
                labels: Default::default(),
                points: self.series.clone(),
            }])
        }
    }

    fn fake(series: &[(f64, f64)]) -> Fake {
        Fake {
            series: series.to_vec(),
            asked: Mutex::default(),
        }
    }

    const RUN: Span = Span {
        from_ms: 100_000,
        to_ms: 160_000,
    };

    #[tokio::test]
    async fn questions_are_scoped_to_the_run_s_pods_and_windows() {
        let p = fake(&[(110.0, 3.0), (125.0, 4.0)]);
        let scope = Scope::pods("ns", &["a-1".to_owned(), "b.2".to_owned()]);
        let mut v = Verdict::default();
        check(
            &p,
            &scope,
            &[termination("a-1", 120_000, 126_000)],
            RUN,
            Outcome::Forced,
            &mut v,
        )
        .await
        .unwrap();
        assert!(v.passed(), "{v}");
        let asked = p.asked.lock().unwrap();
        assert_eq!(
            asked[0],
            (
                r#"http_server_active_requests{namespace="ns",pod=~"a-1|b\\.2"}[63s]"#.to_owned(),
                161.0
            )
        );
        assert_eq!(
            asked[1],
            (
                r#"lameduck_shutdown_phase{namespace="ns",pod="a-1"}[9s]"#.to_owned(),
                127.0
            )
        );
    }

    /// The data of an earlier run, in the same Prometheus, under the same
    /// labels: outside the run's window, it proves nothing.
    #[tokio::test]
    async fn samples_from_before_the_run_do_not_count() {
        let earlier = fake(&[(20.0, 12.0), (30.0, 3.0)]);
        let scope = Scope::replicas(&["a".to_owned()]);
        let mut v = Verdict::default();
        check(
            &earlier,
            &scope,
            &[termination("a", 120_000, 126_000)],
            RUN,
            Outcome::Clean,
            &mut v,
        )
        .await
        .unwrap();
        assert_eq!(v.checks.len(), 2);
        assert!(v.checks.iter().all(|c| !c.passed), "{v}");
        assert!(
            v.checks.iter().all(|c| c.detail.starts_with("unknown")),
            "{v}"
        );
    }

    const W: Span = Span {
        from_ms: 10_000,
        to_ms: 16_000,
    };

    /// The samples a scrape every 2 s gives of a shutdown that ended
    /// `final_phase` after `duration` s, having aborted `aborted`.
    fn scraped(final_phase: f64, duration: f64, aborted: f64) -> Recorded {
        Recorded {
            phase: vec![(11.0, 0.0), (13.0, 0.0), (15.0, final_phase)],
            duration: vec![(11.0, 0.0), (13.0, 0.0), (15.0, duration)],
            aborted: vec![(11.0, 0.0), (13.0, 0.0), (15.0, aborted)],
            aborted_upgraded: vec![(11.0, 0.0), (13.0, 0.0), (15.0, 0.0)],
        }
    }

    /// Scraped only inside its preStop, as a 30 s scrape interval almost
    /// always does without the final scrape: it shows nothing.
    #[test]
    fn a_shutdown_seen_only_at_phase_0_does_not_pass() {
        let c = shutdown_check("a", &scraped(0.0, 0.0, 0.0), W, Outcome::Clean);
        assert!(!c.passed, "{}", c.detail);
        assert!(
            c.detail.starts_with("unknown: its final figures"),
            "{}",
            c.detail
        );
        // Closing, not yet done: the final figures are still missing.
        let c = shutdown_check("a", &scraped(2.0, 0.4, 0.0), W, Outcome::Clean);
        assert!(!c.passed, "{}", c.detail);
    }

    #[test]
    fn the_final_figures_must_show_the_wanted_outcome() {
        let clean = scraped(3.0, 0.51, 0.0);
        assert!(shutdown_check("a", &clean, W, Outcome::Clean).passed);
        assert!(!shutdown_check("a", &clean, W, Outcome::Forced).passed);
        let forced = scraped(4.0, 1.2, 7.0);
        let c = shutdown_check("a", &forced, W, Outcome::Forced);
        assert!(c.passed, "{}", c.detail);
        assert!(c.detail.contains("aborted requests 7"), "{}", c.detail);
        assert!(!shutdown_check("a", &forced, W, Outcome::Clean).passed);
        // Forced, but nothing counted as cut off: the counters lie.
        assert!(!shutdown_check("a", &scraped(4.0, 1.2, 0.0), W, Outcome::Forced).passed);
        // Clean, but a counter never scraped: unknown, not zero.
        let mut unscraped = clean;
        unscraped.aborted_upgraded.clear();
        assert!(!shutdown_check("a", &unscraped, W, Outcome::Clean).passed);
    }

    #[test]
    fn only_samples_inside_the_window_count() {
        let series = [Series {
            labels: Default::default(),
            points: vec![(8.0, 0.0), (10.5, 0.0), (14.9, 2.0), (16.0, 3.0)],
        }];
        let w = Span {
            from_ms: 10_000,
            to_ms: 15_500,
        };
        assert_eq!(inside(&series, w), [(10.5, 0.0), (14.9, 2.0)]);
    }
}
