//! The assertions, shared by both backends: what a rollout run must show.

use std::fmt;

use loadgen::Report;
use serde::{Deserialize, Serialize};

/// What a run is expected to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Graceful shutdown: not a single failed request.
    NoFailures,
    /// A negative control: the same scenario must report failures, or the
    /// suite could not tell a broken shutdown from a working one.
    Failures,
}

/// One terminated replica, as the assertions need it (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    pub name: String,
    /// Pod deleted: preStop started, endpoint removal on its way.
    pub terminating_ms: u64,
    /// Process gone.
    pub exited_ms: u64,
    /// SIGKILL was needed.
    pub killed: bool,
    /// None when nobody saw it: the check then fails.
    pub exit_code: Option<i32>,
}

/// One assertion and how it came out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// All assertions of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    pub fn push(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let mark = if check.passed { "PASS" } else { "FAIL" };
            writeln!(f, "  {mark}  {}: {}", check.name, check.detail)?;
        }
        Ok(())
    }
}

/// Thresholds of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Bar {
    /// Requests per second that must have been sent while each old replica
    /// terminated.
    pub min_rate_while_terminating: f64,
}

/// Judges a run's load report against its terminations.
pub fn judge(report: &Report, terminations: &[Termination], expect: Expect, bar: Bar) -> Verdict {
    let mut verdict = Verdict::default();
    let o = &report.outcomes;
    let breakdown = format!(
        "{} sent, {} ok, {} failed (status {:?}, refused {}, connect error {}, reset {}, timeout {}, other {}), {} cut off by the load generator's stop, {} never started",
        report.sent,
        o.ok,
        report.failures,
        o.status,
        o.connect_refused,
        o.connect_error,
        o.reset,
        o.timeout,
        o.other,
        o.aborted,
        report.not_started
    );
    match expect {
        Expect::NoFailures => verdict.push("no failed request", report.is_clean(), breakdown),
        Expect::Failures => verdict.push(
            "failed requests, as expected",
            report.failures > 0,
            breakdown,
        ),
    }

    verdict.push(
        "old replicas terminated",
        !terminations.is_empty(),
        format!("{} replicas went through termination", terminations.len()),
    );
    for t in terminations {
        let sent = sent_between(report, t.terminating_ms, t.exited_ms);
        let window = (t.exited_ms.saturating_sub(t.terminating_ms)).max(1) as f64 / 1e3;
        let rate = sent / window;
        verdict.push(
            format!("load while {} terminated", t.name),
            rate >= bar.min_rate_while_terminating,
            format!(
                "{sent:.0} requests sent in its {window:.3} s of termination, {rate:.0}/s (at least {:.0}/s required)",
                bar.min_rate_while_terminating
            ),
        );
        if expect == Expect::NoFailures {
            let served = served_between(report, &t.name, t.terminating_ms, t.exited_ms);
            verdict.push(
                format!("{} kept serving after deletion", t.name),
                served > 0,
                format!("{served} `GET /` answered by it after its pod was deleted"),
            );
            // An exit code nobody saw is not a pass.
            verdict.push(
                format!("{} exited on its own", t.name),
                !t.killed && t.exit_code == Some(0),
                match (t.exit_code, t.killed) {
                    (None, _) => "unknown: no exit code was seen".to_owned(),
                    (Some(code), true) => {
                        format!("exit code {code}, SIGKILL after the grace period")
                    }
                    (Some(code), false) => format!("exit code {code}"),
                },
            );
        }
    }
    verdict
}

/// Requests started during `[from, to]`, each second's count weighted by how
/// much of that second the interval covers.
pub fn sent_between(report: &Report, from: u64, to: u64) -> f64 {
    overlapping(report, from, to)
        .map(|s| {
            let covered = to
                .min(s.t_unix_ms + 1000)
                .saturating_sub(from.max(s.t_unix_ms));
            s.sent as f64 * covered as f64 / 1000.0
        })
        .sum()
}

/// `GET /` answers from `replica` in the seconds that overlap `[from, to]`.
pub fn served_between(report: &Report, replica: &str, from: u64, to: u64) -> u64 {
    overlapping(report, from, to)
        .filter_map(|s| s.served_by.get(replica))
        .sum()
}

fn overlapping(report: &Report, from: u64, to: u64) -> impl Iterator<Item = &loadgen::Second> {
    report
        .timeline
        .iter()
        .filter(move |s| s.t_unix_ms < to && s.t_unix_ms + 1000 > from)
}

