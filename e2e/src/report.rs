//! The end of a run: a summary table for the terminal, the record as JSON and
//! a timeline picture (requests/s, failures, routed replicas) as SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::timeline::RunRecord;
use crate::verdict;

/// A stream report's failures, with their causes when there are any.
fn stream_failures(s: &loadgen::StreamReport) -> String {
    let f = &s.failures;
    let causes: Vec<String> = [
        ("connect refused", f.connect_refused),
        ("connect error", f.connect_error),
        ("status", f.status),
        ("handshake", f.handshake),
        ("reset", f.reset),
        ("truncated", f.truncated),
        ("close code", f.close_code),
        ("unechoed", f.unechoed),
        ("stalled", f.stalled),
        ("malformed", f.malformed),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{name} {n}"))
    .collect();
    if causes.is_empty() {
        s.failed.to_string()
    } else {
        format!("{} ({})", s.failed, causes.join(", "))
    }
}

/// Writes `<dir>/<label>.json` and `<dir>/<label>.svg`; returns their paths.
pub fn write(record: &RunRecord, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join(format!("{}.json", record.label));
    std::fs::write(&json, serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let svg = dir.join(format!("{}.svg", record.label));
    draw(record, &svg).with_context(|| format!("cannot draw {}", svg.display()))?;
    Ok((json, svg))
}

/// The summary table.
pub fn summary(record: &RunRecord) -> String {
    let mut out = String::new();
    settings(&mut out, record);
    load_rows(&mut out, &record.load);
    protocol_rows(&mut out, &record.load);
    method_rows(&mut out, &record.load);
    stream_rows(&mut out, &record.load);
    replica_rows(&mut out, record);
    failures_and_verdict(&mut out, record);
    out
}

/// The run's label, its settings and how long each rollout took.
fn settings(out: &mut String, record: &RunRecord) {
    let _ = writeln!(out, "── {} ({} backend) ──", record.label, record.backend);
    for (name, value) in &record.settings {
        let _ = writeln!(out, "  {name:<28} {value}");
    }
    let rollout_s: Vec<String> = record
        .rollouts
        .iter()
        .map(|r| {
            format!(
                "{:.1} s (+{:.1} s until the old replicas were gone)",
                (r.completed_ms - r.started_ms) as f64 / 1e3,
                (r.old_gone_ms.saturating_sub(r.completed_ms)) as f64 / 1e3
            )
        })
        .collect();
    let _ = writeln!(out, "  {:<28} {}", "rollout took", rollout_s.join("; "));
}

/// What the load generator sent and what came back, over all protocols.
fn load_rows(out: &mut String, load: &loadgen::Report) {
    let o = &load.outcomes;
    let seconds = load.elapsed_ms as f64 / 1e3;
    let conns = &load.connections;
    let rows: [(&str, String); 11] = [
        (
            "requests sent",
            format!(
                "{} in {seconds:.1} s ({:.0}/s)",
                load.sent,
                load.sent as f64 / seconds.max(0.001)
            ),
        ),
        ("ok (2xx)", o.ok.to_string()),
        (
            "refused and resent",
            format!(
                "{} (HTTP/2 streams the server did not process, resent once and answered; not failures)",
                o.refused_resent
            ),
        ),
        (
            "other status",
            format!("{} {:?}", o.status.values().sum::<u64>(), o.status),
        ),
        (
            "connect refused / error",
            format!("{} / {}", o.connect_refused, o.connect_error),
        ),
        ("reset before response", o.reset.to_string()),
        ("timeout", o.timeout.to_string()),
        ("failed, total", load.failures.to_string()),
        (
            "late starts",
            format!(
                "{} (max delay {:.1} ms)",
                load.late_start, load.max_start_delay_ms
            ),
        ),
        (
            "latency p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                load.latency.p50_ms, load.latency.p99_ms, load.latency.max_ms
            ),
        ),
        (
            "connections opened",
            format!(
                "{} ({} closed by the server with `Connection: close`); HTTP/2: {} opened, {} GOAWAY received, {} requests moved unsent, {} resent",
                conns.opened,
                conns.close_responses,
                conns.h2_opened,
                conns.h2_goaways,
                conns.h2_requeued_not_sent,
                conns.h2_resent
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<28} {value}");
    }
}

/// One row per protocol: sent, ok, resent, failed by kind.
fn protocol_rows(out: &mut String, load: &loadgen::Report) {
    let _ = writeln!(
        out,
        "  {:<28} {:>8} {:>8} {:>8}  failed",
        "per protocol", "sent", "ok", "resent"
    );
    for p in verdict::protocols(load) {
        let _ = writeln!(
            out,
            "    {:<26} {:>8} {:>8} {:>8}  {}",
            p.name,
            p.report.sent,
            p.report.outcomes.ok,
            p.report.outcomes.refused_resent,
            failed_by_kind(&p.report.outcomes)
        );
    }
}

/// One row per method: a proxy may retry a `GET` on its own, never a `POST`.
fn method_rows(out: &mut String, load: &loadgen::Report) {
    let _ = writeln!(
        out,
        "  {:<28} {:>8} {:>8} {:>8}  failed",
        "per method", "sent", "ok", "resent"
    );
    let m = &load.methods;
    for (name, report) in [("GET", &m.get), ("POST (body echoed)", &m.post)] {
        let _ = writeln!(
            out,
            "    {:<26} {:>8} {:>8} {:>8}  {}",
            name,
            report.sent,
            report.outcomes.ok,
            report.outcomes.refused_resent,
            failed_by_kind(&report.outcomes)
        );
    }
    let origin = &load.outcomes.status_by_origin;
    if origin.total() > 0 {
        let _ = writeln!(
            out,
            "  {:<28} application {:?}, no lameduck-replica header (a proxy's) {:?}",
            "error statuses by origin", origin.application, origin.no_marker
        );
    }
}

/// One row per kind of long-lived client that ran.
fn stream_rows(out: &mut String, load: &loadgen::Report) {
    let _ = writeln!(
        out,
        "  {:<28} {:>8} {:>8} {:>8} {:>8}  failed",
        "long-lived streams", "opened", "clean", "reconn", "at end"
    );
    for (name, st) in verdict::streams::kinds(load) {
        if st.clients == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "    {:<26} {:>8} {:>8} {:>8} {:>8}  {}",
            format!("{name} ({} clients)", st.clients),
            st.opened,
            st.ended_clean,
            st.reconnects,
            st.closed_by_client,
            stream_failures(st)
        );
    }
}

/// When each replica became ready, was deleted, got SIGTERM and exited.
fn replica_rows(out: &mut String, record: &RunRecord) {
    let _ = writeln!(out, "  replicas:");
    for r in &record.replicas {
        let since = |t: Option<u64>| {
            t.map_or("-".to_owned(), |t| {
                format!("{:.1}s", t.saturating_sub(record.started_ms) as f64 / 1e3)
            })
        };
        let _ = writeln!(
            out,
            "    {:<24} ready {:>7}  deleted {:>7}  SIGTERM {:>7}  exited {:>7}  exit {:<4} answered {:>6}, {:>4} after SIGTERM  aborted {}{}",
            r.name,
            since(r.ready_ms),
            since(r.terminating_ms),
            since(r.sigterm_ms),
            since(r.exited_ms),
            r.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            record.load.answered_by.get(&r.name).copied().unwrap_or(0),
            verdict::served_in_shutdown(&record.load, &r.name),
            r.aborted_requests.map_or("-".to_owned(), |a| a.to_string()),
            if r.killed { " (SIGKILL)" } else { "" },
        );
    }
}

/// The first failures, every check and the verdict.
fn failures_and_verdict(out: &mut String, record: &RunRecord) {
    let load = &record.load;
    if !load.errors.is_empty() {
        let _ = writeln!(out, "  first failures:");
        for e in load.errors.iter().take(5) {
            let _ = writeln!(
                out,
                "    {:?} {:?}/{:?}: {}",
                e.kind, e.route, e.mode, e.message
            );
        }
    }
    let _ = writeln!(out, "  checks:");
    let _ = write!(out, "{}", record.verdict);
    let _ = writeln!(
        out,
        "  verdict: {}",
        if record.verdict.passed() {
            "PASS"
        } else {
            "FAIL"
        }
    );
}

/// `0`, or the total and its non-zero kinds: `37 (connect refused 12, reset
/// 25)`; requests cut off by the load generator's stop are added apart.
fn failed_by_kind(o: &loadgen::Outcomes) -> String {
    let mut kinds: Vec<String> = o
        .status
        .iter()
        .map(|(code, n)| format!("status {code} {n}"))
        .collect();
    for (kind, n) in [
        ("connect refused", o.connect_refused),
        ("connect error", o.connect_error),
        ("reset", o.reset),
        ("timeout", o.timeout),
        ("wrong echo", o.wrong_echo),
        ("other", o.other),
    ] {
        if n > 0 {
            kinds.push(format!("{kind} {n}"));
        }
    }
    let mut out = o.failures().to_string();
    if !kinds.is_empty() {
        let _ = write!(out, " ({})", kinds.join(", "));
    }
    if o.aborted > 0 {
        let _ = write!(out, "; {} cut off by the load generator's stop", o.aborted);
    }
    out
}

fn draw(record: &RunRecord, path: &Path) -> Result<()> {
    let start = record.started_ms;
    let secs = |t: u64| t.saturating_sub(start) as f64 / 1e3;
    let end = secs(record.finished_ms).max(1.0);
    let rate_max = record
        .load
        .timeline
        .iter()
        .map(|s| s.sent)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        // Headroom above the load for the legend.
        * 1.45;
    let routed_max = record
        .routed
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        + 1.0;

    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let verdict = if record.verdict.passed() {
        "PASS"
    } else {
        "FAIL"
    };
    let title = format!(
        "{}: {} requests, {} failed ({verdict})",
        record.label, record.load.sent, record.load.failures
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0.0..end, 0.0..rate_max)?
        .set_secondary_coord(0.0..end, 0.0..routed_max);
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("requests / s")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("replicas routed to")
        .draw()?;

    // Termination windows: from pod deletion to process exit.
    for r in &record.replicas {
        if let (Some(from), Some(to)) = (r.terminating_ms, r.exited_ms) {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(secs(from), 0.0), (secs(to), rate_max)],
                RGBColor(255, 200, 80).mix(0.18).filled(),
            )))?;
        }
    }
    // The last second with requests is cut short by the stop, and the ones
    // after it only drain; they would read as a drop.
    let timeline = &record.load.timeline;
    let last_sending = timeline.iter().rposition(|s| s.sent > 0).unwrap_or(0);
    let whole_seconds = || timeline[..last_sending].iter();
    let sent: Vec<(f64, f64)> = whole_seconds()
        .map(|s| (secs(s.t_unix_ms), s.sent as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(sent, BLUE.stroke_width(2)))?
        .label("requests sent / s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    let failed: Vec<(f64, f64)> = record
        .load
        .timeline
        .iter()
        .map(|s| (secs(s.t_unix_ms), s.outcomes.failures() as f64))
        .collect();
    chart
        .draw_series(
            failed
                .iter()
                .filter(|(_, f)| *f > 0.0)
                .map(|(t, f)| Rectangle::new([(*t, 0.0), (*t + 0.9, *f)], RED.filled())),
        )?
        .label("failed requests / s")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], RED.filled()));
    // A step line: the count holds until the next sample.
    let mut routed: Vec<(f64, f64)> = Vec::new();
    for (t, n) in &record.routed {
        if let Some(&(_, previous)) = routed.last() {
            routed.push((secs(*t), previous));
        }
        routed.push((secs(*t), *n as f64));
    }
    chart
        .draw_secondary_series(LineSeries::new(routed, GREEN.stroke_width(2)))?
        .label("replicas routed to")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN.stroke_width(2)));
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            RGBColor(255, 200, 80).mix(0.5).filled(),
        )))?
        .label("replica terminating (deleted → exited)")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 5), (x + 16, y + 5)],
                RGBColor(255, 200, 80).mix(0.5).filled(),
            )
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use loadgen::{Mode, Outcomes};

    use super::*;
    use crate::verdict::fixtures::{report, set_mode};
    use crate::verdict::{Expect, Verdict};

    fn record() -> RunRecord {
        let mut load = report(&[(0, 800, &[("a", 10)])], 0);
        set_mode(
            &mut load,
            Mode::Http2,
            Outcomes {
                ok: 190,
                refused_resent: 7,
                reset: 2,
                status: [(503, 1)].into(),
                ..Outcomes::default()
            },
        );
        RunRecord {
            label: "t".to_owned(),
            backend: "local",
            expect: Expect::NoFailures,
            settings: Vec::new(),
            started_ms: 0,
            finished_ms: 1000,
            rollouts: Vec::new(),
            replicas: Vec::new(),
            routed: Vec::new(),
            transitions: Vec::new(),
            load,
            verdict: Verdict::default(),
        }
    }

    #[test]
    fn the_summary_splits_the_load_per_protocol() {
        let text = summary(&record());
        let line = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} line in\n{text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            line("refused and resent").split(' ').nth(3),
            Some("7"),
            "{text}"
        );
        assert_eq!(
            line("HTTP/1.1 keep-alive"),
            "HTTP/1.1 keep-alive 400 400 0 0"
        );
        assert_eq!(
            line("HTTP/1.1 fresh connections"),
            "HTTP/1.1 fresh connections 200 200 0 0"
        );
        assert_eq!(line("HTTP/2"), "HTTP/2 200 190 7 3 (status 503 1, reset 2)");
    }

    #[test]
    fn the_json_record_has_the_numbers_per_protocol() {
        let json = serde_json::to_value(record()).unwrap();
        let h2 = &json["load"]["modes"]["http2"];
        assert_eq!(h2["sent"], 200);
        assert_eq!(h2["outcomes"]["refused_resent"], 7);
        assert_eq!(h2["outcomes"]["reset"], 2);
        assert_eq!(json["load"]["modes"]["fresh"]["sent"], 200);
        assert_eq!(json["load"]["modes"]["keepalive"]["outcomes"]["ok"], 400);
    }
}
