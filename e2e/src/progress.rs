//! The live progress line: once a second, the load and where each replica is.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Progress {
    task: JoinHandle<()>,
}

impl Progress {
    /// Prints a line every second from `snapshot`: the load generator's
    /// progress and one `name:state` per live replica.
    pub fn spawn(snapshot: impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static) -> Self {
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let (load, replicas) = snapshot();
                eprintln!(
                    "[{:>6.1}s] {:>6.0} req/s  ok {:>7}  failed {:>5}  in flight {:>4} | {}",
                    started.elapsed().as_secs_f64(),
                    load.rate,
                    load.ok,
                    load.failures,
                    load.in_flight,
                    replicas.join(" ")
                );
            }
        });
        Self { task }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
