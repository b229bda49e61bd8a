//! The cluster backend, for any cluster reached through a kubeconfig context:
//! kind, the local cluster of `scripts/just cluster-up`, or a user's own. The
//! chart is installed with Helm (`helm.rs`); the load generator runs as a Job
//! against the ClusterIP Service (`job.rs`); rolling restarts go through the
//! API, and each rollout's old pods are taken from the API at its start and
//! waited for there until gone (`rollout.rs`); a watch records every pod
//! transition and terminating pods' `/metrics` are scraped through the API
//! server's pod proxy (`watch.rs`, `pods.rs`); and the cluster's Prometheus
//! is asked what it scraped (`prometheus.rs`).

mod api;
mod helm;
mod job;
mod pods;
mod prometheus;
mod rollout;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::config::KubeConfigOptions;
use kube::{Api, Client};
use tokio::task::JoinHandle;

use crate::clock::{self, Offset};
use crate::driver::{self, Backend, Observed};
use crate::scenario::Scenario;
use crate::timeline::RunRecord;
use crate::verdict::{Check, Expect, Span, Termination, Verdict};
use api::retry;
use job::LoadJob;
use pods::Pods;
use rollout::{POLL, PodId, ROLLOUT_TIMEOUT};
use watch::Shared;

/// Flags of `e2e cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Name of the run (file names under --out, the load generator's Job).
    #[arg(long)]
    pub label: String,
    /// Helm values for this run (e2e/values/*.yaml); repeat it to layer
    /// files, later ones winning (e.g. the negative control, then the ingress).
    #[arg(long, required = true)]
    pub values: Vec<PathBuf>,
    /// What the run must show.
    #[arg(long, value_enum)]
    pub expect: Expect,
    /// The image, `repository:tag`, already in the cluster's nodes.
    #[arg(long)]
    pub image: String,
    /// kubeconfig context (kind's is `kind-<name>`, the local cluster's `lameduck-local`).
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Helm release name; also the Deployment's and Service's name.
    #[arg(long, default_value = "lameduck")]
    pub release: String,
    #[arg(long, default_value = "charts/lameduck")]
    pub chart: PathBuf,
    /// The cluster's Prometheus as `namespace/service:port` (deploy/prometheus
    /// is `monitoring/prometheus:web`); asked what it scraped while pods
    /// terminated. Without it, nothing is checked of what a Prometheus
    /// records, and the summary says so.
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Send the load through this Service instead of the release's own, as
    /// `namespace/service:port`: an ingress controller's (the local cluster's
    /// Traefik is `traefik/traefik:80`). The values must give the release
    /// an Ingress it serves.
    #[arg(long, value_name = "NS/SERVICE:PORT")]
    pub via: Option<String>,
    /// The proxy behind --via, whose own request counts (from --prometheus)
    /// must agree with the load generator's count of 5xx.
    #[arg(long, value_enum, requires_all = ["via", "prometheus"])]
    pub proxy: Option<prometheus::Proxy>,
    /// Where the record and the picture go.
    #[arg(long, default_value = "target/e2e")]
    pub out: PathBuf,
    #[command(flatten)]
    pub scenario: Scenario,
}

impl ClusterArgs {
    /// The load generator's Job.
    fn job_name(&self) -> String {
        format!("{}-loadgen-{}", self.release, self.label)
    }

    /// The Service the load goes to: --via's, or the release's own.
    fn service_target(&self) -> Result<String> {
        match &self.via {
            None => Ok(format!(
                "{}.{}.svc.cluster.local:80",
                self.release, self.namespace
            )),
            Some(via) => {
                let (ns, service, port) = split_service(via)?;
                Ok(format!("{service}.{ns}.svc.cluster.local:{port}"))
            }
        }
    }
}

/// `namespace/service:port` into its parts.
fn split_service(spec: &str) -> Result<(&str, &str, &str)> {
    let (ns, rest) = spec
        .split_once('/')
        .context("expected namespace/service:port")?;
    let (service, port) = rest
        .split_once(':')
        .context("expected namespace/service:port")?;
    if ns.is_empty() || service.is_empty() || port.is_empty() {
        bail!("expected namespace/service:port, got {spec:?}");
    }
    Ok((ns, service, port))
}

