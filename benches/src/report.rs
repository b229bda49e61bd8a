//! The figures, each next to its goal, and BENCHMARKS.md.

use std::fmt::Write as _;

use crate::callgrind::Protocol;
use crate::results::{Callgrind, CallgrindCost, H2Speed, Results};
use crate::stats::{Goal, Summary, Verdict, judge};

/// How a figure's numbers read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A dimensionless ratio.
    Ratio,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Bytes, shown in MiB.
    Bytes,
    /// Requests per second.
    PerSecond,
    /// Instructions (callgrind's `Ir`).
    Instructions,
}

impl Unit {
    /// `value` with its unit.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Ratio => format!("{value:.3}"),
            Unit::Millis => format!("{value:.2} ms"),
            Unit::Micros => format!("{value:.0} µs"),
            Unit::Bytes => format!("{:.1} MiB", value / MIB),
            Unit::PerSecond => format!("{} req/s", thousands(value.round() as usize)),
            Unit::Instructions => thousands(value.round() as usize),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// One headline figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Its unit.
    pub unit: Unit,
    /// The repeated measurements.
    pub samples: Vec<f64>,
    /// What it should be.
    pub goal: Goal,
    /// A baseline's median in the same state, where there is one.
    pub baseline: Option<Baseline>,
}

/// A baseline figure measured in the same run.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Its median.
    pub value: f64,
    /// Which baseline.
    pub what: &'static str,
}

fn baseline(samples: &[f64], what: &'static str) -> Option<Baseline> {
    median(samples).map(|value| Baseline { value, what })
}

impl Figure {
    /// Median and spread; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }

    /// How it compares with its goal. A figure with a goal but no samples
    /// misses it: nothing shows it was met.
    pub fn verdict(&self) -> Verdict {
        match (self.summary(), self.goal) {
            (_, Goal::None) => Verdict::NoGoal,
            (Some(summary), goal) => judge(goal, &summary),
            (None, _) => Verdict::Misses,
        }
    }

    fn goal_text(&self) -> String {
        match self.goal {
            Goal::AtLeast(g) => format!("≥ {}", self.unit.format(g)),
            Goal::AtMost(g) => format!("≤ {}", self.unit.format(g)),
            Goal::None => "none set".to_owned(),
        }
    }
}

/// `a[i] - b[i]` for each repetition.
fn differences(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a - b).collect()
}

