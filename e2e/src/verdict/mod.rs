//! The assertions, shared by both backends: what a rollout run must show.

#[cfg(test)]
pub(crate) mod fixtures;
mod load;
pub mod streams;

use load::judge_load;
pub use load::{located, protocols, windows};

use std::fmt;

use loadgen::Report;
use serde::{Deserialize, Serialize};

use crate::clock::{self, Offset};
use crate::timeline::ReplicaRecord;

/// What a run is expected to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Graceful shutdown: not a single failed request, on every protocol of
    /// the load (each of which must have sent requests).
    NoFailures,
    /// A negative control: the same scenario must report failures, HTTP/2
    /// ones among them, or the suite could not tell a broken shutdown from a
    /// working one.
    Failures,
    /// Failures, on whichever protocol: for a run that shows a limit rather
    /// than a broken shutdown (routers slower than the preStop), where pooled
    /// HTTP/2 connections, which move only on GOAWAY, may all come through.
    FailuresAnyProtocol,
    /// Requests longer than the shutdown timeout: every old replica must cut
    /// them off, exit 1, and say so in its metrics (outcome forced, aborted
    /// requests counted), so that a dashboard shows the case that matters.
    Forced,
}

impl Expect {
    /// How each old replica's shutdown must end.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Expect::NoFailures => Some(Outcome::Clean),
            Expect::Forced => Some(Outcome::Forced),
            Expect::Failures | Expect::FailuresAnyProtocol => None,
        }
    }
}

/// How a replica's shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything finished: phase 3, exit 0, nothing aborted.
    Clean,
    /// The timeout cut what was left: phase 4, exit 1, aborted counted.
    Forced,
}

/// A stretch of the run, in Unix milliseconds on the runner's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Span {
    /// `by` more at each end.
    pub fn widened(self, by: u64) -> Span {
        Span {
            from_ms: self.from_ms.saturating_sub(by),
            to_ms: self.to_ms.saturating_add(by),
        }
    }

    pub fn seconds(self) -> f64 {
        self.to_ms.saturating_sub(self.from_ms) as f64 / 1e3
    }
}

/// One terminated replica, as the assertions need it (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    pub name: String,
    /// Pod deleted: preStop started, endpoint removal on its way.
    pub terminating_ms: u64,
    /// The process got SIGTERM, when the backend knows.
    pub sigterm_ms: Option<u64>,
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
    /// Each old replica must have answered after its SIGTERM. True when the
    /// load reaches the replicas through kube-proxy, which pins a connection
    /// to its replica until the server closes it; false through a proxy that
    /// stops routing to a terminating endpoint on its own (an ingress
    /// controller fences it during the preStop: nothing is left to reach it
    /// after SIGTERM, and that is the point of the preStop).
    pub answers_after_sigterm: bool,
}

/// What a run gives the verdict.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// The load generator's report, on the runner's clock.
    pub report: &'a Report,
    /// How the load generator's clock was set against the runner's.
    pub clock: Option<Offset>,
    /// Every replica the backend saw.
    pub replicas: &'a [ReplicaRecord],
    /// The replicas each rollout replaced, as the backend listed them when
    /// the rollout started.
    pub old: &'a [String],
    /// Replicas × rollouts: how many old replicas there must be.
    pub expected_old: usize,
}