/// Installs the chart with this run's values, rolls it under load, judges.
pub async fn run(args: ClusterArgs) -> Result<RunRecord> {
    let (label, expect, scenario) = (args.label.clone(), args.expect, args.scenario.clone());
    let mut release = Release::install(args).await?;
    driver::run(&mut release, &label, expect, &scenario).await
}

/// The release under test, its pods followed by a watch.
struct Release {
    args: ClusterArgs,
    client: Client,
    deployments: Api<Deployment>,
    pods_api: Api<Pod>,
    selector: String,
    /// The pods' terminationGracePeriodSeconds.
    grace: i64,
    replicas: usize,
    shared: Arc<Shared>,
    watching: JoinHandle<()>,
    sampling: JoinHandle<()>,
    /// The old pods of the rollout under way, as the API listed them at its start.
    old: Vec<PodId>,
    /// The load generator's clock readings.
    clock: Arc<Mutex<Vec<clock::Sample>>>,
    /// The pods as the watch last saw them, once the load stopped.
    pods: Pods,
}

impl Release {
    /// Installs the chart and starts following its pods.
    async fn install(args: ClusterArgs) -> Result<Self> {
        let client = connect(args.context.as_deref()).await?;
        helm::upgrade(&args, &client).await?;
        let ns = &args.namespace;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let deployment = retry("get the Deployment", || deployments.get(&args.release)).await?;
        let selector = helm::selector_of(&deployment)?;
        if let Some(via) = &args.via {
            let (ns, service, port) = split_service(via).context("--via")?;
            wait_until_routed(&client, ns, &format!("{service}:{port}")).await?;
        }
        // An upgrade that changed the pod template rolled the Deployment; its
        // old pods must not count as this run's terminations.
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
        wait_until_none_terminating(&pods_api, &selector).await?;

        let shared = Arc::new(Shared::default());
        let watching = tokio::spawn(watch::watch_pods(
            client.clone(),
            ns.clone(),
            selector.clone(),
            Arc::clone(&shared),
        ));
        let sampling = tokio::spawn(watch::sample_routed(Arc::clone(&shared)));
        Ok(Self {
            grace: helm::grace_of(&deployment),
            replicas: helm::replicas_of(&deployment),
            args,
            client,
            deployments,
            pods_api,
            selector,
            shared,
            watching,
            sampling,
            old: Vec::new(),
            clock: Arc::default(),
            pods: Pods::default(),
        })
    }
}

/// The load generator's Job, and its progress as last polled.
struct Load {
    job: LoadJob,
    latest: Arc<Mutex<loadgen::Progress>>,
    polling: JoinHandle<()>,
}

impl Backend for Release {
    const NAME: &'static str = "cluster";
    type Load = Load;

    fn replicas(&self) -> usize {
        self.replicas
    }

    fn direct(&self) -> bool {
        self.args.via.is_none()
    }

    async fn start_load(&mut self) -> Result<Load> {
        let job = LoadJob::start(&self.client, &self.args).await?;
        let latest = Arc::new(Mutex::new(loadgen::Progress::default()));
        let polling = tokio::spawn(job::poll_progress(
            job.control.clone(),
            Arc::clone(&latest),
            Arc::clone(&self.clock),
        ));
        Ok(Load {
            job,
            latest,
            polling,
        })
    }

