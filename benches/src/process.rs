//! A server under test as a child process: started on free loopback ports,
//! its JSON log lines collected and its exit timed from the signal (all by
//! `testkit::Server`), and its memory read from `/proc`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
pub use testkit::{Exit, Server};

/// How long a server may take to start, or to exit after SIGTERM, before the
/// harness gives up on it (and kills it).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The replica name both servers answer `GET /` with.
pub const REPLICA: &str = "bench-replica";

/// Starts `program` with `args`, and waits for its `serving` log line.
pub fn start(program: &Path, args: &[&str]) -> anyhow::Result<Server> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("POD_NAME", REPLICA)
        .env("RUST_LOG", "info");
    Ok(Server::start(&mut command, PATIENCE)?)
}

/// The server's resident set size, in bytes.
pub fn rss_bytes(server: &Server) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .context("cannot read the server's /proc status")?;
    parse_vm_rss(&status).context("no VmRSS in /proc status")
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tlameduck\nVmPeak:\t  20000 kB\nVmRSS:\t    5368 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(5368 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
