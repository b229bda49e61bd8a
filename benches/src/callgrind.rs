//! Running a server under valgrind's callgrind and reading how many
//! instructions it executed: a per-request cost that does not depend on the
//! machine's load. Every thread of the process is counted, in one total.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};

use crate::h2load::H2load;
use crate::process::{self, Server};
use crate::tool;

/// The total instruction count of a callgrind output file: its `summary:`
/// line (the whole run, all threads), else its `totals:` line. With several
/// events recorded, the first (`Ir`, instructions, unless told otherwise).
pub fn parse_total(out: &str) -> anyhow::Result<u64> {
    let line = |prefix: &str| out.lines().find_map(|l| l.strip_prefix(prefix));
    let (name, values) = match (line("summary:"), line("totals:")) {
        (Some(values), _) => ("summary", values),
        (None, Some(values)) => ("totals", values),
        (None, None) => anyhow::bail!("the callgrind output has no `summary:` or `totals:` line"),
    };
    values
        .split_whitespace()
        .next()
        .with_context(|| format!("the callgrind `{name}:` line is empty"))?
        .parse()
        .with_context(|| format!("the callgrind `{name}:` line is not a count"))
}

/// Instructions per request from two runs that differ only in how many
/// requests they served: start-up, the connection and the exit cancel out.
pub fn per_request(small: (u64, u64), big: (u64, u64)) -> anyhow::Result<f64> {
    let ((n_small, ir_small), (n_big, ir_big)) = (small, big);
    ensure!(
        n_big > n_small,
        "the larger run served {n_big} requests, the smaller {n_small}"
    );
    ensure!(
        ir_big > ir_small,
        "the larger run executed {ir_big} instructions, the smaller {ir_small}"
    );
    Ok((ir_big - ir_small) as f64 / (n_big - n_small) as f64)
}

/// The protocol `GET /` is sent over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1, keep-alive.
    Http1,
    /// HTTP/2 over cleartext, prior knowledge (h2c).
    H2c,
}

impl Protocol {
    /// Every protocol measured, in the report's order.
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::H2c];

    /// As the report names it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::H2c => "HTTP/2 (h2c)",
        }
    }

    /// As a file name has it.
    pub fn slug(self) -> &'static str {
        match self {
            Protocol::Http1 => "h1",
            Protocol::H2c => "h2c",
        }
    }
}

/// How to run valgrind.
#[derive(Clone, Debug)]
pub struct Valgrind {
    program: PathBuf,
}

impl Valgrind {
    /// Uses `program`.
    pub fn new(program: &Path) -> Self {
        Self {
            program: program.to_owned(),
        }
    }

    /// `valgrind --version`, or `unknown`.
    pub fn version(&self) -> String {
        tool::first_line_of(&self.program, &["--version"]).unwrap_or_else(|| "unknown".to_owned())
    }

    /// Starts `program args` under callgrind, writing its counts to `out`
    /// (and valgrind's own messages next to it, not to the terminal), and
    /// waits for its `serving` line. The counts are written when it exits.
    pub fn start(
        &self,
        out: &Path,
        program: &Path,
        args: &[&str],
    ) -> anyhow::Result<CallgrindServer> {
        let out_file = format!("--callgrind-out-file={}", out.display());
        let log_file = format!("--log-file={}", out.with_extension("log").display());
        let program_arg = program.to_string_lossy();
        let mut all = vec![
            "--tool=callgrind",
            out_file.as_str(),
            log_file.as_str(),
            program_arg.as_ref(),
        ];
        all.extend_from_slice(args);
        let server = process::start(&self.program, &all).with_context(|| {
            format!(
                "{} under callgrind (`{} --version`: {})",
                program.display(),
                self.program.display(),
                self.version()
            )
        })?;
        Ok(CallgrindServer {
            server,
            out: out.to_owned(),
        })
    }
}

/// A server running under callgrind.
#[derive(Debug)]
pub struct CallgrindServer {
    server: Server,
    out: PathBuf,
}

impl CallgrindServer {
    /// Sends `requests` `GET /`, one at a time on one connection, with
    /// h2load, and checks every one was answered with a 2xx.
    pub fn drive(&self, h2load: &H2load, protocol: Protocol, requests: u64) -> anyhow::Result<()> {
        let run = h2load.sequential(self.server.listen, protocol == Protocol::Http1, requests)?;
        run.learned()?;
        ensure!(
            run.done == requests,
            "h2load got {} answers to {requests} requests",
            run.done
        );
        Ok(())
    }

    /// Stops the server with SIGTERM and reads its total instruction count.
    /// `graceful`: it must exit 0 (a server without a SIGTERM handler dies
    /// of it, and callgrind still writes its counts).
    pub fn finish(mut self, graceful: bool) -> anyhow::Result<u64> {
        let exit = self.server.terminate()?;
        ensure!(
            !graceful || exit.status.success(),
            "the server exited with {} under callgrind",
            exit.status
        );
        let text = std::fs::read_to_string(&self.out)
            .with_context(|| format!("no callgrind output at {}", self.out.display()))?;
        parse_total(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head and tail of `callgrind.out` for `lameduck serve` after 2000
    /// `GET /` (valgrind 3.19), most cost lines left out.
    const SAMPLE: &str = "# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 18481
cmd:  /work/target/release/lameduck serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
part: 1


desc: I1 cache: 
desc: D1 cache: 
desc: LL cache: 

desc: Timerange: Basic block 0 - 3741880
desc: Trigger: Program termination

positions: line
events: Ir
summary: 22191432


ob=(1) /work/target/release/lameduck
fl=(1) ???
fn=(1) tokio::runtime::task::raw::poll
0 1042

totals: 22191603
";

    #[test]
    fn reads_the_summary_line() {
        assert_eq!(parse_total(SAMPLE).unwrap(), 22_191_432);
    }

    #[test]
    fn falls_back_to_the_totals_line() {
        let without = SAMPLE.replace("summary: 22191432\n", "");
        assert_eq!(parse_total(&without).unwrap(), 22_191_603);
    }

    #[test]
    fn takes_the_first_event_of_several() {
        let two = SAMPLE
            .replace("events: Ir\n", "events: Ir Dr\n")
            .replace("summary: 22191432", "summary: 22191432 7300000");
        assert_eq!(parse_total(&two).unwrap(), 22_191_432);
    }

    #[test]
    fn refuses_output_without_a_count() {
        assert!(parse_total("").is_err());
        let neither = SAMPLE
            .replace("summary: 22191432\n", "")
            .replace("totals: 22191603\n", "");
        assert!(parse_total(&neither).is_err());
        let empty = SAMPLE.replace("summary: 22191432", "summary:");
        assert!(parse_total(&empty).is_err());
        let garbled = SAMPLE.replace("summary: 22191432", "summary: 22x");
        assert!(parse_total(&garbled).is_err());
    }

    #[test]
    fn per_request_cancels_start_and_exit() {
        // 14M to start and exit, 10,150 per request.
        let at = |n: u64| (n, 14_000_000 + 10_150 * n);
        assert_eq!(per_request(at(2000), at(6000)).unwrap(), 10_150.0);
        assert!(per_request(at(6000), at(2000)).is_err());
        assert!(per_request((2000, 5), (6000, 5)).is_err());
    }
}
