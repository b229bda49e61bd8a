//! The `loadgen` binary: flags, signals, progress lines, report output.

mod cli;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;
use loadgen::{ControlServer, Handle, LoadGen, Report};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::from_env();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let config = args.config();
    if let Err(e) = config.validate() {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit();
    }

    let run = match LoadGen::new(config).await {
        Ok(run) => run,
        // Pointing HTTP/2 at an HTTP/1.1-only server is a usage error.
        Err(e @ loadgen::Error::NotH2c { .. }) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    let handle = run.handle();
    // Before anything is announced, so that no signal can kill the process
    // without a report.
    let stop = stop_on_signals(handle.clone())?;
    let _control = match args.control_listen {
        Some(addr) => {
            let server = ControlServer::bind(addr, handle.clone()).await?;
            let line = serde_json::json!({ "control_listen": server.local_addr().to_string() });
            eprintln!("{line}");
            Some(server)
        }
        None => None,
    };
    let progress = args.progress.then(|| tokio::spawn(print_progress(handle)));

    let report = run.run(stop).await?;
    if let Some(task) = progress {
        // Awaited, so that no progress line can be on its way to stderr
        // while the report is written.
        task.abort();
        let _ = task.await;
    }
    eprintln!("{}", summary(&report));
    write_report(&report, &args)
}

/// Resolves on the first SIGTERM or SIGINT; a second one aborts what is
/// still in flight, so an impatient operator gets the report at once.
fn stop_on_signals(handle: Handle) -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received: stopping, in-flight requests may finish");
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: aborting in-flight requests");
            handle.abort();
        });
    })
}

async fn print_progress(handle: Handle) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let line = serde_json::to_string(&handle.progress()).expect("progress serialises");
        eprintln!("{line}");
    }
}

fn summary(r: &Report) -> String {
    let mut line = format!(
        "loadgen: {} sent in {:.1}s ({}), ok {}, failures {}, aborted {}, not started {}, late {}",
        r.sent,
        r.elapsed_ms as f64 / 1000.0,
        serde_json::to_string(&r.stop_reason).unwrap_or_default(),
        r.outcomes.ok,
        r.failures,
        r.outcomes.aborted,
        r.not_started,
        r.late_start,
    );
    if r.config.h2_fraction > 0.0 {
        line.push_str(&format!(
            ", refused and resent {}",
            r.outcomes.refused_resent
        ));
    }
    if let (Some(b), Some(schedule)) = (&r.bursts, &r.config.bursts) {
        line.push_str(&format!(
            ", bursts {} of {} x {} (largest spread {} ms, latest first start {} ms)",
            b.started, schedule.count, schedule.size, b.max_spread_ms, b.max_start_delay_ms
        ));
    }
    let post = &r.methods.post;
    if post.sent > 0 {
        line.push_str(&format!(
            ", POST {} sent {} ok {} failed ({} wrong echo)",
            post.sent,
            post.outcomes.ok,
            post.outcomes.failures(),
            post.outcomes.wrong_echo
        ));
    }
    let modes = [
        ("keep-alive", &r.modes.keepalive),
        ("fresh", &r.modes.fresh),
        ("http2", &r.modes.http2),
    ];
    if modes.iter().filter(|(_, m)| m.sent > 0).count() > 1 {
        let split: Vec<String> = modes
            .iter()
            .filter(|(_, m)| m.sent > 0)
            .map(|(name, m)| {
                let mut s = format!(
                    "{name} {} sent {} ok {} failed",
                    m.sent,
                    m.outcomes.ok,
                    m.outcomes.failures()
                );
                if m.outcomes.refused_resent > 0 {
                    s.push_str(&format!(" {} refused-resent", m.outcomes.refused_resent));
                }
                s
            })
            .collect();
        line.push_str(&format!(" [{}]", split.join("; ")));
    }
    for (name, s) in [("sse", &r.streams.sse), ("ws", &r.streams.ws)] {
        if s.clients > 0 {
            line.push_str(&format!(
                "; {name} streams: {} opened, {} ended clean, {} reconnects, {} closed at the end, {} failed",
                s.opened, s.ended_clean, s.reconnects, s.closed_by_client, s.failed
            ));
        }
    }
    line
}

fn write_report(report: &Report, args: &Args) -> anyhow::Result<()> {
    let mut text = if args.pretty {
        serde_json::to_string_pretty(report)?
    } else {
        report.to_json_line()
    };
    text.push('\n');
    match &args.report {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the report to {}", path.display())),
        // The lock keeps warnings from other threads out of the report.
        None if args.report_on_stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes())?;
            err.flush().context("writing the report to stderr")
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush().context("writing the report to stdout")
        }
    }
}
