//! One replica: a real `lameduck` process on its own loopback ports, started
//! with the container's arguments and terminated the way the kubelet does it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use testkit::Serving;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::http;
use crate::timeline::unix_ms;
use crate::workload::Workload;

/// Flags the local backend sets itself: loopback ports chosen by the kernel,
/// and JSON logs to learn them from. The termination log is dropped: the
/// chart's `/dev/termination-log` is the kubelet's file, not this machine's.
const OWN_FLAGS: [&str; 4] = [
    "--listen",
    "--admin-listen",
    "--log-format",
    "--termination-log",
];

/// What happened to a replica, in Unix milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Events {
    pub started: u64,
    pub ready: Option<u64>,
    /// The pod was deleted: preStop starts and the endpoint is on its way out.
    pub terminating: Option<u64>,
    pub sigterm: Option<u64>,
    pub exited: Option<u64>,
    pub exit_code: Option<i32>,
    /// The grace period ran out and SIGKILL was needed.
    pub killed: bool,
    /// From the replica's own last log line, when it got that far.
    pub aborted_requests: Option<u64>,
}

/// Where a replica is, for the progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    Ready,
    PreStop,
    Terminating,
    Exited,
}

impl Events {
    pub fn state(&self) -> State {
        if self.exited.is_some() {
            State::Exited
        } else if self.sigterm.is_some() {
            State::Terminating
        } else if self.terminating.is_some() {
            State::PreStop
        } else if self.ready.is_some() {
            State::Ready
        } else {
            State::Starting
        }
    }
}

#[derive(Debug)]
pub struct Replica {
    pub name: String,
    pub app: SocketAddr,
    pub admin: SocketAddr,
    pub events: Arc<Mutex<Events>>,
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Replica {
    /// Starts `binary` with the workload's arguments and environment, named
    /// `name` (its `POD_NAME`), and waits until it listens.
    pub async fn start(binary: &Path, name: &str, workload: &Workload) -> Result<Self> {
        let mut child = Command::new(binary)
            .args(workload.args_without(&OWN_FLAGS))
            .args([
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
                "--log-format=json",
            ])
            .envs(workload.env.iter().map(|(k, v)| (k, v)))
            .env("POD_NAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let events = Arc::new(Mutex::new(Events {
            started: unix_ms(),
            ..Events::default()
        }));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (serving_tx, serving) = oneshot::channel();
        let stdout = child.stdout.take().context("no stdout")?;
        tokio::spawn(read_logs(stdout, Arc::clone(&logs), serving_tx));

        let (app, admin) = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .with_context(|| format!("{name} did not start listening"))?
            .with_context(|| format!("{name} exited before listening"))?;
        Ok(Self {
            name: name.to_owned(),
            app,
            admin,
            events,
            child,
            logs,
        })
    }

    /// Probes `/readyz` like the kubelet: now, then every `period`, until it
    /// answers 200 (or `timeout`).
    pub async fn wait_ready(&self, period: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(200) = http::get_status(self.admin, "/readyz").await {
                self.events.lock().unwrap().ready = Some(unix_ms());
                return Ok(());
            }
            if Instant::now() + period > deadline {
                bail!("{} never became ready", self.name);
            }
            tokio::time::sleep(period).await;
        }
    }

    /// Terminates the replica as the kubelet does after the pod is deleted:
    /// the preStop sleep, then SIGTERM, then SIGKILL once `grace` (counted from
    /// the start of preStop) has passed. Returns when the process has exited.
    pub async fn terminate(mut self, pre_stop: Duration, grace: Duration) -> Result<Events> {
        let deleted = Instant::now();
        self.events.lock().unwrap().terminating = Some(unix_ms());
        let deadline = deleted + grace;
        tokio::time::sleep(pre_stop.min(grace)).await;
        self.signal(Signal::SIGTERM)?;
        self.events.lock().unwrap().sigterm = Some(unix_ms());
        let status = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.events.lock().unwrap().killed = true;
                self.child.kill().await?;
                self.child.wait().await?
            }
        };
        let exited = unix_ms();
        // The log reader may still hold the last lines; give it a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut events = self.events.lock().unwrap().clone();
        events.exited = Some(exited);
        events.exit_code = status.code();
        events.aborted_requests = self
            .logs
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|line| line["aborted"].as_u64());
        *self.events.lock().unwrap() = events.clone();
        Ok(events)
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.child.id().context("replica already reaped")?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }
}

/// Reads the replica's JSON log lines; sends its addresses once it serves.
///
/// The serving line is read as `testkit::Server` reads it, but the process
/// stays a tokio child: the kubelet's sequence races its exit against the
/// grace period on the runtime's clock, next to the load and the probes,
/// where testkit's blocking process would hold a thread per replica.
async fn read_logs(
    stdout: tokio::process::ChildStdout,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    serving: oneshot::Sender<(SocketAddr, SocketAddr)>,
) {
    let mut serving = Some(serving);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if Serving::is(&event)
            && let Ok(Serving {
                listen,
                admin: Some(admin),
            }) = Serving::from_event(&event)
            && let Some(tx) = serving.take()
        {
            let _ = tx.send((listen, admin));
        }
        logs.lock().unwrap().push(event);
    }
}