fn median(samples: &[f64]) -> Option<f64> {
    Summary::of(samples).map(|s| s.median)
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The headline figures of a run, each with its goal, in the order of the
/// sections of BENCHMARKS.md.
pub fn figures(r: &Results) -> Vec<Figure> {
    let mut figures = throughput_figures(r);
    figures.extend(shutdown_figures(r));
    figures.extend(memory_figures(r));
    figures.push(metrics_figure(r));
    figures.extend(h2_speed_figures(&r.h2_speed));
    figures.extend(callgrind_figures(&r.callgrind));
    figures
}

fn throughput_figures(r: &Results) -> Vec<Figure> {
    r.throughput
        .iter()
        .map(|t| Figure {
            name: format!(
                "Throughput, lameduck / bare hyper, `GET /`, {} connections",
                t.connections
            ),
            unit: Unit::Ratio,
            samples: t.ratios(),
            goal: Goal::AtLeast(0.97),
            baseline: None,
        })
        .collect()
}

fn shutdown_figures(r: &Results) -> [Figure; 7] {
    let idle = thousands(r.setup.idle_connections);
    let s = &r.shutdown;
    [
        Figure {
            name: "Shutdown, idle: SIGTERM to exit".into(),
            unit: Unit::Millis,
            samples: s.idle_ms.clone(),
            goal: Goal::AtMost(5.0),
            baseline: None,
        },
        Figure {
            name: format!("Shutdown, {idle} idle keep-alive connections: SIGTERM to exit"),
            unit: Unit::Millis,
            samples: s.idle_conns_ms.clone(),
            goal: Goal::None,
            baseline: baseline(&s.close_only_ms, "close only"),
        },
        Figure {
            name: format!(
                "Shutdown, {idle} idle keep-alive connections, lameduck / hyper-util graceful shutdown"
            ),
            unit: Unit::Ratio,
            samples: crate::stats::ratios(&s.idle_conns_ms, &s.graceful_hyper_ms),
            goal: Goal::AtMost(1.0),
            baseline: None,
        },
        Figure {
            name: format!(
                "Shutdown, {idle} idle keep-alive connections: lameduck's own time beyond the close-only floor"
            ),
            unit: Unit::Millis,
            samples: differences(&s.idle_conns_ms, &s.close_only_ms),
            goal: Goal::None,
            baseline: None,
        },
        Figure {
            name: format!("Shutdown, {idle} idle keep-alive connections, `--idle-grace 0s`"),
            unit: Unit::Millis,
            samples: s.idle_conns_zero_grace_ms.clone(),
            goal: Goal::None,
            baseline: None,
        },
        Figure {
            name: format!(
                "Shutdown, {} busy keep-alive connections under load: SIGTERM to exit",
                thousands(r.setup.busy_connections as usize)
            ),
            unit: Unit::Millis,
            samples: s.busy_conns_ms.clone(),
            goal: Goal::None,
            baseline: None,
        },
        Figure {
            name: format!(
                "Shutdown, {} in-flight `/work` requests: exit after the last response",
                r.setup.in_flight
            ),
            unit: Unit::Millis,
            samples: s.in_flight_after_last_ms.clone(),
            goal: Goal::AtMost(5.0),
            baseline: None,
        },
    ]
}

fn memory_figures(r: &Results) -> [Figure; 3] {
    let idle = thousands(r.setup.idle_connections);
    let m = &r.memory;
    [
        Figure {
            name: "RSS, idle".into(),
            unit: Unit::Bytes,
            samples: m.lameduck_idle.clone(),
            goal: Goal::AtMost(10.0 * MIB),
            baseline: baseline(&m.baseline_idle, "bare hyper"),
        },
        Figure {
            name: format!("RSS, {idle} idle keep-alive connections"),
            unit: Unit::Bytes,
            samples: m.lameduck_conns.clone(),
            goal: Goal::AtMost(64.0 * MIB),
            baseline: baseline(&m.baseline_conns, "bare hyper"),
        },
        Figure {
            name: format!("RSS, {idle} idle keep-alive connections, lameduck / bare hyper"),
            unit: Unit::Ratio,
            samples: crate::stats::ratios(&m.lameduck_conns, &m.baseline_conns),
            goal: Goal::AtMost(1.0),
            baseline: None,
        },
    ]
}

fn metrics_figure(r: &Results) -> Figure {
    Figure {
        name: format!(
            "`/metrics` render time after {} requests",
            millions(r.metrics.requests)
        ),
        unit: Unit::Micros,
        samples: r.metrics.render_us(),
        goal: Goal::None,
        baseline: None,
    }
}

/// lameduck's instructions per request over bare hyper's, at most.
pub const INSTRUCTIONS_GOAL: f64 = 1.10;

/// Two figures per protocol measured; a protocol missing from the run
/// gets them too, with no sample, so that its goal is not met.
fn callgrind_figures(c: &Callgrind) -> Vec<Figure> {
    let mut figures = Vec::new();
    for protocol in Protocol::ALL.map(Protocol::name) {
        let cost = c.costs.iter().find(|cost| cost.protocol == protocol);
        figures.push(Figure {
            name: format!(
                "Instructions per `GET /`, lameduck / bare hyper, {protocol} (callgrind)"
            ),
            unit: Unit::Ratio,
            samples: cost.and_then(CallgrindCost::ratio).into_iter().collect(),
            goal: Goal::AtMost(INSTRUCTIONS_GOAL),
            baseline: None,
        });
        figures.push(Figure {
            name: format!("Instructions per `GET /`, lameduck, {protocol} (callgrind)"),
            unit: Unit::Instructions,
            samples: cost.and_then(CallgrindCost::lameduck).into_iter().collect(),
            goal: Goal::None,
            baseline: cost
                .and_then(CallgrindCost::baseline)
                .map(|value| Baseline {
                    value,
                    what: "bare hyper",
                }),
        });
    }
    figures
}

/// The load generator's goal: its HTTP/2 requests per second alone, on
/// this kind of machine.
pub const LOADGEN_H2_GOAL: f64 = 20_000.0;

fn h2_speed_figures(h: &H2Speed) -> [Figure; 2] {
    let settings = format!("{} connections × {} streams", h.conns, h.streams);
    [
        Figure {
            name: format!("Load generator alone, HTTP/2 `GET /` at full speed, {settings}"),
            unit: Unit::PerSecond,
            samples: h.samples(|p| p.loadgen),
            goal: Goal::AtLeast(LOADGEN_H2_GOAL),
            baseline: baseline(&h.samples(|p| p.h2load), "h2load"),
        },
        Figure {
            name: format!("Load generator / h2load, HTTP/2 `GET /`, {settings}"),
            unit: Unit::Ratio,
            samples: h.ratios(),
            goal: Goal::None,
            baseline: None,
        },
    ]
}

fn millions(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else {
        format!("{n:.0}")
    }
}

/// The figures that fail `just bench-check`, described.
pub fn failures(figures: &[Figure]) -> Vec<String> {
    figures
        .iter()
        .filter(|f| f.verdict().fails_check())
        .map(|f| match f.summary() {
            Some(s) => format!(
                "{}: {} misses {} by {}, more than its spread {}",
                f.name,
                f.unit.format(s.median),
                f.goal_text(),
                f.unit.format(f.goal.shortfall(s.median)),
                f.unit.format(s.spread())
            ),
            None => format!("{}: not measured", f.name),
        })
        .collect()
}

fn row(out: &mut String, cells: &[String]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

fn header(out: &mut String, cells: &[&str]) {
    let _ = writeln!(out, "| {} |", cells.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(cells.len()));
}

fn load(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".to_owned(),
        |[a, b, c]| format!("{a:.2} / {b:.2} / {c:.2}"),
    )
}

fn list(unit: Unit, samples: &[f64]) -> String {
    samples
        .iter()
        .map(|&v| unit.format(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The headline table, as Markdown.
pub fn headline(figures: &[Figure]) -> String {
    let mut out = String::new();
    header(
        &mut out,
        &[
            "figure",
            "median",
            "spread (IQR)",
            "min – max",
            "n",
            "goal",
            "verdict",
            "baseline, same run",
        ],
    );
    for f in figures {
        let (median, spread, range, n) = match f.summary() {
            Some(s) => (
                f.unit.format(s.median),
                f.unit.format(s.spread()),
                format!("{} – {}", f.unit.format(s.min), f.unit.format(s.max)),
                s.n.to_string(),
            ),
            None => ("not measured".into(), "—".into(), "—".into(), "0".into()),
        };
        row(
            &mut out,
            &[
                f.name.clone(),
                median,
                spread,
                range,
                n,
                f.goal_text(),
                f.verdict().to_string(),
                f.baseline.as_ref().map_or_else(
                    || "—".into(),
                    |b| format!("{} ({})", f.unit.format(b.value), b.what),
                ),
            ],
        );
    }
    out
}

/// BENCHMARKS.md.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    machine_section(&mut out, r);
    figures_section(&mut out, r);
    throughput_section(&mut out, r);
    shutdown_section(&mut out, r);
    memory_section(&mut out, r);
    metrics_section(&mut out, r);
    h2_speed_section(&mut out, r);
    callgrind_section(&mut out, r);
    method_section(&mut out, r);
    out
}

/// The title, where the figures come from, and the machine and run.
fn machine_section(out: &mut String, r: &Results) {
    let m = &r.machine;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Written by `just bench` on {}; every number below comes from that run. \
         Run it again to regenerate this file, and `just bench-check` to fail when a \
         figure misses its goal by more than its spread.\n",
        m.date
    );
    let _ = writeln!(out, "| machine | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {} |", m.cpu);
    let _ = writeln!(out, "| cores | {} |", m.cores);
    let _ = writeln!(out, "| kernel | Linux {} |", m.kernel);
    let _ = writeln!(out, "| rustc | {} |", m.rustc);
    let _ = writeln!(out, "| wrk | {} |", m.wrk);
    let _ = writeln!(out, "| h2load | {} |", m.h2load);
    let _ = writeln!(out, "| commit | {} |", m.commit);
    let _ = writeln!(
        out,
        "| load average (1 / 5 / 15 min) | {} at the start, {} at the end |",
        load(r.load_before),
        load(r.load_after)
    );
    let _ = writeln!(out, "| run time | {:.0} s |\n", r.seconds);
}

/// The headline table with its goals, and how to read it.
fn figures_section(out: &mut String, r: &Results) {
    let _ = writeln!(out, "## Figures and goals\n");
    out.push_str(&headline(&figures(r)));
    let _ = writeln!(
        out,
        "\n*Spread* is the interquartile range (Q3 − Q1) of the repeated measurements, \
         quantiles interpolated linearly. A figure *misses, within spread* when its median \
         misses the goal by no more than that; `just bench-check` fails only on *MISSES*. \
         The baseline column is measured in the same state, in the same run: *bare hyper* \
         is the hyper server of `benches/`, *close only* a tokio server that holds the same \
         connections and on SIGTERM only closes them (see below).\n"
    );
    let _ = writeln!(
        out,
        "One goal is set against a baseline of the same run rather than as an absolute \
         number: closing 10,000 idle connections (absolute target 50 ms). On this kind of \
         machine the baseline alone exceeds that target: a server that does nothing on \
         SIGTERM but close the sockets from one task per core (*close only*) needs 55 to \
         100 ms, most of it in the kernel's `close` and `epoll_ctl`; hyper-util's \
         `GracefulShutdown`, the usual way to shut a hyper server down, which like \
         lameduck has a task per connection, needs more. So the check is on what lameduck \
         adds: no slower than hyper-util's graceful shutdown. The absolute figure stays in \
         the table, without a goal, for comparison across machines. The memory that holds \
         the same connections has both goals: the absolute 64 MiB, and no more than bare \
         hyper's.\n"
    );
}

fn throughput_section(out: &mut String, r: &Results) {
    let _ = writeln!(out, "## Throughput and latency\n");
    let _ = writeln!(
        out,
        "wrk against `GET /` ({} s runs, {} threads, after {} s of unrecorded warm-up on \
         each server), lameduck (A) and the bare hyper server (B) alternating A B A B; \
         figures are medians over the runs, the ratio is the median of the pairwise ratios.\n",
        r.setup.run_seconds, r.setup.wrk_threads, r.setup.warmup_seconds
    );
    header(
        out,
        &[
            "connections",
            "pairs",
            "lameduck req/s",
            "bare hyper req/s",
            "ratio",
            "lameduck p50 / p99",
            "bare hyper p50 / p99",
            "wrk errors (A / B)",
        ],
    );
    let us = |v: Option<f64>| v.map_or("—".into(), |v| Unit::Micros.format(v));
    for t in &r.throughput {
        let (ea, eb) = t.errors();
        row(
            out,
            &[
                t.connections.to_string(),
                t.pairs.len().to_string(),
                format!("{:.0}", median(&t.lameduck(|r| r.rps())).unwrap_or(0.0)),
                format!("{:.0}", median(&t.baseline(|r| r.rps())).unwrap_or(0.0)),
                median(&t.ratios()).map_or("—".into(), |v| Unit::Ratio.format(v)),
                format!(
                    "{} / {}",
                    us(median(&t.lameduck(|r| r.p50_us))),
                    us(median(&t.lameduck(|r| r.p99_us)))
                ),
                format!(
                    "{} / {}",
                    us(median(&t.baseline(|r| r.p50_us))),
                    us(median(&t.baseline(|r| r.p99_us)))
                ),
                format!("{ea} / {eb}"),
            ],
        );
    }
    let _ = writeln!(out, "\nEvery pair, in the order run:\n");
    header(
        out,
        &[
            "connections",
            "pair",
            "lameduck req/s",
            "bare hyper req/s",
            "ratio",
        ],
    );
    for t in &r.throughput {
        for (i, (p, ratio)) in t.pairs.iter().zip(t.ratios()).enumerate() {
            row(
                out,
                &[
                    t.connections.to_string(),
                    (i + 1).to_string(),
                    format!("{:.0}", p.lameduck.rps()),
                    format!("{:.0}", p.baseline.rps()),
                    Unit::Ratio.format(ratio),
                ],
            );
        }
    }
    out.push('\n');
}

fn shutdown_section(out: &mut String, r: &Results) {
    let s = &r.shutdown;
    let idle = thousands(r.setup.idle_connections);
    let _ = writeln!(out, "## Shutdown\n");
    let _ = writeln!(
        out,
        "From just before `kill(SIGTERM)` to the moment the harness reaps the process \
         (`--drain-delay 0s`, and `--final-scrape-timeout 0s`: the harness reads `/metrics` \
         to see the server settle, which does not make it a scraper to wait for; every other \
         flag at its default unless noted). Every shutdown measured ended gracefully \
         (exit 0).\n"
    );
    header(out, &["scenario", "every measurement"]);
    let ms = |v: &[f64]| list(Unit::Millis, v);
    row(out, &["idle, nothing connected".into(), ms(&s.idle_ms)]);
    row(
        out,
        &[
            format!("{idle} idle keep-alive connections, idle for 2 s"),
            ms(&s.idle_conns_ms),
        ],
    );
    row(
        out,
        &[
            format!("{idle} idle keep-alive connections, `--idle-grace 0s`"),
            ms(&s.idle_conns_zero_grace_ms),
        ],
    );
    row(
        out,
        &[
            format!("close-only baseline, {idle} idle keep-alive connections"),
            ms(&s.close_only_ms),
        ],
    );
    row(
        out,
        &[
            format!("hyper-util graceful shutdown, {idle} idle keep-alive connections"),
            ms(&s.graceful_hyper_ms),
        ],
    );
    row(
        out,
        &[
            format!(
                "{} busy keep-alive connections (wrk)",
                thousands(r.setup.busy_connections as usize)
            ),
            format!(
                "{} (requests completed during the shutdown: {})",
                ms(&s.busy_conns_ms),
                s.busy_completed
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    );
    row(
        out,
        &[
            format!(
                "{} in-flight `/work` requests: exit after the last response",
                r.setup.in_flight
            ),
            ms(&s.in_flight_after_last_ms),
        ],
    );
    row(
        out,
        &[
            format!(
                "{} in-flight `/work` requests (300–498 ms): SIGTERM to exit",
                r.setup.in_flight
            ),
            ms(&s.in_flight_total_ms),
        ],
    );
    out.push('\n');
}

fn memory_section(out: &mut String, r: &Results) {
    let m = &r.memory;
    let idle = thousands(r.setup.idle_connections);
    let _ = writeln!(out, "## Memory\n");
    let _ = writeln!(
        out,
        "`VmRSS` from `/proc/PID/status`: idle is after one answered request whose \
         connection closed; with connections, after {idle} keep-alive connections have \
         each had one `GET /` answered and sat idle for 2 s (lameduck has parked them: \
         see below). Every server here allocates with jemalloc, configured as lameduck's \
         binary is: a background thread hands pages freed for a second back to the \
         kernel. That is what makes parking show in RSS: with the C allocator the buffers \
         a parked connection let go of stay mapped, between allocations that live on \
         (lameduck measured 70 to 110 MiB here with it, depending on how fast the \
         connections came).\n"
    );
    header(out, &["server", "state", "every measurement"]);
    let mib = |v: &[f64]| list(Unit::Bytes, v);
    row(
        out,
        &["lameduck".into(), "idle".into(), mib(&m.lameduck_idle)],
    );
    row(
        out,
        &[
            "lameduck".into(),
            format!("{idle} connections"),
            mib(&m.lameduck_conns),
        ],
    );
    row(
        out,
        &["bare hyper".into(), "idle".into(), mib(&m.baseline_idle)],
    );
    row(
        out,
        &[
            "bare hyper".into(),
            format!("{idle} connections"),
            mib(&m.baseline_conns),
        ],
    );
    row(
        out,
        &[
            "close only".into(),
            format!("{idle} connections"),
            mib(&m.close_only_conns),
        ],
    );
    out.push('\n');
}

fn metrics_section(out: &mut String, r: &Results) {
    let m = &r.metrics;
    let _ = writeln!(out, "## `/metrics`\n");
    let us = |v: &[f64], p: f64| {
        Summary::of(v).map_or("—".into(), |_| {
            let mut sorted = v.to_vec();
            sorted.sort_by(f64::total_cmp);
            Unit::Micros.format(crate::stats::quantile(&sorted, p))
        })
    };
    let _ = writeln!(
        out,
        "Timed on the lameduck that served the throughput runs, once it had counted {:.0} \
         requests, plus one request of each other kind the demo answers (HEAD, 404, 405, \
         400, `/work`), so that the histogram has every series the demo produces. \
         `GET /metrics` and `GET /livez` alternate on one keep-alive admin connection, \
         {} times each; the render time is each `/metrics` round trip less the median \
         `/livez` round trip.\n",
        m.requests,
        m.metrics_us.len()
    );
    header(out, &["", "p50", "p99"]);
    row(
        out,
        &[
            format!(
                "`GET /metrics` ({} bytes, {} series)",
                m.body_bytes, m.series
            ),
            us(&m.metrics_us, 0.5),
            us(&m.metrics_us, 0.99),
        ],
    );
    row(
        out,
        &[
            "`GET /livez`".into(),
            us(&m.livez_us, 0.5),
            us(&m.livez_us, 0.99),
        ],
    );
    out.push('\n');
}

fn h2_speed_section(out: &mut String, r: &Results) {
    let h = &r.h2_speed;
    let _ = writeln!(out, "## Load generator, HTTP/2\n");
    let _ = writeln!(
        out,
        "How fast the load generator of the rollout suite (`crates/loadgen`) sends on its \
         own, against the bare hyper server speaking h2c only (`bare-hyper --h2c`, hyper's \
         HTTP/2 defaults), next to h2load (nghttp2's benchmark client, written in C) with the \
         same settings: {} HTTP/2 connections of at most {} concurrent streams, {} `GET /` \
         per run, loadgen (A) and h2load (B) alternating A B A B after one unrecorded run \
         of each. loadgen runs open loop at {} requests/s, far above what it can send, so \
         that every request is due at once (`loadgen --http2 --h2-conns {} --h2-streams {} \
         --rate {} --max-requests {} --slow-fraction 0`); its rate is the requests answered \
         with a 2xx over `elapsed_ms` of its report (from the start of its schedule to \
         the last answer). h2load's is the req/s of its `finished in` line (`h2load -c {} -m {} -n {}`, \
         one thread). Both share the machine's {} cores with the server. A run counts only \
         if every request was answered with a 2xx, loadgen's all over HTTP/2; otherwise the \
         figure is unknown and fails `just bench-check`.\n",
        h.conns,
        h.streams,
        thousands(h.requests as usize),
        thousands(crate::loadgen::FLOOD_RATE as usize),
        h.conns,
        h.streams,
        crate::loadgen::FLOOD_RATE,
        h.requests,
        h.conns,
        h.streams,
        h.requests,
        r.machine.cores,
    );
    header(out, &["pair", "loadgen req/s", "h2load req/s", "ratio"]);
    for (i, p) in h.pairs.iter().enumerate() {
        row(
            out,
            &[
                (i + 1).to_string(),
                format!("{:.0}", p.loadgen),
                format!("{:.0}", p.h2load),
                Unit::Ratio.format(p.loadgen / p.h2load),
            ],
        );
    }
    if !h.unknown.is_empty() {
        let _ = writeln!(out, "\nRuns that taught nothing:\n");
        for line in &h.unknown {
            let _ = writeln!(out, "- {line}");
        }
    }
    out.push('\n');
}

/// Where lameduck's instructions beyond bare hyper's go, from
/// `callgrind_annotate` on both servers at the commit that last changed it.
const CALLGRIND_NOTE: &str = "Where lameduck's extra instructions per HTTP/1.1 request \
    go (`callgrind_annotate --inclusive=yes` on both servers, 6,000 requests less 2,000; \
    about 2,000 in all, measured at 10,001 against 8,019): the `Drain` every request \
    carries in its extensions, about 450 (`http::Extensions` allocates its map, its table \
    and the boxed value, and frees them with the request); the request's tracking, about \
    420 (the guard's start and end: latency histogram, active-requests gauge, one clock \
    read; the response future and body wrappers, and the response's move into the \
    wrapped type); the socket wrapper's reads, about 220 (a clock read for each read that \
    brings bytes); tokio's timer wheel, about 190 (the connection's lazy header-read and \
    parking timers are pending, so every park of a worker reads the clock twice rather \
    than once); the connection task's `select!` over its shutdown futures, about 100; \
    most of the rest in hyper's HTTP/1 write path, which for the wrapped body is inlined \
    differently (about 370 more in `poll_write` besides the guard). Over h2c the same \
    costs weigh less against HTTP/2's own framing.";

fn callgrind_section(out: &mut String, r: &Results) {
    let c = &r.callgrind;
    let _ = writeln!(out, "## Instructions per request (callgrind)\n");
    let _ = writeln!(
        out,
        "Instructions executed per `GET /`, counted by valgrind's callgrind ({}) over every \
         thread of the server: a cost that does not depend on the machine's load. Each server \
         runs under callgrind twice per protocol, once serving {} requests and once {}, one \
         at a time on one connection (`h2load -c 1 -m 1 -n N`, with `--h1` for HTTP/1.1; \
         HTTP/2 is h2c with prior knowledge), then gets SIGTERM; the figure is the \
         difference between the two totals over the difference in requests, so that \
         start-up, the connection and the exit cancel out. lameduck runs with the options \
         of the throughput runs, bare hyper as `bare-hyper` (HTTP/1.1) and `bare-hyper --h2c`; \
         both are the release builds, allocating with jemalloc configured alike. The counts \
         repeat to within about 0.2% from run to run (timers and jemalloc's background \
         thread still run on the clock). A run that fails, or gets an answer other than a \
         2xx, makes its protocol's figures unknown, and `just bench-check` fails; so does a \
         ratio above {}.\n",
        c.valgrind,
        thousands(c.small as usize),
        thousands(c.big as usize),
        Unit::Ratio.format(INSTRUCTIONS_GOAL),
    );
    header(
        out,
        &[
            "protocol",
            "lameduck",
            "bare hyper",
            "ratio",
            "lameduck runs (requests: instructions)",
            "bare hyper runs",
        ],
    );
    let per_request = |v: Option<f64>| v.map_or("unknown".into(), |v| Unit::Instructions.format(v));
    let runs = |r: &crate::results::CallgrindRuns| {
        [r.small, r.big]
            .iter()
            .map(|run| {
                run.map_or("—".into(), |(n, ir)| {
                    format!("{}: {}", thousands(n as usize), thousands(ir as usize))
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for cost in &c.costs {
        row(
            out,
            &[
                cost.protocol.to_owned(),
                per_request(cost.lameduck()),
                per_request(cost.baseline()),
                cost.ratio()
                    .map_or("unknown".into(), |v| Unit::Ratio.format(v)),
                runs(&cost.lameduck),
                runs(&cost.baseline),
            ],
        );
    }
    let unknown: Vec<&String> = c.costs.iter().flat_map(|cost| &cost.unknown).collect();
    if !unknown.is_empty() {
        let _ = writeln!(out, "\nRuns that taught nothing:\n");
        for line in unknown {
            let _ = writeln!(out, "- {line}");
        }
    }
    let _ = writeln!(out, "\n{CALLGRIND_NOTE}\n");
}

fn method_section(out: &mut String, r: &Results) {
    let _ = writeln!(out, "## How it is measured\n");
    let _ = writeln!(
        out,
        "- Both servers are release builds from this repository: `lameduck serve` and \
         `benches/src/bin/bare-hyper.rs`, the smallest hyper 1.x server with the same \
         answer to `GET /` (status, `content-type`, body bytes), the same runtime (tokio \
         multi-thread, default worker count), the same allocator (jemalloc, configured \
         alike) and `TCP_NODELAY`. The harness checks the two \
         answers match before measuring.\n\
         - Everything runs on loopback on ports the kernel picks, wrk and the harness \
         sharing the machine's {} cores with the server under test; nothing is pinned.\n\
         - Idle connections are held by the harness without reading them, so it takes no \
         CPU from the server while they sit or while it shuts down.\n\
         - With the default `--idle-grace` (250ms) a keep-alive connection idle for longer \
         than the grace closes as soon as closing starts; one used more recently gets one \
         more response instead (the race that the grace avoids). The idle connections \
         here sit for 2 s, as pooled connections do, so the figure is the time to close \
         them, not the grace; the `--idle-grace 0s` row shows the same with no grace. \
         lameduck parks an HTTP/1 connection idle for 1 s (hyper lets go of it and its \
         buffers; the next request rebuilds them), so these are parked connections.\n\
         - The close-only baseline (`benches/src/bin/close-only.rs`) is a tokio server \
         with lameduck's runtime and worker count that answers one `GET /` per connection, \
         keeps the sockets and, on SIGTERM, only closes them, one task per worker, and \
         exits: the kernel's share of closing the connections (TCP close over loopback, \
         where the server's CPU also pays for the client side's FIN handling, and epoll \
         deregistration) and of exiting.\n\
         - Under load, wrk keeps {} connections busy; each gets its response with \
         `Connection: close`, and wrk's reconnections are refused once the listener \
         closes.\n\
         - In flight: {} connections each send `GET /work?ms=N` with N from 300 to 498; \
         once the server counts them all in flight it gets SIGTERM; every response must \
         be a 200 with `Connection: close`. A thread per connection stamps its response's \
         arrival, and a thread blocked in `waitpid` stamps the exit.\n\
         - Source: `benches/` (`cargo run --release -p lameduck-bench -- --help`).",
        r.machine.cores, r.setup.busy_connections, r.setup.in_flight
    );
}

/// The console summary: one line per figure.
pub fn console(figures: &[Figure]) -> String {
    let mut out = String::new();
    for f in figures {
        let Some(s) = f.summary() else {
            let _ = writeln!(out, "{}: not measured", f.name);
            continue;
        };
        let _ = writeln!(
            out,
            "{}: {} (spread {}, n={}; goal {}: {})",
            f.name,
            f.unit.format(s.median),
            f.unit.format(s.spread()),
            s.n,
            f.goal_text(),
            f.verdict()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::results::{
        Callgrind, CallgrindCost, CallgrindRuns, H2Speed, Memory, MetricsRender, Pair, Results,
        Setup, Shutdown, SpeedPair, Throughput,
    };
    use crate::wrk::Run;

    fn run(rps: f64) -> Run {
        Run {
            requests: (rps * 3.0) as u64,
            seconds: 3.0,
            p50_us: 40.0,
            p99_us: 900.0,
            errors: 0,
        }
    }

    fn results(ratio: f64) -> Results {
        Results {
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                kernel: "6.1.0".into(),
                rustc: "rustc 1.95.0".into(),
                wrk: "wrk 4.1.0".into(),
                h2load: "h2load nghttp2/1.52.0".into(),
                commit: "abc".into(),
                date: "2026-01-01 00:00 UTC".into(),
            },
            setup: Setup {
                run_seconds: 3.0,
                warmup_seconds: 1.0,
                wrk_threads: 2,
                idle_connections: 10_000,
                busy_connections: 1000,
                in_flight: 100,
                metrics_after: 1_000_000,
            },
            load_before: Some([1.0, 2.0, 3.0]),
            load_after: None,
            seconds: 180.0,
            throughput: vec![Throughput {
                connections: 10,
                pairs: (0..6)
                    .map(|i| Pair {
                        lameduck: run(100_000.0 * ratio + 2.0 * f64::from(i)),
                        baseline: run(100_000.0),
                    })
                    .collect(),
            }],
            shutdown: Shutdown {
                idle_ms: vec![1.0, 1.2, 1.1],
                idle_conns_ms: vec![30.0, 31.0, 29.0],
                idle_conns_zero_grace_ms: vec![30.0],
                busy_conns_ms: vec![10.0],
                busy_completed: vec![1000],
                in_flight_after_last_ms: vec![0.5],
                in_flight_total_ms: vec![500.0],
                close_only_ms: vec![20.0],
                graceful_hyper_ms: vec![40.0, 41.0, 39.0],
            },
            memory: Memory {
                lameduck_idle: vec![5.0 * MIB],
                lameduck_conns: vec![40.0 * MIB],
                baseline_idle: vec![4.0 * MIB],
                baseline_conns: vec![60.0 * MIB],
                close_only_conns: vec![8.0 * MIB],
            },
            metrics: MetricsRender {
                requests: 1_000_006.0,
                body_bytes: 5000,
                series: 80,
                metrics_us: vec![150.0, 160.0],
                livez_us: vec![50.0, 50.0],
            },
            h2_speed: H2Speed {
                conns: 4,
                streams: 32,
                requests: 300_000,
                pairs: [
                    (84_000.0, 160_000.0),
                    (90_000.0, 150_000.0),
                    (80_000.0, 170_000.0),
                ]
                .map(|(loadgen, h2load)| SpeedPair { loadgen, h2load })
                .to_vec(),
                unknown: Vec::new(),
            },
            callgrind: Callgrind {
                valgrind: "valgrind-3.19.0".into(),
                small: 2000,
                big: 6000,
                costs: vec![
                    cost("HTTP/1.1", 8_500, 8_000),
                    cost("HTTP/2 (h2c)", 26_000, 25_000),
                ],
            },
        }
    }

    /// Runs of 2000 and 6000 requests that cost `per_request` each, on top
    /// of start-up and exit.
    fn runs(per_request: u64) -> CallgrindRuns {
        CallgrindRuns {
            small: Some((2000, 14_000_000 + 2000 * per_request)),
            big: Some((6000, 14_000_000 + 6000 * per_request)),
        }
    }

    fn cost(protocol: &'static str, lameduck: u64, baseline: u64) -> CallgrindCost {
        CallgrindCost {
            protocol,
            lameduck: runs(lameduck),
            baseline: runs(baseline),
            unknown: Vec::new(),
        }
    }

    #[test]
    fn units_format() {
        assert_eq!(Unit::Ratio.format(0.9712), "0.971");
        assert_eq!(Unit::Millis.format(1.234), "1.23 ms");
        assert_eq!(Unit::Micros.format(101.6), "102 µs");
        assert_eq!(Unit::Bytes.format(5.5 * MIB), "5.5 MiB");
        assert_eq!(Unit::PerSecond.format(84_116.4), "84,116 req/s");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn a_good_run_meets_every_goal() {
        let figures = figures(&results(1.0));
        assert_eq!(figures.len(), 18);
        assert!(failures(&figures).is_empty(), "{:?}", failures(&figures));
        assert_eq!(figures[0].verdict(), Verdict::Meets);
        assert_eq!(
            figures[8].baseline,
            Some(Baseline {
                value: 4.0 * MIB,
                what: "bare hyper"
            })
        );
        assert_eq!(figures[2].baseline.as_ref().map(|b| b.value), Some(20.0));
        assert_eq!(figures[11].samples, vec![100.0, 110.0]);
        assert_eq!(figures[11].verdict(), Verdict::NoGoal);
    }

    #[test]
    fn a_slow_server_fails_the_check_by_name() {
        let figures = figures(&results(0.8));
        let failures = failures(&figures);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("Throughput"), "{}", failures[0]);
        assert!(failures[0].contains("≥ 0.970"), "{}", failures[0]);
    }

    #[test]
    fn relative_goals_follow_their_baselines() {
        let mut r = results(1.0);
        // Within the absolute 64 MiB, but more than bare hyper's 40.
        r.memory.lameduck_conns = vec![50.0 * MIB];
        r.memory.baseline_conns = vec![40.0 * MIB];
        r.shutdown.idle_conns_ms = vec![60.0, 62.0, 58.0];
        let failures = failures(&figures(&r));
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures[0].contains("hyper-util graceful shutdown: 1.500"),
            "{}",
            failures[0]
        );
        assert!(
            failures[1].contains("lameduck / bare hyper: 1.250"),
            "{}",
            failures[1]
        );
    }

    #[test]
    fn memory_also_has_an_absolute_goal() {
        let mut r = results(1.0);
        // Less than bare hyper's 100, but over 64 MiB.
        r.memory.lameduck_conns = vec![70.0 * MIB];
        r.memory.baseline_conns = vec![100.0 * MIB];
        let failures = failures(&figures(&r));
        assert_eq!(
            failures,
            vec![
                "RSS, 10,000 idle keep-alive connections: 70.0 MiB misses ≤ 64.0 MiB by 6.0 MiB, \
                 more than its spread 0.0 MiB"
            ]
        );
    }

    #[test]
    fn a_goal_without_samples_fails() {
        let mut r = results(1.0);
        r.shutdown.idle_ms.clear();
        let figures = figures(&r);
        let failures = failures(&figures);
        assert_eq!(
            failures,
            vec!["Shutdown, idle: SIGTERM to exit: not measured"]
        );
    }

    #[test]
    fn the_load_generator_is_judged_on_its_http2_rate() {
        let all = figures(&results(1.0));
        let (speed, ratio) = (&all[12], &all[13]);
        assert_eq!(
            speed.name,
            "Load generator alone, HTTP/2 `GET /` at full speed, 4 connections × 32 streams"
        );
        assert_eq!(speed.verdict(), Verdict::Meets);
        assert_eq!(speed.summary().unwrap().median, 84_000.0);
        assert_eq!(speed.baseline.as_ref().map(|b| b.value), Some(160_000.0));
        assert_eq!(ratio.verdict(), Verdict::NoGoal);
        assert_eq!(ratio.summary().unwrap().median, 0.525);

        let mut slow = results(1.0);
        for p in &mut slow.h2_speed.pairs {
            p.loadgen /= 5.0;
        }
        let missed = failures(&figures(&slow));
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert!(
            missed[0].contains("16,800 req/s misses ≥ 20,000 req/s by 3,200 req/s"),
            "{}",
            missed[0]
        );
    }

    #[test]
    fn a_run_that_taught_nothing_makes_the_speed_unknown_and_fails() {
        let mut r = results(1.0);
        r.h2_speed
            .unknown
            .push("pair 2: h2load printed no `finished in ` line".into());
        let all = figures(&r);
        assert!(all[12].summary().is_none());
        assert!(all[12].baseline.is_none());
        assert!(all[13].summary().is_none());
        assert_eq!(
            failures(&all),
            vec![
                "Load generator alone, HTTP/2 `GET /` at full speed, 4 connections × 32 streams: \
                 not measured"
            ]
        );
        let text = markdown(&r);
        assert!(
            text.contains("- pair 2: h2load printed no `finished in ` line"),
            "{text}"
        );
        // No pair at all is no better.
        r.h2_speed.unknown.clear();
        r.h2_speed.pairs.clear();
        assert_eq!(failures(&figures(&r)).len(), 1);
    }

    #[test]
    fn instructions_per_request_are_judged_on_the_ratio() {
        let all = figures(&results(1.0));
        let (ratio, count) = (&all[14], &all[15]);
        assert_eq!(
            ratio.name,
            "Instructions per `GET /`, lameduck / bare hyper, HTTP/1.1 (callgrind)"
        );
        assert_eq!(ratio.samples, vec![1.0625]);
        assert_eq!(ratio.verdict(), Verdict::Meets);
        assert_eq!(count.samples, vec![8_500.0]);
        assert_eq!(count.verdict(), Verdict::NoGoal);
        assert_eq!(count.baseline.as_ref().map(|b| b.value), Some(8_000.0));
        assert_eq!(all[16].samples, vec![1.04]);

        let mut heavy = results(1.0);
        heavy.callgrind.costs[1] = cost("HTTP/2 (h2c)", 27_600, 25_000);
        let missed = failures(&figures(&heavy));
        assert_eq!(
            missed,
            vec![
                "Instructions per `GET /`, lameduck / bare hyper, HTTP/2 (h2c) (callgrind): \
                 1.104 misses ≤ 1.100 by 0.004, more than its spread 0.000"
            ]
        );
    }

    #[test]
    fn a_callgrind_run_that_taught_nothing_fails() {
        let mut r = results(1.0);
        r.callgrind.costs[0].baseline.big = None;
        r.callgrind.costs[0]
            .unknown
            .push("HTTP/1.1, bare hyper, 6000 requests: h2load got no answer".into());
        let all = figures(&r);
        assert!(all[14].summary().is_none());
        assert!(all[15].summary().is_none());
        assert!(all[15].baseline.is_none());
        assert_eq!(
            failures(&all),
            vec![
                "Instructions per `GET /`, lameduck / bare hyper, HTTP/1.1 (callgrind): \
                 not measured"
            ]
        );
        let text = markdown(&r);
        assert!(
            text.contains("- HTTP/1.1, bare hyper, 6000 requests: h2load got no answer"),
            "{text}"
        );
        assert!(
            text.contains("| HTTP/1.1 | unknown | unknown | unknown |"),
            "{text}"
        );
        // An error alone, with every count read, still makes it unknown.
        r.callgrind.costs[0].baseline = runs(8_000);
        assert_eq!(failures(&figures(&r)).len(), 1);
        // So does a protocol missing from the run: its figures are there,
        // not measured.
        r.callgrind.costs.remove(0);
        let all = figures(&r);
        assert_eq!(all.len(), 18);
        assert_eq!(
            failures(&all),
            vec![
                "Instructions per `GET /`, lameduck / bare hyper, HTTP/1.1 (callgrind): \
                 not measured"
            ]
        );
    }

    #[test]
    fn the_markdown_has_every_figure_and_the_machine() {
        let r = results(1.0);
        let text = markdown(&r);
        for f in figures(&r) {
            assert!(text.contains(&f.name), "{}", f.name);
        }
        for needle in [
            "Test CPU",
            "| cores | 2 |",
            "Linux 6.1.0",
            "rustc 1.95.0",
            "wrk 4.1.0",
            "1.00 / 2.00 / 3.00 at the start, unknown at the end",
            "| h2load | h2load nghttp2/1.52.0 |",
            "| 2 | 90000 | 150000 | 0.600 |",
            "84,000 req/s",
            "≥ 20,000 req/s",
            "160,000 req/s (h2load)",
            "| 10 | 6 | 100005 | 100000 | 1.000 |",
            "≤ 1.000",
            "≥ 0.970",
            "interquartile range",
            "valgrind-3.19.0",
            "| HTTP/1.1 | 8,500 | 8,000 | 1.062 | 2,000: 31,000,000, 6,000: 65,000,000 | \
             2,000: 30,000,000, 6,000: 62,000,000 |",
            "8,500 | 0 | 8,500 – 8,500 | 1 | none set | no goal | 8,000 (bare hyper)",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
        // Every row of a table has as many cells as the table's header.
        let mut columns = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let cells = line.matches('|').count();
            assert_eq!(*columns.get_or_insert(cells), cells, "{line}");
        }
    }

    #[test]
    fn the_console_names_the_verdicts() {
        let text = console(&figures(&results(0.8)));
        assert!(text.contains("MISSES"), "{text}");
        assert!(text.lines().count() == 18, "{text}");
    }
}
