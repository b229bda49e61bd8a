//! The shutdown's summary as one line of JSON, written at exit to the file
//! `--termination-log` names. Under Kubernetes that file is the container's
//! termination message (`/dev/termination-log`, writable even with a
//! read-only root filesystem): `kubectl describe pod` shows it, and it stays
//! in the pod's status after the process is gone.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use lameduck::ShutdownReport;
use serde_json::{Value, json};

/// Scrapers listed at most: Kubernetes keeps 4 KiB of a termination message.
const MAX_SCRAPERS: usize = 32;

/// The summary of `report`: outcome, the signal's wall-clock time, the
/// shutdown's duration and counts, and the wait for the final scrape.
pub fn summary(report: &ShutdownReport) -> Value {
    let linger = &report.linger;
    let scrapers: Vec<Value> = linger
        .scrapers
        .iter()
        .take(MAX_SCRAPERS)
        .map(|s| json!({ "address": s.address.to_string(), "scraped": s.scraped }))
        .collect();
    let signal_unix_ms = report
        .signalled_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, millis);
    json!({
        "outcome": if report.is_forced() { "forced" } else { "clean" },
        "signal_unix_ms": signal_unix_ms,
        "duration_ms": millis(report.duration),
        "completed": report.completed,
        "aborted": report.aborted,
        "aborted_upgraded": report.aborted_upgraded,
        "linger_ms": millis(linger.duration),
        "scrapers": scrapers,
        "scrapers_not_listed": linger.scrapers.len().saturating_sub(MAX_SCRAPERS),
    })
}

/// Writes the summary of `report` to `path`, one line.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write(path: &Path, report: &ShutdownReport) -> io::Result<()> {
    std::fs::write(path, format!("{}\n", summary(report)))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
