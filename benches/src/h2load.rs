//! Running `h2load` (nghttp2's HTTP/2 benchmark client) and reading its
//! figures: the baseline of the load generator's HTTP/2 speed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

use crate::tool;

/// One h2load run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Requests per second, as h2load printed it.
    pub rps: f64,
    /// Requests answered.
    pub done: u64,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests h2load counted as failed (errored and timed out included).
    pub failed: u64,
}

impl Run {
    /// The run's rate, or why it taught nothing: no request answered, or
    /// some failed or got another status than 2xx.
    pub fn learned(&self) -> anyhow::Result<f64> {
        ensure!(self.done > 0, "h2load got no answer");
        ensure!(
            self.failed == 0,
            "{} of h2load's requests failed",
            self.failed
        );
        ensure!(
            self.ok == self.done,
            "{} of h2load's {} answers were not 2xx",
            self.done - self.ok,
            self.done
        );
        ensure!(self.rps > 0.0, "h2load measured no rate");
        Ok(self.rps)
    }
}

/// The count `name` of a line of `N name` fields, such as
/// `20 total, 20 started, 20 done, 20 succeeded, 0 failed, ...`.
fn count(line: &str, name: &str) -> anyhow::Result<u64> {
    line.split(',')
        .find_map(|field| field.trim().strip_suffix(name)?.trim().parse().ok())
        .with_context(|| format!("h2load printed no `{name}` count"))
}

/// Reads h2load's summary: `finished in 1.23s, 162701.23 req/s, 5.59MB/s`,
/// then the `requests:` and `status codes:` lines.
pub fn parse(output: &str) -> anyhow::Result<Run> {
    let line = |prefix: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .with_context(|| format!("h2load printed no `{prefix}` line"))
    };
    let rps = line("finished in ")?
        .split(", ")
        .find_map(|field| field.strip_suffix(" req/s"))
        .context("h2load's `finished in` line has no req/s")?
        .parse()
        .context("h2load's req/s is not a number")?;
    let requests = line("requests: ")?;
    Ok(Run {
        rps,
        done: count(requests, "done")?,
        ok: count(line("status codes: ")?, "2xx")?,
        failed: count(requests, "failed")?,
    })
}

/// How to run h2load.
#[derive(Clone, Debug)]
pub struct H2load {
    program: PathBuf,
}

impl H2load {
    /// Uses `program`.
    pub fn new(program: &Path) -> Self {
        Self {
            program: program.to_owned(),
        }
    }

    /// Sends `requests` `GET /` to `addr` over h2c with prior knowledge, on
    /// `conns` connections of `streams` concurrent streams each, and waits
    /// for its figures.
    pub fn run(
        &self,
        addr: SocketAddr,
        conns: u32,
        streams: u32,
        requests: u64,
    ) -> anyhow::Result<Run> {
        self.run_args(&[
            format!("--clients={conns}"),
            format!("--max-concurrent-streams={streams}"),
            format!("--requests={requests}"),
            format!("http://{addr}/"),
        ])
    }

    /// Sends `requests` `GET /` to `addr` one at a time on one connection:
    /// over HTTP/1.1 with `http1`, else over h2c with prior knowledge.
    pub fn sequential(&self, addr: SocketAddr, http1: bool, requests: u64) -> anyhow::Result<Run> {
        let mut args = vec![
            "--clients=1".to_owned(),
            "--max-concurrent-streams=1".to_owned(),
            format!("--requests={requests}"),
        ];
        if http1 {
            args.push("--h1".to_owned());
        }
        args.push(format!("http://{addr}/"));
        self.run_args(&args)
    }

    fn run_args(&self, args: &[String]) -> anyhow::Result<Run> {
        parse(&tool::stdout_of(Command::new(&self.program).args(args))?)
    }

    /// `h2load --version`'s first line.
    pub fn version(&self) -> String {
        tool::first_line_of(&self.program, &["--version"]).unwrap_or_else(|| "unknown".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `h2load -c 4 -m 32 -n 200000 http://127.0.0.1:18181/` against
    /// `bare-hyper --h2c`, on the 2-core benchmark machine.
    const SAMPLE: &str = "starting benchmark...
spawning thread #0: 4 total client(s). 200000 total requests
Application protocol: h2c
progress: 10% done
progress: 20% done
progress: 30% done
progress: 40% done
progress: 50% done
progress: 60% done
progress: 70% done
progress: 80% done
progress: 90% done
progress: 100% done

finished in 1.23s, 162701.23 req/s, 5.59MB/s
requests: 200000 total, 200000 started, 200000 done, 200000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 200000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 6.87MB (7200480) total, 1.53MB (1600260) headers (space savings 91.67%), 1.91MB (2000000) data
                     min         max         mean         sd        +/- sd
time for request:       16us      9.18ms       679us       468us    90.87%
time for connect:      123us       438us       244us       136us    75.00%
time to 1st byte:      977us      1.93ms      1.44ms       532us   100.00%
req/s           :   40683.92    41263.81    40835.55      285.58    75.00%
";

    /// The same command against a closed port: h2load still exits 0.
    const REFUSED: &str = "starting benchmark...
spawning thread #0: 4 total client(s). 1000 total requests

finished in 461us, 0.00 req/s, 0B/s
requests: 1000 total, 0 started, 0 done, 0 succeeded, 1000 failed, 1000 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
";

    #[test]
    fn reads_the_summary() {
        let run = parse(SAMPLE).unwrap();
        assert_eq!(
            run,
            Run {
                rps: 162_701.23,
                done: 200_000,
                ok: 200_000,
                failed: 0,
            }
        );
        assert_eq!(run.learned().unwrap(), 162_701.23);
    }

    #[test]
    fn a_run_without_answers_taught_nothing() {
        let run = parse(REFUSED).unwrap();
        assert_eq!((run.rps, run.done, run.failed), (0.0, 0, 1000));
        let error = run.learned().unwrap_err().to_string();
        assert_eq!(error, "h2load got no answer");
    }

    #[test]
    fn failures_and_other_statuses_taught_nothing() {
        let failed = SAMPLE.replace("200000 succeeded, 0 failed", "199990 succeeded, 10 failed");
        let error = parse(&failed).unwrap().learned().unwrap_err().to_string();
        assert_eq!(error, "10 of h2load's requests failed");
        let status = SAMPLE.replace("200000 2xx, 0 3xx", "199000 2xx, 1000 3xx");
        let error = parse(&status).unwrap().learned().unwrap_err().to_string();
        assert_eq!(error, "1000 of h2load's 200000 answers were not 2xx");
    }

    #[test]
    fn refuses_output_without_figures() {
        assert!(parse("").is_err());
        assert!(parse("starting benchmark...\nprogress: 10% done\n").is_err());
        let no_rate = SAMPLE.replace("162701.23 req/s", "fast");
        assert!(parse(&no_rate).is_err());
        let bad_rate = SAMPLE.replace("162701.23 req/s", "x req/s");
        assert!(parse(&bad_rate).is_err());
        let no_status = SAMPLE.replace("status codes: ", "");
        assert!(parse(&no_status).is_err());
        let no_done = SAMPLE.replace("200000 done, ", "");
        assert!(parse(&no_done).is_err());
    }

    #[test]
    fn milliseconds_runs_parse_too() {
        let short = SAMPLE.replace("finished in 1.23s,", "finished in 111.95ms,");
        assert_eq!(parse(&short).unwrap().rps, 162_701.23);
    }
}
