//! A load report with the given timeline, and the records a backend would
//! keep, for the verdict's tests.

use std::collections::BTreeMap;

use loadgen::{Mode, ModeReport, Outcomes, Report};

use super::{Bar, Evidence, Expect, Termination, Verdict};
use crate::clock::Offset;
use crate::timeline::ReplicaRecord;

/// A replica deleted at `from` that exited cleanly at `to`.
pub(crate) fn termination(name: &str, from: u64, to: u64) -> Termination {
    Termination {
        name: name.to_owned(),
        terminating_ms: from,
        sigterm_ms: None,
        exited_ms: to,
        killed: false,
        exit_code: Some(0),
    }
}

/// The record a backend would have kept of `t`.
pub(crate) fn record_of(t: &Termination) -> ReplicaRecord {
    ReplicaRecord {
        name: t.name.clone(),
        generation: 0,
        started_ms: 0,
        ready_ms: Some(0),
        terminating_ms: Some(t.terminating_ms),
        sigterm_ms: t.sigterm_ms,
        exited_ms: Some(t.exited_ms),
        exit_code: t.exit_code,
        killed: t.killed,
        aborted_requests: None,
    }
}

/// Judges `report` with `terminations` as the run's whole set of old
/// replicas, on one clock.
pub(crate) fn judged(
    report: &Report,
    terminations: &[Termination],
    expect: Expect,
    bar: Bar,
) -> Verdict {
    let records: Vec<ReplicaRecord> = terminations.iter().map(record_of).collect();
    let old: Vec<String> = terminations.iter().map(|t| t.name.clone()).collect();
    let evidence = Evidence {
        report,
        clock: Some(Offset::SAME),
        replicas: &records,
        old: &old,
        expected_old: old.len(),
    };
    super::judge(&evidence, expect, bar).0
}

