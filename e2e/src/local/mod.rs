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
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::clock::Offset;
use crate::driver::{self, Backend, Observed};
use crate::recorded::{self, Scope};
use crate::scenario::Scenario;
use crate::timeline::{ReplicaRecord, RunRecord, unix_ms};
use crate::verdict::{Check, Expect, Span, Termination, Verdict};
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
    /// Replicas deleted during the rollout under way, until they are gone.
    terminations: JoinSet<Result<()>>,
    /// Endpoints the proxy routed to, sampled every second.
    routed: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl Cluster {
    /// Prometheus, the Service and the replicas of generation 0, ready.
    async fn start(args: LocalArgs) -> Result<Self> {
        let rendered = std::fs::read_to_string(&args.rendered)
            .with_context(|| format!("cannot read {}", args.rendered.display()))?;
        let workload = Workload::from_rendered(&rendered)?;
        let prometheus = Prometheus::start(
            &args.prometheus,
            &args.out.join(format!("{}-prometheus", args.label)),
        )
        .await?;
        let mut cluster = Self {
            workload,
            proxy: ServiceProxy::start().await?,
            prometheus,
            active: Vec::new(),
            tracked: Arc::default(),
            targets: Arc::default(),
            terminations: JoinSet::new(),
            routed: Arc::default(),
            args,
        };
        for index in 0..cluster.workload.replicas as usize {
            cluster.start_replica(0, index).await?;
        }
        Ok(cluster)
    }

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
    fn delete(&mut self, replica: Replica) {
        self.proxy.remove_after(&replica.name, self.args.lag);
        let (pre_stop, grace) = (self.workload.pre_stop, self.workload.grace);
        let targets = Arc::clone(&self.targets);
        let name = replica.name.clone();
        self.terminations.spawn(async move {
            replica.terminate(pre_stop, grace).await?;
            targets.lock().unwrap().retain(|(n, _)| *n != name);
            Ok(())
        });
    }
}

/// Runs the scenario once and judges it.
pub async fn run(args: LocalArgs) -> Result<RunRecord> {
    let (label, expect, scenario) = (args.label.clone(), args.expect, args.scenario.clone());
    let mut cluster = Cluster::start(args).await?;
    driver::run(&mut cluster, &label, expect, &scenario).await
}

/// The load generator, in this process.
struct Load {
    handle: loadgen::Handle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<loadgen::Report, loadgen::Error>>,
}

impl Backend for Cluster {
    const NAME: &'static str = "local";
    type Load = Load;

    fn replicas(&self) -> usize {
        self.workload.replicas as usize
    }

    async fn start_load(&mut self) -> Result<Load> {
        let load = LoadGen::new(self.args.scenario.load(&self.proxy.addr.to_string())).await?;
        let handle = load.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(load.run(async {
            let _ = stopped.await;
        }));
        Ok(Load { handle, stop, task })
    }

    fn progress(
        &self,
        load: &Load,
    ) -> impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static {
        let tracked = Arc::clone(&self.tracked);
        let routed_log = Arc::clone(&self.routed);
        let proxy_routed = self.proxy.routed();
        let handle = load.handle.clone();
        // The routed endpoints are sampled with the progress line, once a second.
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
    }

    async fn roll(&mut self, generation: u32) -> Result<Vec<String>> {
        let old = std::mem::take(&mut self.active);
        let names = old.iter().map(|r| r.name.clone()).collect();
        // maxSurge 1, maxUnavailable 0: one new replica, available, then one
        // old replica deleted; the controller does not wait for it to exit.
        for (index, replica) in old.into_iter().enumerate() {
            self.start_replica(generation, index).await?;
            tokio::time::sleep(self.workload.min_ready).await;
            self.delete(replica);
        }
        Ok(names)
    }

    async fn wait_old_gone(&mut self) -> Result<()> {
        while let Some(done) = self.terminations.join_next().await {
            done??;
        }
        self.prometheus.set_targets(&self.targets.lock().unwrap())
    }

    async fn stop_load(&mut self, load: Load) -> Result<loadgen::Report> {
        let _ = load.stop.send(());
        Ok(load.task.await.context("load generator panicked")??)
    }

    fn observed(&mut self) -> Observed {
        Observed {
            replicas: self
                .tracked
                .lock()
                .unwrap()
                .iter()
                .map(|t| record_of(t, &t.events.lock().unwrap()))
                .collect(),
            routed: std::mem::take(&mut *self.routed.lock().unwrap()),
            transitions: Vec::new(),
            // The load generator runs in this process.
            clock: Some(Offset::SAME),
        }
    }

    async fn checks(
        &mut self,
        terminations: &[Termination],
        run: Span,
        expect: Expect,
        _load: &loadgen::Report,
    ) -> Result<Vec<Check>> {
        let mut verdict = Verdict::default();
        if let Some(outcome) = expect.outcome() {
            // Let the last scrapes land.
            tokio::time::sleep(prometheus::SCRAPE_INTERVAL * 3).await;
            let names: Vec<String> = self
                .tracked
                .lock()
                .unwrap()
                .iter()
                .map(|t| t.name.clone())
                .collect();
            let scope = Scope::replicas(&names);
            recorded::check(
                &self.prometheus,
                &scope,
                terminations,
                run,
                outcome,
                &mut verdict,
            )
            .await?;
        }
        Ok(verdict.checks)
    }

    fn settings(&self) -> Vec<(String, String)> {
        let (workload, proxy) = (&self.workload, self.proxy.stats());
        vec![
            (
                "manifest".to_owned(),
                self.args.rendered.display().to_string(),
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
                format!("{:?}", self.args.lag),
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
        ]
    }
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
