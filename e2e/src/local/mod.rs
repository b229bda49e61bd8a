//! The local backend: no cluster, but the same rollout, played faithfully on
//! loopback. Each replica is a real `lameduck` process; a proxy stands in for
//! the Service and kube-proxy; this module plays the Deployment controller and
//! the kubelet with the values the chart renders; a real Prometheus scrapes.

mod prometheus;
mod proxy;
mod replica;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use loadgen::LoadGen;
use tokio::task::JoinSet;

use crate::progress::Progress;
use crate::scenario::Scenario;
use crate::timeline::{ReplicaRecord, RolloutSpan, RunRecord, unix_ms};
use crate::verdict::{self, Expect, Verdict};
use crate::workload::Workload;
use prometheus::Prometheus;
use proxy::ServiceProxy;
use replica::{Events, Replica};

/// Flags of `e2e local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Name of the run (file names under --out).
    #[arg(long)]
    pub label: String,
    /// The chart rendered as a JSON array (scripts/render_chart.py).
    #[arg(long)]
    pub rendered: PathBuf,
    /// What the run must show.
    #[arg(long, value_enum)]
    pub expect: Expect,
    /// How long after a pod's deletion the proxy stops routing new connections to it.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub lag: Duration,
    /// The lameduck binary.
    #[arg(long)]
    pub lameduck: PathBuf,
    /// Debian's Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    pub prometheus: PathBuf,
    /// Where the record, the picture and Prometheus' data go.
    #[arg(long, default_value = "target/e2e")]
    pub out: PathBuf,
    #[command(flatten)]
    pub scenario: Scenario,
}

/// A replica as the run keeps track of it.
struct Tracked {
    name: String,
    generation: u32,
    events: Arc<Mutex<Events>>,
}

/// The pretend cluster: replicas, the Service, the scrape targets.
struct Cluster {
    args: LocalArgs,
    workload: Workload,
    proxy: ServiceProxy,
    prometheus: Prometheus,
    /// Replicas that are not being terminated.
    active: Vec<Replica>,
    tracked: Arc<Mutex<Vec<Tracked>>>,
    /// Scrape targets: replicas until their process is gone.
    targets: Arc<Mutex<Vec<(String, std::net::SocketAddr)>>>,
}

impl Cluster {
    /// Starts a pod of `generation`, waits for readiness, adds its endpoint.
    async fn start_replica(&mut self, generation: u32, index: usize) -> Result<()> {
        let name = format!("lameduck-r{generation}-{index}");
        let replica = Replica::start(&self.args.lameduck, &name, &self.workload).await?;
        self.targets
            .lock()
            .unwrap()
            .push((name.clone(), replica.admin));
        self.prometheus.set_targets(&self.targets.lock().unwrap())?;
        replica
            .wait_ready(self.workload.readiness_period, Duration::from_secs(30))
            .await?;
        self.proxy.add(&name, replica.app);
        self.tracked.lock().unwrap().push(Tracked {
            name,
            generation,
            events: Arc::clone(&replica.events),
        });
        self.active.push(replica);
        Ok(())
    }

    /// Deletes a pod: endpoint removal (after the lag) and the kubelet's
    /// termination start together.
    fn delete(&mut self, replica: Replica, terminations: &mut JoinSet<Result<()>>) {
        self.proxy.remove_after(&replica.name, self.args.lag);
        let (pre_stop, grace) = (self.workload.pre_stop, self.workload.grace);
        let targets = Arc::clone(&self.targets);
        let name = replica.name.clone();
        terminations.spawn(async move {
            replica.terminate(pre_stop, grace).await?;
            targets.lock().unwrap().retain(|(n, _)| *n != name);
            Ok(())
        });
    }
}

