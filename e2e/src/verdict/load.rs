//! The load checks: no failed request on any protocol or method, or, for a
//! negative control, failures where it switched something off.

use loadgen::{ModeReport, Outcomes, Report, SecondFailures};

use super::{Expect, Span, Termination, Verdict};

/// One of the ways the load sends requests, as the report splits them.
#[derive(Debug, Clone, Copy)]
pub struct Protocol<'a> {
    /// As the summary and the checks name it.
    pub name: &'static str,
    /// Its share of the load, as configured.
    pub share: f64,
    pub report: &'a ModeReport,
}

/// HTTP/1.1 keep-alive, HTTP/1.1 on fresh connections, HTTP/2: every
/// protocol the verdict judges, in the report's order.
pub fn protocols(report: &Report) -> [Protocol<'_>; 3] {
    let (config, modes) = (&report.config, &report.modes);
    [
        Protocol {
            name: "HTTP/1.1 keep-alive",
            share: config.keepalive_fraction(),
            report: &modes.keepalive,
        },
        Protocol {
            name: "HTTP/1.1 fresh connections",
            share: config.fresh_fraction,
            report: &modes.fresh,
        },
        Protocol {
            name: "HTTP/2",
            share: config.h2_fraction,
            report: &modes.http2,
        },
    ]
}

/// `sent, ok, refused and resent, failed (by kind), cut off`: the numbers
/// every load check shows.
fn breakdown(sent: u64, o: &Outcomes) -> String {
    format!(
        "{sent} sent, {} ok, {} refused unprocessed and resent, {} failed (status {:?}, connect refused {}, connect error {}, reset {}, timeout {}, wrong echo {}, other {}), {} cut off by the load generator's stop",
        o.ok,
        o.refused_resent,
        o.failures(),
        o.status,
        o.connect_refused,
        o.connect_error,
        o.reset,
        o.timeout,
        o.wrong_echo,
        o.other,
        o.aborted,
    )
}

/// A protocol that sent nothing proves nothing.
fn unknown(p: &Protocol<'_>) -> String {
    format!(
        "unknown: not one request was sent over {} (its share of the load: {:.0} %)",
        p.name,
        p.share * 100.0
    )
}

/// After a replica exits, routers may still send it new connections until
/// its endpoint removal reaches them, and long-lived clients reconnect: its
/// failures land this long after its exit at most.
pub const AFTERMATH_MS: u64 = 3_000;

/// Where a negative control's failures must be: inside the terminations'
/// windows, from each deletion to its exit plus [`AFTERMATH_MS`].
pub fn windows(terminations: &[Termination]) -> Vec<Span> {
    terminations
        .iter()
        .map(|t| Span {
            from_ms: t.terminating_ms,
            to_ms: t.exited_ms + AFTERMATH_MS,
        })
        .collect()
}

/// The run's failures split by where they were observed: in a second that
/// overlaps one of `windows`, or elsewhere (a start-up error, say).
pub fn located(report: &Report, windows: &[Span]) -> (SecondFailures, SecondFailures) {
    let (mut inside, mut outside) = (SecondFailures::default(), SecondFailures::default());
    for second in &report.timeline {
        let overlaps = windows
            .iter()
            .any(|w| second.t_unix_ms < w.to_ms && second.t_unix_ms + 1000 > w.from_ms);
        let into = if overlaps { &mut inside } else { &mut outside };
        let f = &second.failures;
        into.keepalive += f.keepalive;
        into.fresh += f.fresh;
        into.http2 += f.http2;
        into.get += f.get;
        into.post += f.post;
        into.sse += f.sse;
        into.ws += f.ws;
    }
    (inside, outside)
}

/// The load checks: no failed request on any protocol or method, or, for a
/// negative control, failures inside the terminations' windows on every
/// protocol and method the load used (on any one of them for
/// [`Expect::FailuresAnyProtocol`] and [`Expect::Forced`]).
pub(super) fn judge_load(report: &Report, expect: Expect, windows: &[Span], verdict: &mut Verdict) {
    let overall = format!(
        "{}, {} never started",
        breakdown(report.sent, &report.outcomes),
        report.not_started
    );
    match expect {
        Expect::NoFailures => no_failures(report, overall, verdict),
        Expect::Failures | Expect::FailuresAnyProtocol | Expect::Forced => {
            failures_where_expected(report, expect, windows, overall, verdict);
        }
    }
}

