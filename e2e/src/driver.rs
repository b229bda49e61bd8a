//! The sequence every backend plays: load and warm-up, the rollouts with
//! their spans, the load stopped, the terminations judged, the record
//! assembled. A backend supplies only what differs, through [`Backend`].

use std::time::Duration;

use anyhow::Result;

use crate::progress::Progress;
use crate::scenario::Scenario;
use crate::timeline::{ReplicaRecord, RolloutSpan, RunRecord, Transition, unix_ms};
use crate::verdict::{self, Check, Expect, Termination};

/// A little steady state after the last old replica is gone.
const STEADY: Duration = Duration::from_secs(1);

/// What a backend saw of its replicas during the run.
#[derive(Debug, Default)]
pub struct Observed {
    pub replicas: Vec<ReplicaRecord>,
    /// Endpoints traffic was routed to, sampled every second.
    pub routed: Vec<(u64, usize)>,
    /// Every replica transition in the order seen, if the backend follows them.
    pub transitions: Vec<Transition>,
}

/// What a backend provides to play the scenario; the sequence and its
/// timing (warm-up, rollout spans, steady state) and the shared checks are
/// [`run`]'s.
///
/// A backend stands up its replicas (generation 0, ready) and a Service in
/// front of them before [`run`], and tears them down when dropped. It must
/// provide a load against that Service which it can stop for a report; a
/// rolling restart in two steps, completed by the controller, then the old
/// replicas gone; each replica's timeline, from which the terminations are
/// judged; and whatever checks and summary rows only it can give. [`run`]
/// calls `start_load`, `progress`, `roll` and `wait_old_gone` once per
/// rollout, `stop_load`, `observed`, `checks`, then `settings`.
pub trait Backend {
    /// The record's `backend`.
    const NAME: &'static str;
    /// The load while it runs, from `start_load` to `stop_load`.
    type Load;

    /// Starts the scenario's load against the Service.
    async fn start_load(&mut self) -> Result<Self::Load>;

    /// The progress line's source, called once a second: the load's
    /// progress and one `name:state` per live replica.
    fn progress(
        &self,
        load: &Self::Load,
    ) -> impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static;

    /// Starts rollout `generation` (from 1) and returns once the controller
    /// has completed it; old replicas may still be terminating.
    async fn roll(&mut self, generation: u32) -> Result<()>;

    /// Returns once every replica of earlier generations is gone.
    async fn wait_old_gone(&mut self) -> Result<()>;

    /// Stops the load and returns its report. The run is over: whatever
    /// follows the replicas may stop too.
    async fn stop_load(&mut self, load: Self::Load) -> Result<loadgen::Report>;

    /// What was seen of the replicas; called once, after `stop_load`.
    fn observed(&mut self) -> Observed;

    /// Checks only this backend can make, after the shared ones of
    /// [`verdict::judge`].
    async fn checks(&mut self, terminations: &[Termination], expect: Expect) -> Result<Vec<Check>>;

    /// The backend's rows of the summary, before the scenario's.
    fn settings(&self) -> Vec<(String, String)>;
}

/// Plays `scenario` on `backend` and judges it against `expect`.
pub async fn run<B: Backend>(
    backend: &mut B,
    label: &str,
    expect: Expect,
    scenario: &Scenario,
) -> Result<RunRecord> {
    let load = backend.start_load().await?;
    let started_ms = unix_ms();
    let progress = Progress::spawn(backend.progress(&load));
    tokio::time::sleep(scenario.warmup).await;
    let rollouts = roll(backend, scenario.rollouts).await?;
    tokio::time::sleep(STEADY).await;
    let report = backend.stop_load(load).await?;
    progress.stop();
    let finished_ms = unix_ms();

    let observed = backend.observed();
    let terminations: Vec<_> = observed
        .replicas
        .iter()
        .filter_map(ReplicaRecord::termination)
        .collect();
    let mut verdict = verdict::judge(&report, &terminations, expect, scenario.bar());
    verdict
        .checks
        .extend(backend.checks(&terminations, expect).await?);
    let mut settings = backend.settings();
    settings.extend(scenario.settings());
    Ok(RunRecord {
        label: label.to_owned(),
        backend: B::NAME,
        expect,
        settings,
        started_ms,
        finished_ms,
        rollouts,
        replicas: observed.replicas,
        routed: observed.routed,
        transitions: observed.transitions,
        load: report,
        verdict,
    })
}

/// The rollouts, one after the other, each with its span.
async fn roll<B: Backend>(backend: &mut B, rollouts: u32) -> Result<Vec<RolloutSpan>> {
    let mut spans = Vec::new();
    for generation in 1..=rollouts {
        let started_ms = unix_ms();
        backend.roll(generation).await?;
        let completed_ms = unix_ms();
        backend.wait_old_gone().await?;
        spans.push(RolloutSpan {
            started_ms,
            completed_ms,
            old_gone_ms: unix_ms(),
        });
    }
    Ok(spans)
}
