//! The sequence every backend plays: load and warm-up, the rollouts with
//! their spans, the load stopped, the terminations judged, the record
//! assembled. A backend supplies only what differs, through [`Backend`].

use std::time::Duration;

use anyhow::Result;

use crate::clock::{self, Offset};
use crate::progress::Progress;
use crate::scenario::Scenario;
use crate::timeline::{ReplicaRecord, RolloutSpan, RunRecord, Transition, unix_ms};
use crate::verdict::{self, Check, Evidence, Expect, Span, Termination};

/// A little steady state after the last old replica is gone.
const STEADY: Duration = Duration::from_secs(1);
/// After a burst schedule's last burst is due, time for its requests.
const BURSTS_END: Duration = Duration::from_secs(3);

/// What a backend saw of its replicas during the run.
#[derive(Debug, Default)]
pub struct Observed {
    pub replicas: Vec<ReplicaRecord>,
    /// Endpoints traffic was routed to, sampled every second.
    pub routed: Vec<(u64, usize)>,
    /// Every replica transition in the order seen, if the backend follows them.
    pub transitions: Vec<Transition>,
    /// The load generator's clock against the runner's; None when it could
    /// not be measured.
    pub clock: Option<Offset>,
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

    /// The replicas the Deployment runs: each rollout must replace this many.
    fn replicas(&self) -> usize;

    /// Whether the load reaches the replicas through kube-proxy (or its
    /// stand-in), which pins connections, rather than through a proxy that
    /// stops routing to a terminating replica on its own.
    fn direct(&self) -> bool {
        true
    }

    /// Starts the scenario's load against the Service.
    async fn start_load(&mut self) -> Result<Self::Load>;

    /// The progress line's source, called once a second: the load's
    /// progress and one `name:state` per live replica.
    fn progress(
        &self,
        load: &Self::Load,
    ) -> impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static;

    /// Starts rollout `generation` (from 1) and returns once the controller
    /// has completed it; old replicas may still be terminating. Returns the
    /// replicas it replaces, as listed before it started.
    async fn roll(&mut self, generation: u32) -> Result<Vec<String>>;

    /// Returns once every replica `roll` replaced is gone, and what was
    /// seen of their ends has arrived.
    async fn wait_old_gone(&mut self) -> Result<()>;

    /// Stops the load and returns its report. The run is over: whatever
    /// follows the replicas may stop too.
    async fn stop_load(&mut self, load: Self::Load) -> Result<loadgen::Report>;

    /// What was seen of the replicas; called once, after `stop_load`.
    fn observed(&mut self) -> Observed;

    /// Checks only this backend can make, after the shared ones of
    /// [`verdict::judge`]; `run` is the whole run, `load` its report.
    async fn checks(
        &mut self,
        terminations: &[Termination],
        run: Span,
        expect: Expect,
        load: &loadgen::Report,
    ) -> Result<Vec<Check>>;

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
    let load_started = tokio::time::Instant::now();
    let progress = Progress::spawn(backend.progress(&load));
    tokio::time::sleep(scenario.warmup).await;
    let (rollouts, old) = roll(backend, scenario.rollouts).await?;
    tokio::time::sleep(STEADY).await;
    if let Some(bursts) = scenario.bursts() {
        // A burst schedule ends by itself: let it.
        let done = load_started + bursts.span() + BURSTS_END;
        tokio::time::sleep_until(done).await;
    }
    let mut report = backend.stop_load(load).await?;
    progress.stop();
    let finished_ms = unix_ms();

    let observed = backend.observed();
    if let Some(offset) = observed.clock {
        clock::to_runner(&mut report, offset);
    }
    let evidence = Evidence {
        report: &report,
        clock: observed.clock,
        replicas: &observed.replicas,
        old: &old,
        expected_old: backend.replicas() * scenario.rollouts as usize,
    };
    let bar = scenario.bar(backend.direct());
    let (mut verdict, terminations) = verdict::judge(&evidence, expect, bar);
    let run = Span {
        from_ms: started_ms,
        to_ms: finished_ms,
    };
    verdict
        .checks
        .extend(backend.checks(&terminations, run, expect, &report).await?);
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

/// The rollouts, one after the other, each with its span; and the old
/// replicas of all of them.
async fn roll<B: Backend>(
    backend: &mut B,
    rollouts: u32,
) -> Result<(Vec<RolloutSpan>, Vec<String>)> {
    let mut spans = Vec::new();
    let mut old = Vec::new();
    for generation in 1..=rollouts {
        let started_ms = unix_ms();
        old.extend(backend.roll(generation).await?);
        let completed_ms = unix_ms();
        backend.wait_old_gone().await?;
        spans.push(RolloutSpan {
            started_ms,
            completed_ms,
            old_gone_ms: unix_ms(),
        });
    }
    Ok((spans, old))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::time::Instant;

    use super::*;
    use crate::verdict::fixtures;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scenario: Scenario,
    }

