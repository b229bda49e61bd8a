//! A server binary as a child process: its JSON log lines collected from
//! stdout, its addresses read from its `serving` line, and its exit timed
//! from the signal. Nothing here panics; [`crate::Lameduck`] is the
//! panicking wrapper the tests use.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A server's log events, one JSON value per stdout line (a line that is not
/// JSON is kept as a string), as they arrive.
#[derive(Debug, Default)]
pub struct Logs {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct LogState {
    events: Vec<Value>,
    ended: bool,
}

impl Logs {
    /// Reads `from` line by line on a thread of its own until it ends.
    pub fn collect(from: impl Read + Send + 'static) -> Arc<Self> {
        let logs = Arc::new(Self::default());
        let kept = Arc::clone(&logs);
        // Drains the output for the server's whole life, so that a blocked
        // log write never stalls the server.
        thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line).unwrap_or(Value::String(line));
                kept.lock().events.push(event);
                kept.changed.notify_all();
            }
            kept.lock().ended = true;
            kept.changed.notify_all();
        });
        logs
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// The first event so far that `wanted` accepts.
    pub fn find(&self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        self.lock().events.iter().find(|e| wanted(e)).cloned()
    }

    /// The first event so far with this `message`.
    pub fn message(&self, message: &str) -> Option<Value> {
        self.find(|e| e["message"] == message)
    }

    /// The first event, logged already or within `patience`, that `wanted`
    /// accepts; `None` once the time is up or the output has ended.
    pub fn wait_for(&self, wanted: impl Fn(&Value) -> bool, patience: Duration) -> Option<Value> {
        let deadline = Instant::now() + patience;
        let mut state = self.lock();
        let mut seen = 0;
        loop {
            if let Some(event) = state.events[seen..].iter().find(|e| wanted(e)) {
                return Some(event.clone());
            }
            seen = state.events.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if state.ended || left.is_zero() {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What a server's `serving` log line says: where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// The application address (`listen`).
    pub listen: SocketAddr,
    /// The admin address (`admin`), for a server that has one.
    pub admin: Option<SocketAddr>,
}

impl Serving {
    /// Whether `event` is the `serving` line.
    pub fn is(event: &Value) -> bool {
        event["message"] == "serving"
    }

    /// The addresses of a `serving` event; an error when `listen` is missing
    /// or not an address.
    pub fn from_event(event: &Value) -> io::Result<Self> {
        let address = |key: &str| -> io::Result<SocketAddr> {
            event[key]
                .as_str()
                .ok_or_else(|| invalid(format!("no {key} in the serving line")))?
                .parse()
                .map_err(|_| invalid(format!("bad {key} in the serving line")))
        };
        Ok(Self {
            listen: address("listen")?,
            admin: address("admin").ok(),
        })
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pid: i32,
    patience: Duration,
    /// The application address.
    pub listen: SocketAddr,
    /// The admin address, for a server that has one.
    pub admin: Option<SocketAddr>,
    logs: Arc<Logs>,
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
    /// Starts `command` with stdout piped (its JSON logs) and waits up to
    /// `patience` for its `serving` line. `patience` also bounds
    /// [`Server::terminate`].
    pub fn start(command: &mut Command, patience: Duration) -> io::Result<Self> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
        let pid = i32::try_from(child.id()).map_err(|_| invalid("pid out of range".into()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut server = Self {
            child: Some(child),
            pid,
            patience,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            logs: Logs::collect(stdout),
        };
        let Some(event) = server.logs.wait_for(Serving::is, patience) else {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{program} did not log `serving` in time"),
            ));
        };
        let serving = Serving::from_event(&event)?;
        server.listen = serving.listen;
        server.admin = serving.admin;
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The admin address, or an error for a server without one.
    pub fn admin(&self) -> io::Result<SocketAddr> {
        self.admin
            .ok_or_else(|| io::Error::other("this server has no admin listener"))
    }

    /// Its log events.
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        kill(Pid::from_raw(self.pid), signal).map_err(io::Error::from)
    }

    /// Its exit status, if it has exited (an error once it was terminated).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child
            .as_mut()
            .ok_or_else(|| io::Error::other("already ended"))?
            .try_wait()
    }

    /// Sends SIGTERM and waits for the process to exit, timing it from just
    /// before the signal to the moment it is reaped; kills it when it has not
    /// exited within the patience.
    pub fn terminate(&mut self) -> io::Result<Exit> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("already ended"))?;
        let (tx, rx) = mpsc::channel();
        // A thread that does nothing but wait, so that the reaping is
        // stamped as soon as the kernel reports it.
        thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send((Instant::now(), status));
        });
        let signalled = Instant::now();
        self.signal(Signal::SIGTERM)?;
        match rx.recv_timeout(self.patience) {
            Ok((at, status)) => Ok(Exit {
                at,
                after_signal: at - signalled,
                status: status?,
            }),
            Err(_) => {
                // Not reaped yet, so the pid is still ours.
                let _ = self.signal(Signal::SIGKILL);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server did not exit within {:?} of SIGTERM",
                        self.patience
                    ),
                ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_line_gives_the_addresses() {
        let event = serde_json::json!({"message": "serving", "listen": "127.0.0.1:8080", "admin": "127.0.0.1:8081"});
        assert!(Serving::is(&event));
        let serving = Serving::from_event(&event).unwrap();
        assert_eq!(serving.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(serving.admin, Some("127.0.0.1:8081".parse().unwrap()));
        let bare = serde_json::json!({"message": "serving", "listen": "127.0.0.1:80"});
        assert_eq!(Serving::from_event(&bare).unwrap().admin, None);
        assert!(Serving::from_event(&serde_json::json!({"message": "serving"})).is_err());
        assert!(!Serving::is(&serde_json::json!({"message": "draining"})));
    }

    #[test]
    fn logs_are_waited_for_and_end_with_their_output() {
        let logs = Logs::collect(&b"{\"message\":\"a\"}\nnot json\n{\"message\":\"b\"}\n"[..]);
        let b = logs.wait_for(|e| e["message"] == "b", Duration::from_secs(5));
        assert_eq!(b.unwrap()["message"], "b");
        assert_eq!(logs.all()[1], Value::String("not json".into()));
        assert_eq!(logs.message("a").unwrap()["message"], "a");
        assert_eq!(
            logs.wait_for(|e| e["message"] == "c", Duration::from_secs(5)),
            None
        );
    }
}
