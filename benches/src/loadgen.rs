//! Running the load generator (`crates/loadgen`) alone at full speed and
//! reading its JSON report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::tool;

/// The open-loop rate asked for: far above what one machine can send, so
/// that every request is due at once and the run measures the ceiling.
pub const FLOOD_RATE: u64 = 1_000_000;

/// What one report says.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Requests started.
    pub sent: u64,
    /// Of those, sent as HTTP/2 streams.
    pub http2: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// Failed requests, every kind.
    pub failures: u64,
    /// Requests left unstarted or aborted at the end of the drain.
    pub unfinished: u64,
    /// From the start of the schedule to the end of the drain, milliseconds.
    pub elapsed_ms: u64,
}

impl Run {
    /// Requests per second answered with a 2xx, or why the run taught
    /// nothing: no request, a failure, a request not over HTTP/2.
    pub fn learned(&self) -> anyhow::Result<f64> {
        ensure!(self.sent > 0, "loadgen sent no request");
        ensure!(
            self.failures == 0,
            "{} of loadgen's requests failed",
            self.failures
        );
        ensure!(
            self.unfinished == 0,
            "{} of loadgen's requests were not finished",
            self.unfinished
        );
        ensure!(
            self.http2 == self.sent && self.ok == self.sent,
            "of loadgen's {} requests, {} went over HTTP/2 and {} got a 2xx",
            self.sent,
            self.http2,
            self.ok
        );
        ensure!(self.elapsed_ms > 0, "loadgen's run took no time");
        Ok(self.ok as f64 * 1000.0 / self.elapsed_ms as f64)
    }
}

/// Reads the report (one JSON object).
pub fn parse(report: &str) -> anyhow::Result<Run> {
    let v: Value = serde_json::from_str(report.trim()).context("loadgen's report is not JSON")?;
    let int = |pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_u64)
            .with_context(|| format!("loadgen's report has no {pointer}"))
    };
    Ok(Run {
        sent: int("/sent")?,
        http2: int("/modes/http2/sent")?,
        ok: int("/outcomes/ok")?,
        failures: int("/failures")?,
        unfinished: int("/not_started")? + int("/outcomes/aborted")?,
        elapsed_ms: int("/elapsed_ms")?,
    })
}

/// How to run the load generator.
#[derive(Clone, Debug)]
pub struct Loadgen {
    program: PathBuf,
}

impl Loadgen {
    /// Uses `program`.
    pub fn new(program: &Path) -> Self {
        Self {
            program: program.to_owned(),
        }
    }

    /// Sends `requests` `GET /` to `addr` as fast as it can, every one an
    /// HTTP/2 stream on `conns` connections of `streams` concurrent streams
    /// each, and reads the report.
    pub fn flood_h2(
        &self,
        addr: SocketAddr,
        conns: u32,
        streams: u32,
        requests: u64,
    ) -> anyhow::Result<Run> {
        let stdout = tool::stdout_of(
            Command::new(&self.program)
                .args(["--target", &addr.to_string(), "--http2"])
                .args(["--h2-conns", &conns.to_string()])
                .args(["--h2-streams", &streams.to_string()])
                .args(["--rate", &FLOOD_RATE.to_string()])
                .args(["--max-requests", &requests.to_string()])
                .args(["--slow-fraction", "0", "--post-fraction", "0"])
                // Its flags only: every flag also reads a `LOADGEN_*` variable.
                .env_clear(),
        )?;
        parse(&stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields read, from a real report of `loadgen --http2 --h2-conns 4
    /// --h2-streams 32 --rate 200000 --duration 3s --slow-fraction 0`.
    fn report(ok: u64, failures: u64, http2: u64) -> String {
        format!(
            r#"{{"version":3,"elapsed_ms":7133,"stop_reason":"duration","scheduled":600000,
            "sent":600000,"not_started":0,"late_start":596962,"max_start_delay_ms":4131.932,
            "outcomes":{{"ok":{ok},"status":{{}},"connect_refused":0,"connect_error":0,"reset":{failures},
            "timeout":0,"other":0,"aborted":0,"refused_resent":0}},"failures":{failures},
            "modes":{{"keepalive":{{"sent":0}},"fresh":{{"sent":0}},"http2":{{"sent":{http2}}}}}}}"#
        )
    }

    #[test]
    fn reads_the_report() {
        let run = parse(&report(600_000, 0, 600_000)).unwrap();
        assert_eq!(
            run,
            Run {
                sent: 600_000,
                http2: 600_000,
                ok: 600_000,
                failures: 0,
                unfinished: 0,
                elapsed_ms: 7133,
            }
        );
        assert!((run.learned().unwrap() - 84_116.1).abs() < 0.1);
    }

    #[test]
    fn failures_or_other_protocols_taught_nothing() {
        let failed = parse(&report(599_990, 10, 600_000)).unwrap();
        assert_eq!(
            failed.learned().unwrap_err().to_string(),
            "10 of loadgen's requests failed"
        );
        let http1 = parse(&report(600_000, 0, 0)).unwrap();
        assert!(http1.learned().is_err());
        let nothing = Run {
            sent: 0,
            ..parse(&report(0, 0, 0)).unwrap()
        };
        assert_eq!(
            nothing.learned().unwrap_err().to_string(),
            "loadgen sent no request"
        );
    }

    #[test]
    fn refuses_reports_without_figures() {
        assert!(parse("").is_err());
        assert!(parse("error: target does not speak h2c").is_err());
        assert!(parse(r#"{"sent":1}"#).is_err());
    }
}
