//! A server under test as a child process: started on free loopback ports,
//! its JSON log lines collected, its memory read from `/proc`, and its exit
//! timed from the signal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// How long a server may take to start, or to exit after SIGTERM, before the
/// harness gives up on it (and kills it).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The replica name both servers answer `GET /` with.
pub const REPLICA: &str = "bench-replica";

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pid: i32,
    /// Application address.
    pub listen: SocketAddr,
    /// Admin address (lameduck only).
    pub admin: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<Value>>>,
}

/// How a server ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// When it was reaped.
    pub at: Instant,
    /// From just before the signal to the reaping.
    pub after_signal: Duration,
    /// Its exit status.
    pub status: ExitStatus,
}

impl Server {
    /// Starts `program` with `args`, and waits for its `serving` log line.
    pub fn start(program: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .env("POD_NAME", REPLICA)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving) = mpsc::channel();
        let kept = Arc::clone(&logs);
        // Drains stdout for the server's whole life, so that a blocked
        // log write never stalls what is being measured.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["message"] == "serving" {
                    let _ = serving_tx.send(event.clone());
                }
                kept.lock().expect("log lock").push(event);
            }
        });
        let mut server = Self {
            child: Some(child),
            pid,
            listen: "0.0.0.0:0".parse()?,
            admin: None,
            logs,
        };
        let Ok(event) = serving.recv_timeout(PATIENCE) else {
            bail!("{} did not log `serving` in time", program.display());
        };
        server.listen = address(&event, "listen")?;
        server.admin = address(&event, "admin").ok();
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Resident set size, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("cannot read the server's /proc status")?;
        parse_vm_rss(&status).context("no VmRSS in /proc status")
    }

    /// The admin address, or an error for a server without one.
    pub fn admin(&self) -> anyhow::Result<SocketAddr> {
        self.admin.context("this server has no admin listener")
    }

    /// The first log event with this `message`.
    pub fn log(&self, message: &str) -> Option<Value> {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .find(|e| e["message"] == message)
            .cloned()
    }

    /// Sends SIGTERM and waits for the process to exit, timing it from just
    /// before the signal to the moment it is reaped.
    pub fn terminate(&mut self) -> anyhow::Result<Exit> {
        let mut child = self.child.take().context("already ended")?;
        let pid = self.pid;
        let (tx, rx) = mpsc::channel();
        // A thread that does nothing but wait, so that the reaping is
        // stamped as soon as the kernel reports it.
        thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((Instant::now(), status));
        });
        let signalled = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGTERM).context("cannot send SIGTERM")?;
        match rx.recv_timeout(PATIENCE) {
            Ok((at, status)) => Ok(Exit {
                at,
                after_signal: at - signalled,
                status: status.context("cannot wait for the server")?,
            }),
            Err(_) => {
                // Not reaped yet, so the pid is still ours.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                bail!("the server did not exit within {PATIENCE:?} of SIGTERM")
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn address(event: &Value, key: &str) -> anyhow::Result<SocketAddr> {
    event[key]
        .as_str()
        .with_context(|| format!("no {key} in the serving line"))?
        .parse()
        .with_context(|| format!("bad {key} in the serving line"))
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

/// The value of one series (`name` or `name{labels}`, exactly as printed) in
/// Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every series of metric `name`, whatever its labels.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// How many series lines (not comments) Prometheus text has.
pub fn series_count(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
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

    #[test]
    fn reads_series() {
        let text = "# HELP a x\n# TYPE a gauge\nhttp_server_active_requests 100\n\
            http_server_request_duration_seconds_count{code=\"200\",method=\"GET\"} 1000000\n\
            http_server_request_duration_seconds_count{code=\"404\",method=\"GET\"} 3\n\
            http_server_request_duration_seconds_count_other 7\n";
        assert_eq!(metric(text, "http_server_active_requests"), Some(100.0));
        assert_eq!(metric(text, "http_server_active"), None);
        assert_eq!(
            metric(
                text,
                "http_server_request_duration_seconds_count{code=\"404\",method=\"GET\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_sum(text, "http_server_request_duration_seconds_count"),
            1_000_003.0
        );
        assert_eq!(series_count(text), 4);
    }
}