/// Judges a run; also returns the old replicas' terminations, for the
/// backend's own checks. An old replica whose termination was not seen
/// whole fails the run as unknown.
pub fn judge(evidence: &Evidence<'_>, expect: Expect, bar: Bar) -> (Verdict, Vec<Termination>) {
    let report = evidence.report;
    let mut verdict = Verdict::default();
    let (clock_ok, clock_detail) = clock::judged(evidence.clock);
    verdict.push("the load generator's clock", clock_ok, clock_detail);
    // With no rollout (a steady-state run), the whole run is the window.
    let (terminations, windows) = if evidence.expected_old == 0 && evidence.old.is_empty() {
        let run = Span {
            from_ms: 0,
            to_ms: u64::MAX,
        };
        (Vec::new(), vec![run])
    } else {
        let terminations = old_replicas(evidence, &mut verdict);
        let windows = windows(&terminations);
        (terminations, windows)
    };
    judge_load(report, expect, &windows, &mut verdict);
    streams::judge(report, expect, &windows, &mut verdict);

    for t in &terminations {
        // So that an idle load cannot pass. A negative control needs no such
        // bar: an idle load shows none of the failures it must show, and its
        // broken replicas may stall the load generator's connections while
        // they terminate (a proxy's connect to a pod IP that has gone).
        if expect.outcome().is_some() {
            let sent = sent_between(report, t.terminating_ms, t.exited_ms);
            let window = (t.exited_ms.saturating_sub(t.terminating_ms)).max(1) as f64 / 1e3;
            let rate = sent / window;
            verdict.push(
            format!("load on the Service while {} terminated", t.name),
            rate >= bar.min_rate_while_terminating,
            format!(
                "{sent:.0} requests sent to the Service in its {window:.3} s of termination, {rate:.0}/s (at least {:.0}/s required)",
                bar.min_rate_while_terminating
            ),
        );
        }
        if expect == Expect::NoFailures && bar.answers_after_sigterm {
            verdict.push(
                format!("{} answered after its SIGTERM", t.name),
                served_in_shutdown(report, &t.name) > 0,
                format!(
                    "{} of its {} answers carried its lameduck-phase header: given after its shutdown began, on its own account",
                    served_in_shutdown(report, &t.name),
                    report.answered_by.get(&t.name).copied().unwrap_or(0)
                ),
            );
        }
        if let Some(outcome) = expect.outcome() {
            let (name, code) = match outcome {
                Outcome::Clean => ("exited on its own", 0),
                Outcome::Forced => ("was forced at its shutdown timeout", 1),
            };
            // An exit code nobody saw is not a pass.
            verdict.push(
                format!("{} {name}", t.name),
                !t.killed && t.exit_code == Some(code),
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
    (verdict, terminations)
}

/// Every old replica of every rollout must have been seen deleted, exiting
/// and with an exit code; the ones that were are returned.
fn old_replicas(evidence: &Evidence<'_>, verdict: &mut Verdict) -> Vec<Termination> {
    let mut seen = Vec::new();
    let mut unknown = Vec::new();
    for name in evidence.old {
        match evidence.replicas.iter().find(|r| &r.name == name) {
            None => unknown.push(format!("{name}: never seen")),
            Some(record) => match record.termination() {
                Ok(t) => seen.push(t),
                Err(why) => unknown.push(format!("{name}: {why}")),
            },
        }
    }
    let expected = evidence.expected_old;
    let mut detail = format!(
        "{} of {expected} old replicas (replicas × rollouts) seen deleted, exiting and with an exit code; {} listed at the rollouts' starts",
        seen.len(),
        evidence.old.len()
    );
    if !unknown.is_empty() {
        detail = format!("unknown: {}; {detail}", unknown.join(", "));
    }
    verdict.push(
        "old replicas terminated",
        expected > 0 && evidence.old.len() == expected && unknown.is_empty(),
        detail,
    );
    seen
}

/// Answers `replica` gave after its shutdown began, by its own marker.
pub fn served_in_shutdown(report: &Report, replica: &str) -> u64 {
    report.served_in_shutdown.get(replica).copied().unwrap_or(0)
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

fn overlapping(report: &Report, from: u64, to: u64) -> impl Iterator<Item = &loadgen::Second> {
    report
        .timeline
        .iter()
        .filter(move |s| s.t_unix_ms < to && s.t_unix_ms + 1000 > from)
}

#[cfg(test)]
mod tests {
    use loadgen::{Mode, Outcomes};

    use super::fixtures::{judged, record_of, report, set_mode, termination};
    use super::*;

    const BAR: Bar = Bar {
        min_rate_while_terminating: 100.0,
        answers_after_sigterm: true,
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
        let v = judged(&r, &[termination("a", 500, 1500)], Expect::NoFailures, BAR);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn one_failure_fails() {
        let r = report(&[(0, 500, &[("a", 10)])], 1);
        let v = judged(&r, &[termination("a", 0, 900)], Expect::NoFailures, BAR);
        assert!(!v.passed());
    }

    #[test]
    fn an_idle_load_does_not_pass() {
        // Load before and after, none while the replica terminated.
        let r = report(
            &[(0, 500, &[]), (5000, 0, &[]), (9000, 500, &[("a", 1)])],
            0,
        );
        let v = judged(&r, &[termination("a", 5000, 5900)], Expect::NoFailures, BAR);
        assert!(!v.passed(), "{v}");
    }

    #[test]
    fn a_replica_whose_answers_all_came_before_its_sigterm_fails() {
        let mut r = report(&[(0, 500, &[("a", 400)])], 0);
        r.served_in_shutdown.clear();
        let v = judged(&r, &[termination("a", 0, 900)], Expect::NoFailures, BAR);
        assert_eq!(failed_checks(&v), ["a answered after its SIGTERM"], "{v}");
        assert!(
            check(&v, "a answered after its SIGTERM")
                .detail
                .starts_with("0 of its 400 answers"),
            "{v}"
        );
        // Behind a proxy that fences a terminating endpoint, nothing reaches
        // it after its preStop: not asked.
        let fenced = Bar {
            answers_after_sigterm: false,
            ..BAR
        };
        let v = judged(&r, &[termination("a", 0, 900)], Expect::NoFailures, fenced);
        assert!(v.passed(), "{v}");
    }

    #[test]
    fn the_negative_control_must_fail_requests() {
        let clean = report(&[(0, 500, &[("a", 1)])], 0);
        let t = [termination("a", 0, 900)];
        assert!(!judged(&clean, &t, Expect::Failures, BAR).passed());
        assert!(judged(&broken(), &t, Expect::Failures, BAR).passed());
    }

    /// 800 requests in second 0, of which each protocol failed 6: 4 GETs
    /// and 2 POSTs.
    fn broken() -> Report {
        let mut r = report(&[(0, 800, &[("a", 1)]), (1000, 0, &[])], 0);
        for (mode, sent) in [
            (Mode::Keepalive, 400),
            (Mode::Fresh, 200),
            (Mode::Http2, 200),
        ] {
            let all = Outcomes {
                ok: sent - 6,
                reset: 6,
                ..Outcomes::default()
            };
            let posts = Outcomes {
                ok: sent / 5 - 2,
                reset: 2,
                ..Outcomes::default()
            };
            fixtures::set_posts(&mut r, mode, &all, posts);
        }
        r
    }

    /// Each switch the negative control turns off shows on every protocol
    /// and on both methods: one without failures fails the run.
    #[test]
    fn the_negative_control_must_fail_every_protocol_and_method() {
        let t = [termination("a", 0, 900)];
        for (mode, name) in [
            (Mode::Keepalive, "HTTP/1.1 keep-alive"),
            (Mode::Fresh, "HTTP/1.1 fresh connections"),
        ] {
            let mut r = broken();
            let sent = if mode == Mode::Keepalive { 400 } else { 200 };
            set_mode(
                &mut r,
                mode,
                Outcomes {
                    ok: sent,
                    ..Outcomes::default()
                },
            );
            let v = judged(&r, &t, Expect::Failures, BAR);
            assert_eq!(
                failed_checks(&v),
                [format!(
                    "failed {name} requests inside the terminations, as expected"
                )],
                "{v}"
            );
        }
        // GETs failed on every protocol, POSTs on none.
        let mut r = broken();
        for (mode, sent) in [
            (Mode::Keepalive, 400),
            (Mode::Fresh, 200),
            (Mode::Http2, 200),
        ] {
            let all = Outcomes {
                ok: sent - 4,
                reset: 4,
                ..Outcomes::default()
            };
            let posts = Outcomes {
                ok: sent / 5,
                ..Outcomes::default()
            };
            fixtures::set_posts(&mut r, mode, &all, posts);
        }
        let v = judged(&r, &t, Expect::Failures, BAR);
        assert_eq!(
            failed_checks(&v),
            ["failed POST requests inside the terminations, as expected"],
            "{v}"
        );
    }

    /// A failure before any replica terminated (a DNS error at start-up,
    /// say) is not what the negative control switched off.
    #[test]
    fn a_negative_control_s_failures_outside_the_terminations_do_not_count() {
        let r = broken();
        let v = judged(&r, &[termination("a", 5_000, 5_900)], Expect::Failures, BAR);
        assert!(!v.passed(), "{v}");
        let detail = &check(&v, "failed requests inside the terminations, as expected").detail;
        assert!(
            detail.starts_with("0 failed while a replica terminated")
                && detail.contains("18 failed elsewhere, not counted"),
            "{detail}"
        );
    }

    #[test]
    fn load_counts_only_the_covered_part_of_a_second() {
        let r = report(&[(0, 1000, &[]), (1000, 1000, &[])], 0);
        assert_eq!(sent_between(&r, 900, 1100), 200.0);
        assert_eq!(sent_between(&r, 0, 2000), 2000.0);
        assert_eq!(sent_between(&r, 2000, 3000), 0.0);
    }

    fn check<'a>(v: &'a Verdict, name: &str) -> &'a Check {
        v.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name:?} in\n{v}"))
    }

    fn failed_checks(v: &Verdict) -> Vec<&str> {
        v.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// A rollout's worth of load with one terminated replica that served.
    fn clean() -> (Report, [Termination; 1]) {
        let r = report(&[(0, 800, &[("a", 10)]), (1000, 800, &[("a", 5)])], 0);
        (r, [termination("a", 0, 1500)])
    }

    #[test]
    fn all_protocols_clean_passes_and_each_is_judged() {
        let (r, t) = clean();
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert!(v.passed(), "{v}");
        for (name, sent) in [
            ("no failed request over HTTP/1.1 keep-alive", 800),
            ("no failed request over HTTP/1.1 fresh connections", 400),
            ("no failed request over HTTP/2", 400),
        ] {
            let c = check(&v, name);
            assert!(c.passed, "{v}");
            assert!(
                c.detail
                    .starts_with(&format!("{sent} sent, {sent} ok, 0 refused")),
                "{}",
                c.detail
            );
        }
    }

    #[test]
    fn an_http2_failure_fails_the_no_failures_check() {
        let (mut r, t) = clean();
        set_mode(
            &mut r,
            Mode::Http2,
            Outcomes {
                ok: 399,
                reset: 1,
                ..Outcomes::default()
            },
        );
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert!(!v.passed(), "{v}");
        assert_eq!(
            failed_checks(&v),
            ["no failed request", "no failed request over HTTP/2"],
            "{v}"
        );
        let detail = &check(&v, "no failed request over HTTP/2").detail;
        assert!(
            detail.contains("1 failed (") && detail.contains("reset 1"),
            "{detail}"
        );
    }

    #[test]
    fn a_failure_on_any_protocol_fails() {
        for mode in [Mode::Keepalive, Mode::Fresh] {
            let (mut r, t) = clean();
            set_mode(
                &mut r,
                mode,
                Outcomes {
                    ok: 10,
                    status: [(503, 1)].into(),
                    ..Outcomes::default()
                },
            );
            let v = judged(&r, &t, Expect::NoFailures, BAR);
            assert_eq!(failed_checks(&v).len(), 2, "{v}");
        }
    }

    #[test]
    fn a_protocol_that_sent_nothing_is_unknown_and_fails() {
        let (mut r, t) = clean();
        set_mode(&mut r, Mode::Http2, Outcomes::default());
        // Overall the run is clean: only the HTTP/2 check can notice.
        assert!(r.is_clean());
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert!(!v.passed(), "{v}");
        assert_eq!(failed_checks(&v), ["no failed request over HTTP/2"], "{v}");
        let detail = &check(&v, "no failed request over HTTP/2").detail;
        assert!(detail.starts_with("unknown: not one request"), "{detail}");
    }

    #[test]
    fn refused_and_resent_alone_does_not_fail_but_is_shown() {
        let (mut r, t) = clean();
        set_mode(
            &mut r,
            Mode::Http2,
            Outcomes {
                ok: 395,
                refused_resent: 5,
                ..Outcomes::default()
            },
        );
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert!(v.passed(), "{v}");
        for name in ["no failed request", "no failed request over HTTP/2"] {
            let detail = &check(&v, name).detail;
            assert!(
                detail.contains("5 refused unprocessed and resent, 0 failed"),
                "{detail}"
            );
        }
    }

    #[test]
    fn the_negative_control_must_fail_http2_requests_too() {
        let t = [termination("a", 0, 900)];
        let mut r = broken();
        set_mode(
            &mut r,
            Mode::Http2,
            Outcomes {
                ok: 200,
                ..Outcomes::default()
            },
        );
        let v = judged(&r, &t, Expect::Failures, BAR);
        assert_eq!(
            failed_checks(&v),
            ["failed HTTP/2 requests inside the terminations, as expected"],
            "{v}"
        );
        let detail = &check(
            &v,
            "failed HTTP/2 requests inside the terminations, as expected",
        )
        .detail;
        assert!(
            detail.starts_with("none of 200 HTTP/2 requests failed")
                && detail.contains("cannot show it would catch their loss"),
            "{detail}"
        );
        // No HTTP/2 request at all: unknown, not a pass.
        set_mode(&mut r, Mode::Http2, Outcomes::default());
        let v = judged(&r, &t, Expect::Failures, BAR);
        let detail = &check(
            &v,
            "failed HTTP/2 requests inside the terminations, as expected",
        )
        .detail;
        assert!(!v.passed() && detail.starts_with("unknown"), "{v}");
        // Refused-and-resent HTTP/2 requests are not the failures it needs.
        set_mode(
            &mut r,
            Mode::Http2,
            Outcomes {
                ok: 150,
                refused_resent: 50,
                ..Outcomes::default()
            },
        );
        assert!(!judged(&r, &t, Expect::Failures, BAR).passed());
        // With HTTP/2 failures it passes, and shows the split.
        let v = judged(&broken(), &t, Expect::Failures, BAR);
        assert!(v.passed(), "{v}");
        let detail = &check(&v, "failed requests inside the terminations, as expected").detail;
        assert!(
            detail.starts_with(
                "18 failed while a replica terminated (HTTP/1.1 keep-alive 6, HTTP/1.1 fresh connections 6, HTTP/2 6, GET 12, POST 6)"
            ),
            "{detail}"
        );
    }

    #[test]
    fn failures_on_any_protocol_need_no_http2_failure() {
        let t = [termination("a", 0, 900)];
        let mut r = report(&[(0, 800, &[("a", 1)])], 0);
        assert!(!judged(&r, &t, Expect::FailuresAnyProtocol, BAR).passed());
        set_mode(
            &mut r,
            Mode::Fresh,
            Outcomes {
                ok: 150,
                reset: 50,
                ..Outcomes::default()
            },
        );
        let v = judged(&r, &t, Expect::FailuresAnyProtocol, BAR);
        assert!(v.passed(), "{v}");
        assert!(v.checks.iter().all(|c| !c.name.contains("HTTP/2")), "{v}");
        assert!(!judged(&r, &t, Expect::Failures, BAR).passed());
    }

    #[test]
    fn no_terminations_is_no_rollout() {
        // Three were due: none seen is a failure.
        let v = judged_old(&[], 3);
        assert_eq!(failed_checks(&v), ["old replicas terminated"], "{v}");
    }

    /// A steady-state run (no rollout due): no termination to judge, and a
    /// negative control's failures count wherever they happened.
    #[test]
    fn a_steady_state_run_is_judged_on_its_load_alone() {
        let clean = report(&[(0, 500, &[])], 0);
        let v = judged(&clean, &[], Expect::NoFailures, BAR);
        assert!(v.passed(), "{v}");
        assert!(v.checks.iter().all(|c| !c.name.contains("replica")), "{v}");
        let v = judged(&broken(), &[], Expect::Failures, BAR);
        assert!(v.passed(), "{v}");
        assert!(!judged(&clean, &[], Expect::Failures, BAR).passed());
    }

    /// Judges a clean run whose old replicas are `records`, of which
    /// `expected` were due.
    fn judged_old(records: &[ReplicaRecord], expected: usize) -> Verdict {
        let (r, _) = clean();
        let old: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        let evidence = Evidence {
            report: &r,
            clock: Some(Offset::SAME),
            replicas: records,
            old: &old,
            expected_old: expected,
        };
        judge(&evidence, Expect::NoFailures, BAR).0
    }

    /// A pod that went while the watch was relisting, or whose end came
    /// after the watch stopped: its exit was never seen. It is not left out.
    #[test]
    fn an_old_replica_whose_exit_was_never_seen_fails_as_unknown() {
        let (_, [t]) = clean();
        assert!(judged_old(&[record_of(&t)], 1).passed());
        let mut unseen = record_of(&termination("b", 1000, 1600));
        unseen.exited_ms = None;
        unseen.exit_code = None;
        // One seen whole, one not: the second is not left out.
        let v = judged_old(&[record_of(&t), unseen], 2);
        assert_eq!(failed_checks(&v), ["old replicas terminated"], "{v}");
        let detail = &check(&v, "old replicas terminated").detail;
        assert!(
            detail.starts_with("unknown: b: its exit was never seen"),
            "{detail}"
        );
        let mut no_code = record_of(&t);
        no_code.exit_code = None;
        assert!(!judged_old(&[no_code], 1).passed());
    }

    /// Six old replicas were due (3 × 2) and only five were listed: one
    /// termination went unobserved.
    #[test]
    fn fewer_old_replicas_than_replicas_times_rollouts_fails() {
        let (_, [t]) = clean();
        let v = judged_old(&[record_of(&t)], 2);
        assert_eq!(failed_checks(&v), ["old replicas terminated"], "{v}");
        assert!(
            check(&v, "old replicas terminated")
                .detail
                .starts_with("1 of 2 old replicas"),
            "{v}"
        );
        // Listed, but no record of it at all.
        let (r, _) = clean();
        let evidence = Evidence {
            report: &r,
            clock: Some(Offset::SAME),
            replicas: &[],
            old: &["a".to_owned()],
            expected_old: 1,
        };
        let (v, terminations) = judge(&evidence, Expect::NoFailures, BAR);
        assert!(terminations.is_empty());
        assert!(
            check(&v, "old replicas terminated")
                .detail
                .starts_with("unknown: a: never seen"),
            "{v}"
        );
    }

    #[test]
    fn a_load_generator_clock_that_was_never_read_fails() {
        let (r, [t]) = clean();
        let records = [record_of(&t)];
        let evidence = Evidence {
            report: &r,
            clock: None,
            replicas: &records,
            old: &["a".to_owned()],
            expected_old: 1,
        };
        let (v, _) = judge(&evidence, Expect::NoFailures, BAR);
        assert_eq!(failed_checks(&v), ["the load generator's clock"], "{v}");
    }

    /// POSTs, which no proxy retries, must have gone over every protocol.
    #[test]
    fn a_clean_run_without_posts_on_a_protocol_is_unknown() {
        let (mut r, t) = clean();
        let all = Outcomes {
            ok: 400,
            ..Outcomes::default()
        };
        fixtures::set_posts(&mut r, Mode::Http2, &all, Outcomes::default());
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert_eq!(failed_checks(&v), ["no failed POST request"], "{v}");
        assert!(
            check(&v, "no failed POST request")
                .detail
                .starts_with("unknown: no POST went over HTTP/2"),
            "{v}"
        );
        let one_failed = Outcomes {
            ok: 399,
            wrong_echo: 1,
            ..Outcomes::default()
        };
        let posts = Outcomes {
            ok: 79,
            wrong_echo: 1,
            ..Outcomes::default()
        };
        fixtures::set_posts(&mut r, Mode::Http2, &one_failed, posts);
        let v = judged(&r, &t, Expect::NoFailures, BAR);
        assert!(failed_checks(&v).contains(&"no failed POST request"), "{v}");
    }

    /// A negative control's broken replicas may stall the load while they
    /// terminate; the failures it shows are what it is judged on.
    #[test]
    fn a_negative_control_is_not_held_to_the_load_bar() {
        let high = Bar {
            min_rate_while_terminating: 100_000.0,
            ..BAR
        };
        let t = [termination("a", 0, 900)];
        let v = judged(&broken(), &t, Expect::Failures, high);
        assert!(v.passed(), "{v}");
        assert!(!judged(&clean().0, &clean().1, Expect::NoFailures, high).passed());
    }
}