/// Not one failed request, on every protocol and method the mix uses.
fn no_failures(report: &Report, overall: String, verdict: &mut Verdict) {
    // Streams are judged on their own.
    let requests_clean =
        report.failures == 0 && report.outcomes.aborted == 0 && report.not_started == 0;
    verdict.push("no failed request", requests_clean, overall);
    // A protocol the mix gives no share is not judged.
    for p in protocols(report).iter().filter(|p| p.share > 0.0) {
        let (sent, o) = (p.report.sent, &p.report.outcomes);
        verdict.push(
            format!("no failed request over {}", p.name),
            sent > 0 && o.failures() == 0 && o.aborted == 0,
            if sent == 0 {
                unknown(p)
            } else {
                breakdown(sent, o)
            },
        );
    }
    judge_posts(report, verdict);
}

/// Failures inside the terminations' windows (the whole run, for a
/// steady-state run): overall, and for a negative control on each
/// protocol and method the mix uses.
fn failures_where_expected(
    report: &Report,
    expect: Expect,
    windows: &[Span],
    overall: String,
    verdict: &mut Verdict,
) {
    // A steady-state run has no termination: its one window is the run.
    let (place, during) = if windows.iter().any(|w| w.to_ms == u64::MAX) {
        ("during the run", "during the run")
    } else {
        ("inside the terminations", "while a replica terminated")
    };
    let (inside, outside) = located(report, windows);
    let (c, modes, methods) = (&report.config, &report.modes, &report.methods);
    // (name, failed inside, sent, its share of the load)
    let ways = [
        (
            "HTTP/1.1 keep-alive",
            inside.keepalive,
            modes.keepalive.sent,
            c.keepalive_fraction(),
        ),
        (
            "HTTP/1.1 fresh connections",
            inside.fresh,
            modes.fresh.sent,
            c.fresh_fraction,
        ),
        ("HTTP/2", inside.http2, modes.http2.sent, c.h2_fraction),
        ("GET", inside.get, methods.get.sent, 1.0 - c.post_fraction),
        ("POST", inside.post, methods.post.sent, c.post_fraction),
    ];
    let split: Vec<String> = ways
        .iter()
        .map(|(name, n, _, _)| format!("{name} {n}"))
        .collect();
    let requests_inside = inside.requests();
    verdict.push(
        format!("failed requests {place}, as expected"),
        requests_inside > 0,
        format!(
            "{requests_inside} failed {during} ({}); {} failed elsewhere, not counted; over the run: {overall}",
            split.join(", "),
            outside.requests()
        ),
    );
    if expect != Expect::Failures {
        return;
    }
    // Each switch the negative control turns off has its failure on every
    // protocol and method: one that shows none would let its loss go unseen.
    for (name, n, sent, _) in ways.into_iter().filter(|(.., share)| *share > 0.0) {
        verdict.push(
            format!("failed {name} requests {place}, as expected"),
            n > 0,
            if sent == 0 {
                format!("unknown: not one {name} request was sent: the suite cannot show it would catch its loss")
            } else if n == 0 {
                format!("none of {sent} {name} requests failed {during}: the suite cannot show it would catch their loss")
            } else {
                format!("{n} of {sent} failed {during}")
            },
        );
    }
}

/// `POST`s, which no proxy retries, must have gone over every protocol that
/// carried requests, and none may have failed.
fn judge_posts(report: &Report, verdict: &mut Verdict) {
    if report.config.post_fraction <= 0.0 {
        return;
    }
    let post = &report.methods.post;
    let per_protocol = [
        (
            "HTTP/1.1 keep-alive",
            &post.modes.keepalive,
            report.modes.keepalive.sent,
        ),
        (
            "HTTP/1.1 fresh connections",
            &post.modes.fresh,
            report.modes.fresh.sent,
        ),
        ("HTTP/2", &post.modes.http2, report.modes.http2.sent),
    ];
    let missing: Vec<&str> = per_protocol
        .iter()
        .filter(|(_, m, all)| *all > 0 && m.sent == 0)
        .map(|(name, _, _)| *name)
        .collect();
    let split: Vec<String> = per_protocol
        .iter()
        .map(|(name, m, _)| format!("{name} {}", m.sent))
        .collect();
    let detail = format!(
        "{} (POSTs sent: {})",
        breakdown(post.sent, &post.outcomes),
        split.join(", ")
    );
    verdict.push(
        "no failed POST request",
        missing.is_empty() && post.sent > 0 && post.outcomes.failures() == 0,
        if missing.is_empty() {
            detail
        } else {
            format!(
                "unknown: no POST went over {}; {detail}",
                missing.join(", ")
            )
        },
    );
}