/// Runs the scenario once and judges it.
pub async fn run(args: LocalArgs) -> Result<RunRecord> {
    let rendered = std::fs::read_to_string(&args.rendered)
        .with_context(|| format!("cannot read {}", args.rendered.display()))?;
    let workload = Workload::from_rendered(&rendered)?;
    let prometheus = Prometheus::start(
        &args.prometheus,
        &args.out.join(format!("{}-prometheus", args.label)),
    )
    .await?;
    let mut cluster = Cluster {
        workload: workload.clone(),
        proxy: ServiceProxy::start().await?,
        prometheus,
        active: Vec::new(),
        tracked: Arc::default(),
        targets: Arc::default(),
        args,
    };
    let scenario = cluster.args.scenario.clone();
    for index in 0..workload.replicas as usize {
        cluster.start_replica(0, index).await?;
    }

    let load = LoadGen::new(scenario.load(&cluster.proxy.addr.to_string())).await?;
    let handle = load.handle();
    let started_ms = unix_ms();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let load = tokio::spawn(load.run(async {
        let _ = stopped.await;
    }));
    let routed = Arc::new(Mutex::new(Vec::new()));
    let progress = Progress::spawn({
        let tracked = Arc::clone(&cluster.tracked);
        let routed_log = Arc::clone(&routed);
        let proxy_routed = cluster.proxy.routed();
        let handle = handle.clone();
        move || {
            let routed_now = proxy_routed.names();
            routed_log
                .lock()
                .unwrap()
                .push((unix_ms(), routed_now.len()));
            let replicas = tracked
                .lock()
                .unwrap()
                .iter()
                .map(|t| (t.name.clone(), t.events.lock().unwrap().state()))
                .filter(|(_, state)| *state != replica::State::Exited)
                .map(|(name, state)| format!("{name}:{state:?}"))
                .collect::<Vec<_>>();
            (handle.progress(), replicas)
        }
    });

    tokio::time::sleep(scenario.warmup).await;
    let mut spans = Vec::new();
    for generation in 1..=scenario.rollouts {
        let started = unix_ms();
        let mut terminations = JoinSet::new();
        let old = std::mem::take(&mut cluster.active);
        // maxSurge 1, maxUnavailable 0: one new replica, available, then one
        // old replica deleted; the controller does not wait for it to exit.
        for (index, replica) in old.into_iter().enumerate() {
            cluster.start_replica(generation, index).await?;
            tokio::time::sleep(workload.min_ready).await;
            cluster.delete(replica, &mut terminations);
        }
        let completed = unix_ms();
        while let Some(done) = terminations.join_next().await {
            done??;
        }
        cluster
            .prometheus
            .set_targets(&cluster.targets.lock().unwrap())?;
        spans.push(RolloutSpan {
            started_ms: started,
            completed_ms: completed,
            old_gone_ms: unix_ms(),
        });
    }
    // A little steady state after the last old replica is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let report = load.await.context("load generator panicked")??;
    progress.stop();
    let finished_ms = unix_ms();

    let replicas: Vec<ReplicaRecord> = cluster
        .tracked
        .lock()
        .unwrap()
        .iter()
        .map(|t| record_of(t, &t.events.lock().unwrap()))
        .collect();
    let terminations: Vec<_> = replicas
        .iter()
        .filter_map(ReplicaRecord::termination)
        .collect();
    let mut verdict = verdict::judge(&report, &terminations, cluster.args.expect, scenario.bar());
    if cluster.args.expect == Expect::NoFailures {
        check_prometheus(&cluster.prometheus, &terminations, &mut verdict).await?;
    }
    let proxy = cluster.proxy.stats();

    let mut settings = vec![
        (
            "manifest".to_owned(),
            cluster.args.rendered.display().to_string(),
        ),
        ("replicas".to_owned(), workload.replicas.to_string()),
        (
            "preStop sleep".to_owned(),
            format!("{:?}", workload.pre_stop),
        ),
        ("grace period".to_owned(), format!("{:?}", workload.grace)),
        (
            "minReadySeconds".to_owned(),
            format!("{:?}", workload.min_ready),
        ),
        ("server flags".to_owned(), workload.args.join(" ")),
        (
            "endpoint removal lag".to_owned(),
            format!("{:?}", cluster.args.lag),
        ),
        (
            "proxy".to_owned(),
            format!(
                "{} connections, {} to a refusing backend, {} with no endpoint, {} reset mid-way by a replica, {} by the client",
                proxy.connections,
                proxy.backend_refused,
                proxy.no_endpoint,
                proxy.backend_reset,
                proxy.client_reset
            ),
        ),
    ];
    settings.extend(scenario.settings());
    let routed = std::mem::take(&mut *routed.lock().unwrap());
    Ok(RunRecord {
        label: cluster.args.label.clone(),
        backend: "local",
        expect: cluster.args.expect,
        settings,
        started_ms,
        finished_ms,
        rollouts: spans,
        replicas,
        routed,
        transitions: Vec::new(),
        load: report,
        verdict,
    })
}

fn record_of(tracked: &Tracked, events: &Events) -> ReplicaRecord {
    ReplicaRecord {
        name: tracked.name.clone(),
        generation: tracked.generation,
        started_ms: events.started,
        ready_ms: events.ready,
        terminating_ms: events.terminating,
        sigterm_ms: events.sigterm,
        exited_ms: events.exited,
        exit_code: events.exit_code,
        killed: events.killed,
        aborted_requests: events.aborted_requests,
    }
}

/// What Prometheus must have recorded: requests in flight during the
/// rollout, and a shutdown duration from every terminated replica (scraped
/// while it shut down, as pod-role discovery allows).
async fn check_prometheus(
    prometheus: &Prometheus,
    terminations: &[verdict::Termination],
    verdict: &mut Verdict,
) -> Result<()> {
    // Let the last scrapes land.
    tokio::time::sleep(prometheus::SCRAPE_INTERVAL * 3).await;
    let in_flight = prometheus
        .query("max(max_over_time(http_server_active_requests[1h]))")
        .await?;
    let peak = in_flight.first().map_or(0.0, |s| s.value);
    verdict.push(
        "Prometheus saw requests in flight",
        peak > 0.0,
        format!("max http_server_active_requests = {peak}"),
    );
    for t in terminations {
        let duration = prometheus
            .query(&format!(
                "max_over_time(lameduck_shutdown_duration_seconds{{replica=\"{}\"}}[1h])",
                t.name
            ))
            .await?;
        let phase = prometheus
            .query(&format!(
                "max_over_time(lameduck_shutdown_phase{{replica=\"{}\"}}[1h])",
                t.name
            ))
            .await?;
        let seconds = duration.first().map_or(0.0, |s| s.value);
        let phase = phase.first().map_or(0.0, |s| s.value);
        verdict.push(
            format!("Prometheus recorded {}'s shutdown", t.name),
            seconds > 0.0 && phase >= 1.0,
            format!("last lameduck_shutdown_duration_seconds {seconds:.3}, highest phase {phase}"),
        );
    }
    Ok(())
}
