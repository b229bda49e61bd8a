//! Executing requests: pooled keep-alive workers and fresh-connection tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedSemaphorePermit, mpsc};

use crate::conn::{self, Conn};
use crate::context::RunContext;
use crate::mix::Plan;
use crate::outcome::{self, Outcome, Phase};

/// How long a fresh connection may take to be closed by the server after its
/// response before it is closed from this side.
const FRESH_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A scheduled request; its permit counts it against the in-flight bound
/// until it has ended or been dropped.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) due: Instant,
    pub(crate) plan: Plan,
    pub(crate) permit: OwnedSemaphorePermit,
    /// Its burst's index, in a burst schedule.
    pub(crate) burst: Option<u32>,
}

/// The queue of jobs for the keep-alive workers (or the HTTP/2 lanes).
pub(crate) type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

/// The next job, started now; `None` once the queue is closed. A job that
/// comes after the drain's abort is counted as never started.
pub(crate) async fn next_job(shared: &RunContext, queue: &Queue) -> Option<(Job, Instant)> {
    loop {
        let job = queue.lock().await.recv().await?;
        if shared.abort.is_cancelled() {
            shared.recorder.not_started();
            continue;
        }
        let started = Instant::now();
        shared
            .recorder
            .started(&job.plan, job.due, started, job.burst);
        return Some((job, started));
    }
}

/// Owns one pooled connection slot: takes jobs one at a time, reuses the
/// connection until the server closes it or asks to, then opens a new one
/// for the next job.
pub(crate) async fn keepalive_worker(shared: Arc<RunContext>, queue: Queue) {
    let mut slot: Option<Conn> = None;
    while let Some((job, started)) = next_job(&shared, &queue).await {
        let mut phase = Phase::Connecting;
        let mut reused = false;
        let attempt = keepalive_once(&shared, &mut slot, &job.plan, &mut reused, &mut phase);
        let outcome = guarded(&shared, attempt)
            .await
            .unwrap_or_else(|| outcome::timeout_failure(shared.config.timeout, phase));
        if !outcome.keeps_connection() {
            slot = None;
        }
        shared.recorder.ended(
            &job.plan,
            started,
            Instant::now(),
            &outcome,
            reused,
            job.burst,
        );
        drop(job.permit);
    }
}

async fn keepalive_once(
    shared: &RunContext,
    slot: &mut Option<Conn>,
    plan: &Plan,
    reused: &mut bool,
    phase: &mut Phase,
) -> Outcome {
    if let Some(conn) = slot
        && !conn.is_usable().await
    {
        shared.recorder.closed_while_idle();
        *slot = None;
    }
    let conn = match slot {
        Some(conn) => conn,
        None => match conn::connect(shared.addr, &shared.recorder).await {
            Ok(conn) => slot.insert(conn),
            Err(failed) => return failed,
        },
    };
    *reused = conn.used;
    let req = conn::request(plan, &shared.host, false);
    conn.exchange(req, conn::echo_of(plan), phase).await
}

/// Runs one request on a connection of its own, which it asks the server to
/// close after the response.
pub(crate) async fn fresh_request(shared: Arc<RunContext>, job: Job) {
    if shared.abort.is_cancelled() {
        shared.recorder.not_started();
        return;
    }
    let started = Instant::now();
    shared
        .recorder
        .started(&job.plan, job.due, started, job.burst);
    let mut phase = Phase::Connecting;
    let mut slot = None;
    let attempt = fresh_once(&shared, &mut slot, &job.plan, &mut phase);
    let outcome = guarded(&shared, attempt)
        .await
        .unwrap_or_else(|| outcome::timeout_failure(shared.config.timeout, phase));
    shared.recorder.ended(
        &job.plan,
        started,
        Instant::now(),
        &outcome,
        false,
        job.burst,
    );
    drop(job.permit);
    if let (Some(conn), Outcome::Response(_)) = (slot, &outcome) {
        conn.wait_closed(FRESH_CLOSE_WAIT).await;
    }
}

async fn fresh_once(
    shared: &RunContext,
    slot: &mut Option<Conn>,
    plan: &Plan,
    phase: &mut Phase,
) -> Outcome {
    let conn = match conn::connect(shared.addr, &shared.recorder).await {
        Ok(conn) => slot.insert(conn),
        Err(failed) => return failed,
    };
    let req = conn::request(plan, &shared.host, true);
    conn.exchange(req, conn::echo_of(plan), phase).await
}

/// Bounds a request by the per-request timeout (`None` when it expired) and
/// by the drain's abort.
async fn guarded(shared: &RunContext, attempt: impl Future<Output = Outcome>) -> Option<Outcome> {
    tokio::select! {
        biased;
        () = shared.abort.cancelled() => Some(outcome::aborted()),
        res = tokio::time::timeout(shared.config.timeout, attempt) => res.ok(),
    }
}