/// (second's start, requests sent, `GET /` answers per replica)
pub(crate) type Bucket<'a> = (u64, u64, &'a [(&'a str, u64)]);

/// The timeline's requests, split as the scenario's default mix does
/// (half keep-alive, a quarter fresh, a quarter HTTP/2; a fifth of each
/// `POST`), all ok but `failures` resets on `GET`s, spread evenly over
/// the three protocols (the remainder on keep-alive) and located in the
/// first second. Each replica named in a second answered that many
/// requests, all after its SIGTERM.
pub(crate) fn report(seconds: &[Bucket<'_>], failures: u64) -> Report {
    let mut json = serde_json::json!({
        "version": loadgen::REPORT_VERSION,
        "config": serde_json::to_value(loadgen::Config {
            fresh_fraction: 0.25,
            h2_fraction: 0.25,
            post_fraction: 0.2,
            ..loadgen::Config::new("127.0.0.1:1")
        }).unwrap(),
        "target_addr": "127.0.0.1:1", "started_unix_ms": 0, "elapsed_ms": 0,
        "stop_reason": "stopped", "scheduled": 0, "sent": 0, "not_started": 0,
        "late_start": 0, "max_start_delay_ms": 0.0,
        "outcomes": serde_json::Value::Null, "failures": 0,
        "connections": {"opened": 0, "close_responses": 0, "closed_while_idle": 0},
        "latency": {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0},
        "routes": serde_json::Value::Null, "modes": serde_json::Value::Null,
        "served_by": {}, "timeline": [], "errors": []
    });
    json["outcomes"] = serde_json::to_value(Outcomes::default()).unwrap();
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
    for second in &report.timeline {
        for (name, n) in &second.served_by {
            *report.answered_by.entry(name.clone()).or_default() += n;
            *report.served_in_shutdown.entry(name.clone()).or_default() += n;
        }
    }
    let total: u64 = report.timeline.iter().map(|s| s.sent).sum();
    let (fresh, http2) = (total / 4, total / 4);
    let each = failures / 3;
    for (mode, sent, failed) in [
        (Mode::Keepalive, total - fresh - http2, failures - 2 * each),
        (Mode::Fresh, fresh, each),
        (Mode::Http2, http2, each),
    ] {
        let outcomes = Outcomes {
            ok: sent.saturating_sub(failed),
            reset: failed,
            ..Outcomes::default()
        };
        set_mode(&mut report, mode, outcomes);
    }
    report
}

fn mode_mut(modes: &mut loadgen::Modes, mode: Mode) -> &mut ModeReport {
    match mode {
        Mode::Keepalive => &mut modes.keepalive,
        Mode::Fresh => &mut modes.fresh,
        Mode::Http2 => &mut modes.http2,
    }
}

fn sum<'a>(outcomes: impl IntoIterator<Item = &'a Outcomes>) -> Outcomes {
    let mut total = Outcomes::default();
    for o in outcomes {
        total.ok += o.ok;
        for (code, n) in &o.status {
            *total.status.entry(*code).or_default() += n;
        }
        total.connect_refused += o.connect_refused;
        total.connect_error += o.connect_error;
        total.reset += o.reset;
        total.timeout += o.timeout;
        total.wrong_echo += o.wrong_echo;
        total.other += o.other;
        total.aborted += o.aborted;
        total.refused_resent += o.refused_resent;
    }
    total
}

/// Replaces one protocol's outcomes and sums the report's totals again.
/// A fifth of its `ok` are `POST`s (unless [`set_posts`] says
/// otherwise); its failures are `GET`s, located in the first second.
pub(crate) fn set_mode(report: &mut Report, mode: Mode, outcomes: Outcomes) {
    let posts = Outcomes {
        ok: outcomes.ok / 5,
        ..Outcomes::default()
    };
    set_posts(report, mode, &outcomes, posts);
}

/// Like [`set_mode`], with `posts` (part of `outcomes`) as its `POST`s.
pub(crate) fn set_posts(report: &mut Report, mode: Mode, outcomes: &Outcomes, posts: Outcomes) {
    *mode_mut(&mut report.modes, mode) = ModeReport {
        sent: outcomes.total(),
        outcomes: outcomes.clone(),
    };
    *mode_mut(&mut report.methods.post.modes, mode) = ModeReport {
        sent: posts.total(),
        outcomes: posts.clone(),
    };
    // The GETs are the rest (posts carry no status codes here).
    let get = Outcomes {
        ok: outcomes.ok - posts.ok,
        connect_refused: outcomes.connect_refused - posts.connect_refused,
        connect_error: outcomes.connect_error - posts.connect_error,
        reset: outcomes.reset - posts.reset,
        timeout: outcomes.timeout - posts.timeout,
        wrong_echo: outcomes.wrong_echo - posts.wrong_echo,
        other: outcomes.other - posts.other,
        aborted: outcomes.aborted - posts.aborted,
        refused_resent: outcomes.refused_resent - posts.refused_resent,
        ..outcomes.clone()
    };
    *mode_mut(&mut report.methods.get.modes, mode) = ModeReport {
        sent: outcomes.total() - posts.total(),
        outcomes: get,
    };
    let m = &report.modes;
    let total = sum([&m.keepalive.outcomes, &m.fresh.outcomes, &m.http2.outcomes]);
    for method in [&mut report.methods.get, &mut report.methods.post] {
        let m = &method.modes;
        method.outcomes = sum([&m.keepalive.outcomes, &m.fresh.outcomes, &m.http2.outcomes]);
        method.sent = method.outcomes.total();
    }
    report.sent = total.total();
    report.scheduled = report.sent;
    report.failures = total.failures();
    report.outcomes = total;
    if let Some(first) = report.timeline.first_mut() {
        let f = &mut first.failures;
        let slot = match mode {
            Mode::Keepalive => &mut f.keepalive,
            Mode::Fresh => &mut f.fresh,
            Mode::Http2 => &mut f.http2,
        };
        *slot = outcomes.failures();
        let m = &report.methods;
        f.get = m.get.outcomes.failures();
        f.post = m.post.outcomes.failures();
    }
}
