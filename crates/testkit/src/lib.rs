//! Test harness: runs the real `lameduck` binary on free loopback ports, sends
//! it real signals, and talks raw HTTP/1.1 to it so that every byte and every
//! close is visible.

#![allow(missing_docs, missing_debug_implementations)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use serde_json::Value;

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
    child: Child,
    pub app: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<Value>>>,
    log_events: mpsc::Receiver<Value>,
}

impl Lameduck {
    /// Starts the binary with `args` on `127.0.0.1:0` ports and JSON logs, and
    /// waits until it serves.
    pub fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "info")
    }

    /// Like [`Lameduck::start`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(args: &[&str], filter: &str) -> Self {
        let mut child = Command::new(lameduck_bin())
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
            .env("POD_NAME", "test-replica")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lameduck");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, log_events) = mpsc::channel();
        let kept = Arc::clone(&logs);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                kept.lock().unwrap().push(event.clone());
                let _ = tx.send(event);
            }
        });
        let mut server = Self {
            child,
            app: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            logs,
            log_events,
        };
        let serving = server.wait_log("serving");
        server.app = serving["listen"].as_str().unwrap().parse().unwrap();
        server.admin = serving["admin"].as_str().unwrap().parse().unwrap();
        server
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("send signal");
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
        if let Some(event) = self.logs.lock().unwrap().iter().find(|e| wanted(e)) {
            return event.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log_events.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(_) => panic!("log event not seen; logs: {:#?}", self.logs()),
            }
        }
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for the process to exit; returns its status and when it exited.
    pub fn wait_exit(&mut self) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, Instant::now());
            }
            assert!(Instant::now() < deadline, "lameduck did not exit");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
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

impl Drop for Lameduck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus text exposition.
#[derive(Debug)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the sample whose name and labels are exactly `series`.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }

    pub fn get(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no sample {series} in:\n{}", self.0))
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server announced that it closes the connection.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One raw HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, path: &str) -> io::Result<()> {
        self.send_raw(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one complete response.
    pub fn recv(&mut self) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = parsed
                .parse(&self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if self.buf.len() >= head_len + length {
                    let body = self.buf[head_len..head_len + length].to_vec();
                    self.buf.drain(..head_len + length);
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a complete response",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads exactly `n` bytes past what responses consumed (an upgraded protocol).
    pub fn read_raw(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            let mut chunk = [0; 4096];
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(path)?;
        self.recv()
    }

    /// Waits up to `timeout` for the server to close the connection (EOF or
    /// reset). Returns whether it did.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut byte = [0; 1];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes from the server"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(_) => true,
        };
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        closed
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