/// A load report with the given timeline, for tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use loadgen::Report;

    /// (second's start, requests sent, `GET /` answers per replica)
    pub(crate) type Bucket<'a> = (u64, u64, &'a [(&'a str, u64)]);

    pub(crate) fn report(seconds: &[Bucket<'_>], failures: u64) -> Report {
        let mut json = serde_json::json!({
            "version": loadgen::REPORT_VERSION,
            "config": serde_json::to_value(loadgen::Config::new("127.0.0.1:1")).unwrap(),
            "target_addr": "127.0.0.1:1", "started_unix_ms": 0, "elapsed_ms": 0,
            "stop_reason": "stopped", "scheduled": 0, "sent": 0, "not_started": 0,
            "late_start": 0, "max_start_delay_ms": 0.0,
            "outcomes": {"ok": 0, "status": {}, "connect_refused": 0, "connect_error": 0,
                          "reset": failures, "timeout": 0, "other": 0, "aborted": 0},
            "failures": failures,
            "connections": {"opened": 0, "close_responses": 0, "closed_while_idle": 0},
            "latency": {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0},
            "routes": serde_json::Value::Null, "modes": serde_json::Value::Null,
            "served_by": {}, "timeline": [], "errors": []
        });
        json["routes"] = serde_json::to_value(loadgen::Routes::default()).unwrap();
        json["modes"] = serde_json::to_value(loadgen::Modes::default()).unwrap();
        let mut report: Report = serde_json::from_value(json).unwrap();
        report.timeline = seconds
            .iter()
            .map(|(t, sent, served)| loadgen::Second {
                t_unix_ms: *t,
                sent: *sent,
                served_by: served
                    .iter()
                    .map(|(n, c)| ((*n).to_owned(), *c))
                    .collect::<BTreeMap<_, _>>(),
                ..Default::default()
            })
            .collect();
        report.sent = report.timeline.iter().map(|s| s.sent).sum();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::report;
    use super::*;

    fn termination(name: &str, from: u64, to: u64) -> Termination {
        Termination {
            name: name.to_owned(),
            terminating_ms: from,
            exited_ms: to,
            killed: false,
            exit_code: Some(0),
        }
    }

    const BAR: Bar = Bar {
        min_rate_while_terminating: 100.0,
    };

    #[test]
    fn a_clean_run_under_load_passes() {
        let r = report(
            &[
                (0, 500, &[("a", 10)]),
                (1000, 500, &[("a", 5)]),
                (2000, 500, &[]),
            ],
            0,
        );
        let v = judge(&r, &[termination("a", 500, 1500)], Expect::NoFailures, BAR);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn one_failure_fails() {
        let r = report(&[(0, 500, &[("a", 10)])], 1);
        let v = judge(&r, &[termination("a", 0, 900)], Expect::NoFailures, BAR);
        assert!(!v.passed());
    }

    #[test]
    fn an_idle_load_does_not_pass() {
        // Load before and after, none while the replica terminated.
        let r = report(
            &[(0, 500, &[]), (5000, 0, &[]), (9000, 500, &[("a", 1)])],
            0,
        );
        let v = judge(&r, &[termination("a", 5000, 5900)], Expect::NoFailures, BAR);
        assert!(!v.passed(), "{v}");
    }

    #[test]
    fn a_replica_nobody_reached_after_deletion_fails() {
        let r = report(&[(0, 500, &[("b", 400)])], 0);
        let v = judge(&r, &[termination("a", 0, 900)], Expect::NoFailures, BAR);
        assert!(!v.passed(), "{v}");
    }

    #[test]
    fn the_negative_control_must_fail_requests() {
        let clean = report(&[(0, 500, &[("a", 1)])], 0);
        let t = [termination("a", 0, 900)];
        assert!(!judge(&clean, &t, Expect::Failures, BAR).passed());
        let broken = report(&[(0, 500, &[("a", 1)])], 12);
        assert!(judge(&broken, &t, Expect::Failures, BAR).passed());
    }

    #[test]
    fn load_counts_only_the_covered_part_of_a_second() {
        let r = report(&[(0, 1000, &[]), (1000, 1000, &[])], 0);
        assert_eq!(sent_between(&r, 900, 1100), 200.0);
        assert_eq!(sent_between(&r, 0, 2000), 2000.0);
        assert_eq!(sent_between(&r, 2000, 3000), 0.0);
    }

    #[test]
    fn no_terminations_is_no_rollout() {
        let r = report(&[(0, 500, &[])], 0);
        assert!(!judge(&r, &[], Expect::NoFailures, BAR).passed());
    }
}