    /// Notes each call with the (paused) time it came at.
    struct Fake {
        began: Instant,
        calls: Vec<(u64, String)>,
    }

    impl Fake {
        fn note(&mut self, call: String) {
            let at = self.began.elapsed().as_millis() as u64;
            self.calls.push((at, call));
        }
    }

    /// The one replica of generation `generation`, terminated by the next rollout.
    fn replica(generation: u32) -> ReplicaRecord {
        ReplicaRecord {
            name: format!("lameduck-{generation}"),
            generation,
            started_ms: 0,
            ready_ms: Some(100),
            terminating_ms: Some(1000),
            sigterm_ms: Some(1000),
            exited_ms: Some(1500),
            exit_code: Some(0),
            killed: false,
            aborted_requests: Some(0),
        }
    }

    impl Backend for Fake {
        const NAME: &'static str = "fake";
        type Load = ();

        fn replicas(&self) -> usize {
            1
        }

        async fn start_load(&mut self) -> Result<()> {
            self.note("start_load".to_owned());
            Ok(())
        }

        fn progress(
            &self,
            (): &(),
        ) -> impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static {
            || (loadgen::Progress::default(), Vec::new())
        }

        async fn roll(&mut self, generation: u32) -> Result<Vec<String>> {
            self.note(format!("roll {generation}"));
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(vec![replica(generation - 1).name])
        }

        async fn wait_old_gone(&mut self) -> Result<()> {
            self.note("wait_old_gone".to_owned());
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        }

        async fn stop_load(&mut self, (): ()) -> Result<loadgen::Report> {
            self.note("stop_load".to_owned());
            Ok(fixtures::report(&[(0, 2000, &[("lameduck-0", 1500)])], 0))
        }

        fn observed(&mut self) -> Observed {
            self.note("observed".to_owned());
            Observed {
                replicas: vec![replica(0), replica(1), replica(2)],
                clock: Some(Offset::SAME),
                ..Observed::default()
            }
        }

        async fn checks(
            &mut self,
            terminations: &[Termination],
            _run: Span,
            expect: Expect,
            _load: &loadgen::Report,
        ) -> Result<Vec<Check>> {
            self.note(format!("checks {} {expect:?}", terminations.len()));
            Ok(vec![Check {
                name: "the backend's own".to_owned(),
                passed: true,
                detail: String::new(),
            }])
        }

        fn settings(&self) -> Vec<(String, String)> {
            vec![("backend".to_owned(), "fake".to_owned())]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn plays_the_sequence_and_assembles_the_record() {
        let scenario = Cli::parse_from(["e2e", "--rollouts=2", "--warmup=2s"]).scenario;
        let mut fake = Fake {
            began: Instant::now(),
            calls: Vec::new(),
        };
        let record = run(&mut fake, "demo", Expect::NoFailures, &scenario)
            .await
            .unwrap();

        // Warm-up 2 s, each rollout 3 s + 2 s, steady state 1 s.
        let calls: Vec<(u64, &str)> = fake.calls.iter().map(|(t, c)| (*t, c.as_str())).collect();
        assert_eq!(
            calls,
            [
                (0, "start_load"),
                (2000, "roll 1"),
                (5000, "wait_old_gone"),
                (7000, "roll 2"),
                (10_000, "wait_old_gone"),
                (13_000, "stop_load"),
                (13_000, "observed"),
                (13_000, "checks 2 NoFailures"),
            ]
        );
        assert_eq!((record.label.as_str(), record.backend), ("demo", "fake"));
        assert_eq!(record.expect, Expect::NoFailures);
        assert_eq!(record.rollouts.len(), 2);
        assert_eq!(record.replicas.len(), 3);
        let mut settings = vec![("backend".to_owned(), "fake".to_owned())];
        settings.extend(scenario.settings());
        assert_eq!(record.settings, settings);
        // The shared checks first, then the backend's.
        let old = ["lameduck-0".to_owned(), "lameduck-1".to_owned()];
        let evidence = Evidence {
            report: &record.load,
            clock: Some(Offset::SAME),
            replicas: &record.replicas,
            old: &old,
            expected_old: 2,
        };
        let (mut verdict, terminations) =
            verdict::judge(&evidence, Expect::NoFailures, scenario.bar(true));
        assert_eq!(terminations.len(), 2);
        assert!(
            verdict
                .checks
                .iter()
                .any(|c| c.name == "old replicas terminated" && c.passed),
            "{verdict}"
        );
        verdict.push("the backend's own", true, "");
        assert_eq!(record.verdict, verdict);
    }
}
