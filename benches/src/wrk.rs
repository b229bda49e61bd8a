//! Running `wrk` and reading its figures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::tool;

/// The Lua script that makes wrk print its figures as JSON.
pub const REPORT_SCRIPT: &str = include_str!("../wrk/report.lua");

/// One wrk run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Responses received.
    pub requests: u64,
    /// How long the run took, in seconds.
    pub seconds: f64,
    /// Median latency, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: f64,
    /// Connect, read, write errors, non-2xx/3xx answers and timeouts, summed.
    pub errors: u64,
}

impl Run {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Reads the `BENCH {...}` line the report script prints.
pub fn parse(output: &str) -> anyhow::Result<Run> {
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("BENCH "))
        .context("wrk printed no BENCH line")?;
    let v: Value = serde_json::from_str(line).context("wrk's BENCH line is not JSON")?;
    let int = |key: &str| {
        v[key]
            .as_u64()
            .with_context(|| format!("wrk's BENCH line has no {key}"))
    };
    let seconds = int("duration_us")? as f64 / 1e6;
    if seconds <= 0.0 {
        bail!("wrk ran for no time");
    }
    Ok(Run {
        requests: int("requests")?,
        seconds,
        p50_us: int("p50_us")? as f64,
        p99_us: int("p99_us")? as f64,
        errors: [
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeouts",
        ]
        .iter()
        .map(|key| int(key))
        .sum::<anyhow::Result<u64>>()?,
    })
}

/// How to run wrk.
#[derive(Clone, Debug)]
pub struct Wrk {
    program: PathBuf,
    script: PathBuf,
    /// wrk's threads (`-t`).
    pub threads: u32,
}

impl Wrk {
    /// Uses `program`, writing the report script into `dir`.
    pub fn new(program: &Path, dir: &Path, threads: u32) -> anyhow::Result<Self> {
        let script = dir.join("report.lua");
        std::fs::write(&script, REPORT_SCRIPT)
            .with_context(|| format!("cannot write {}", script.display()))?;
        Ok(Self {
            program: program.to_owned(),
            script,
            threads,
        })
    }

    fn command(&self, addr: SocketAddr, connections: u32, duration: Duration) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg(format!("-t{}", self.threads.min(connections)))
            .arg(format!("-c{connections}"))
            // wrk's durations are whole seconds (it knows no ms).
            .arg(format!("-d{}s", duration.as_secs_f64().ceil().max(1.0)))
            .arg("-s")
            .arg(&self.script)
            .arg(format!("http://{addr}/"));
        command
    }

    /// Runs wrk against `GET /` on `addr` and waits for its figures.
    pub fn run(
        &self,
        addr: SocketAddr,
        connections: u32,
        duration: Duration,
    ) -> anyhow::Result<Run> {
        parse(&tool::stdout_of(&mut self.command(
            addr,
            connections,
            duration,
        ))?)
    }

    /// Starts wrk in the background, output discarded, for load during
    /// another measurement. The caller ends it.
    pub fn spawn(
        &self,
        addr: SocketAddr,
        connections: u32,
        duration: Duration,
    ) -> anyhow::Result<Child> {
        self.command(addr, connections, duration)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", self.program.display()))
    }

    /// `wrk -v`'s first line (wrk prints it and exits non-zero).
    pub fn version(&self) -> String {
        Command::new(&self.program)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().map(|l| {
                    // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
                    l.split(" Copyright").next().unwrap_or(l).trim().to_owned()
                })
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bench_line() {
        let output = "Running 3s test @ http://127.0.0.1:1/\n  2 threads and 10 connections\n\
            BENCH {\"requests\":300000,\"duration_us\":3000000,\"connect_errors\":0,\"read_errors\":1,\
            \"write_errors\":0,\"status_errors\":2,\"timeouts\":0,\"p50_us\":44,\"p99_us\":3570}\n";
        let run = parse(output).unwrap();
        assert_eq!(run.requests, 300_000);
        assert_eq!(run.seconds, 3.0);
        assert_eq!(run.rps(), 100_000.0);
        assert_eq!((run.p50_us, run.p99_us), (44.0, 3570.0));
        assert_eq!(run.errors, 3);
    }

    #[test]
    fn refuses_output_without_figures() {
        assert!(parse("Running 3s test\n").is_err());
        assert!(parse("BENCH {\"requests\":1}\n").is_err());
        assert!(parse("BENCH not json\n").is_err());
    }

    #[test]
    fn the_script_prints_what_parse_reads() {
        for key in [
            "requests",
            "duration_us",
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeouts",
            "p50_us",
            "p99_us",
        ] {
            assert!(REPORT_SCRIPT.contains(&format!("\"{key}\"")), "{key}");
        }
        assert!(
            !REPORT_SCRIPT.contains("response ="),
            "a response hook slows wrk down"
        );
    }
}
