//! What the tests, the benchmarks and the rollout suite share: a server
//! binary on free loopback ports ([`process`]), a raw HTTP/1.1 client that
//! shows every byte and every close ([`http`]), Prometheus samples
//! ([`metrics`]) and a periodic scraper ([`scrape`]). [`Lameduck`] is the
//! `lameduck` binary for the server's tests: it sends real signals, and
//! panics when something goes wrong.

#![allow(missing_docs, missing_debug_implementations)]

pub mod http;
pub mod metrics;
pub mod process;
pub mod scrape;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use serde_json::Value;

pub use crate::http::{Conn, Response};
pub use crate::metrics::Metrics;
pub use crate::process::{Exit, Logs, Server, Serving};
pub use crate::scrape::{Scrape, ScrapeLoop};

/// Longest any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The `lameduck` binary: `$LAMEDUCK_BIN`, else the one cargo built next to
/// the running test (it builds a package's binaries before its integration
/// tests run).
pub fn lameduck_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LAMEDUCK_BIN") {
        return bin.into();
    }
    let test = std::env::current_exe().expect("the test's own path");
    let mut dir = test.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("lameduck")
}

/// Waits until `read()` shows `series` at `value`, polling every 5 ms for
/// at most [`PATIENCE`]; then fails, with the value last seen.
pub fn wait_for_metric(series: &str, value: f64, mut read: impl FnMut() -> Metrics) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = read().value(series);
        if seen == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}; last seen: {seen:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A running `lameduck serve`.
pub struct Lameduck {
    server: Server,
    pub app: SocketAddr,
    pub admin: SocketAddr,
}

impl Lameduck {
    /// Starts the binary with `args` on `127.0.0.1:0` ports and JSON logs, and
    /// waits until it serves.
    ///
    /// Tests read `/metrics` to watch the server, which makes them scrapers
    /// it would wait for once its shutdown ended: unless `args` set
    /// `--final-scrape-timeout` themselves, it does not wait.
    pub fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "info")
    }

    /// Like [`Lameduck::start`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(args: &[&str], filter: &str) -> Self {
        let mut command = Command::new(lameduck_bin());
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "json"])
            .args(args)
            .env("RUST_LOG", filter)
            .env("LAMEDUCK_FINAL_SCRAPE_TIMEOUT", "0s")
            .env("POD_NAME", "test-replica");
        let server = Server::start(&mut command, PATIENCE).unwrap_or_else(|e| panic!("{e}"));
        let admin = server.admin.expect("lameduck logs its admin address");
        Self {
            app: server.listen,
            admin,
            server,
        }
    }

    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    pub fn signal(&self, signal: Signal) {
        self.server.signal(signal).expect("send signal");
    }

    /// SIGTERM, then waits until the server logged that it is draining, so
    /// that what the test does next happens during the shutdown.
    pub fn terminate(&self) -> Instant {
        let at = Instant::now();
        self.signal(Signal::SIGTERM);
        self.wait_log_phase("draining");
        at
    }

    /// Waits for a log event with this message; returns it.
    pub fn wait_log(&self, message: &str) -> Value {
        self.wait_log_where(|e| e["message"] == message)
    }

    pub fn wait_log_phase(&self, phase: &str) -> Value {
        self.wait_log_where(|e| e["message"] == "shutdown phase changed" && e["phase"] == phase)
    }

    fn wait_log_where(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let json = |e: &Value| {
            if let Value::String(line) = e {
                panic!("log line is not JSON: {line}");
            }
            wanted(e)
        };
        self.server
            .logs()
            .wait_for(json, PATIENCE)
            .unwrap_or_else(|| panic!("log event not seen; logs: {:#?}", self.logs()))
    }

    pub fn logs(&self) -> Vec<Value> {
        self.server.logs().all()
    }

    /// Waits for the process to exit; returns its status and when it exited.
    pub fn wait_exit(&mut self) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.server.try_wait().unwrap() {
                return (status, Instant::now());
            }
            assert!(Instant::now() < deadline, "lameduck did not exit");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.server.try_wait().expect("try_wait").is_none()
    }

    pub fn exit_code(&mut self) -> i32 {
        self.wait_exit().0.code().expect("exited by a signal")
    }

    /// GET on the admin listener over a fresh connection.
    pub fn admin_get(&self, path: &str) -> Response {
        Conn::connect(self.admin).unwrap().get(path).unwrap()
    }

    /// Waits until `/metrics` shows `series` at `value` (see [`wait_for_metric`]).
    pub fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(series, value, || self.metrics());
    }

    /// The admin listener's `/metrics`.
    pub fn metrics(&self) -> Metrics {
        let response = self.admin_get("/metrics");
        assert_eq!(response.status, 200);
        Metrics(String::from_utf8(response.body).unwrap())
    }
}

/// Whether a TCP connection to `addr` is refused.
pub fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, PATIENCE) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    }
}

/// Runs `f` on its own thread, so that a test can do something else meanwhile.
pub fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::spawn(f)
}

/// Runs the binary with `args` to completion; returns exit code and stderr.
pub fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(lameduck_bin())
        .args(args)
        .output()
        .expect("run lameduck");
    (
        output.status.code().expect("exited by a signal"),
        String::from_utf8(output.stderr).unwrap(),
    )
}