    fn progress(
        &self,
        load: &Load,
    ) -> impl Fn() -> (loadgen::Progress, Vec<String>) + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let latest = Arc::clone(&load.latest);
        move || {
            let pods = shared.pods.lock().unwrap();
            let states = pods
                .seen
                .iter()
                .filter(|(_, s)| s.gone_ms.is_none())
                .map(|(n, s)| format!("{n}:{}", s.state()))
                .collect();
            (latest.lock().unwrap().clone(), states)
        }
    }

    async fn roll(&mut self, generation: u32) -> Result<Vec<String>> {
        self.old = rollout::live_pods(&self.pods_api, &self.selector).await?;
        self.shared.generation.store(generation, Ordering::Relaxed);
        rollout::restart(&self.deployments, &self.args.release, generation).await?;
        rollout::wait_complete(&self.deployments, &self.args.release).await?;
        Ok(self.old.iter().map(|p| p.name.clone()).collect())
    }

    async fn wait_old_gone(&mut self) -> Result<()> {
        rollout::wait_gone(&self.pods_api, &self.old).await?;
        self.shared.caught_up(&self.old).await;
        Ok(())
    }

    async fn stop_load(&mut self, load: Load) -> Result<loadgen::Report> {
        let report = load.job.finish(&self.client, &self.args.namespace).await?;
        load.polling.abort();
        self.watching.abort();
        self.sampling.abort();
        Ok(report)
    }

    fn observed(&mut self) -> Observed {
        self.pods = std::mem::take(&mut *self.shared.pods.lock().unwrap());
        Observed {
            replicas: self.pods.records(),
            routed: std::mem::take(&mut *self.shared.routed.lock().unwrap()),
            transitions: std::mem::take(&mut self.pods.transitions),
            clock: Offset::best(&self.clock.lock().unwrap()),
        }
    }

    async fn checks(
        &mut self,
        terminations: &[Termination],
        run: Span,
        expect: Expect,
        load: &loadgen::Report,
    ) -> Result<Vec<Check>> {
        let mut verdict = Verdict::default();
        pods::check(&self.pods, terminations, expect, &mut verdict);
        let Some(spec) = self.args.prometheus.as_ref() else {
            return Ok(verdict.checks);
        };
        let prometheus = prometheus::Prometheus::new(self.client.clone(), spec)?;
        // Let the run's last scrapes land before asking.
        tokio::time::sleep(prometheus::SETTLE).await;
        // The negative control's pods live a fraction of a second after
        // their deletion: nothing can be asked to scrape them.
        if let Some(outcome) = expect.outcome() {
            let names: Vec<String> = self.pods.seen.keys().cloned().collect();
            let scope = crate::recorded::Scope::pods(&self.args.namespace, &names);
            crate::recorded::check(
                &prometheus,
                &scope,
                terminations,
                run,
                outcome,
                &mut verdict,
            )
            .await?;
        }
        if let Some(proxy) = self.args.proxy {
            let (ns, release) = (&self.args.namespace, &self.args.release);
            let check = proxy
                .count_check(&prometheus, ns, release, run, load)
                .await?;
            verdict.checks.push(check);
        }
        Ok(verdict.checks)
    }

    fn settings(&self) -> Vec<(String, String)> {
        let args = &self.args;
        vec![
            (
                "values".to_owned(),
                args.values
                    .iter()
                    .map(|v| v.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
            ("image".to_owned(), args.image.clone()),
            ("grace period".to_owned(), format!("{}s", self.grace)),
            (
                "load generator".to_owned(),
                format!(
                    "Job {} → {}{}",
                    args.job_name(),
                    args.service_target().unwrap_or_default(),
                    if args.via.is_some() {
                        " (an ingress controller, in front of the release's Service)"
                    } else {
                        " (the release's ClusterIP Service, through kube-proxy)"
                    }
                ),
            ),
            (
                "prometheus".to_owned(),
                args.prometheus.clone().unwrap_or_else(|| {
                    "none given (--prometheus): nothing was checked of what a Prometheus records"
                        .to_owned()
                }),
            ),
        ]
    }
}

async fn connect(context: Option<&str>) -> Result<Client> {
    let config = kube::Config::from_kubeconfig(&KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    })
    .await
    .context("cannot read the kubeconfig")?;
    Ok(Client::try_from(config)?)
}

/// How long an ingress controller may take to route a new Ingress.
const ROUTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until `GET /` through `service` (an ingress controller) reaches
/// the application: a controller applies a new Ingress on its own schedule,
/// and says 404 until then.
async fn wait_until_routed(client: &Client, ns: &str, service: &str) -> Result<()> {
    let proxy = api::Proxy::service(client.clone(), ns, service);
    let deadline = tokio::time::Instant::now() + ROUTED_WITHIN;
    loop {
        match proxy.get_once("/").await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() > deadline => {
                bail!(
                    "nothing reached the release through {ns}/{service} within {ROUTED_WITHIN:?}: {error}"
                )
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until no pod matching `selector` is being deleted.
async fn wait_until_none_terminating(pods: &Api<Pod>, selector: &str) -> Result<()> {
    let by_selector = ListParams::default().labels(selector);
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        let list = retry("list pods", || pods.list(&by_selector)).await?;
        if list
            .items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_none())
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("pods {selector} still terminating after {ROLLOUT_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
