//! The cluster backend, for any cluster reached through a kubeconfig context:
//! kind, the local cluster of `scripts/just cluster-up`, or a user's own. The
//! chart is installed with Helm; the load generator runs as a Job against
//! the ClusterIP Service; rolling restarts go through the API; a watch
//! records every pod transition; terminating pods' `/metrics` are scraped
//! through the API server's pod proxy; and the cluster's Prometheus is asked
//! what it scraped.

mod api;
mod job;
mod pods;
mod prometheus;
mod rollout;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use testkit::Metrics;
use tokio::task::JoinHandle;

use crate::driver::{self, Backend, Observed};
use crate::scenario::Scenario;
use crate::timeline::{RunRecord, unix_ms};
use crate::verdict::{Check, Expect, Termination, Verdict};
use api::{Proxy, explain_pods, retry};
use pods::Pods;
use rollout::Rollout;

/// How often the backend looks at a Deployment's status or a Job's pod.
const POLL: Duration = Duration::from_millis(250);
/// Reads of an ended load generator's log before its report is given up for lost (5 s).
const LOG_READS: u32 = 20;
/// Lines of the load generator's log shown when its report is missing.
const LOG_TAIL: usize = 20;
/// How often a terminating pod's `/metrics` is scraped.
const SCRAPE: Duration = Duration::from_millis(100);
/// Longest a single rollout may take before the run fails.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// How far the watch may be behind the API's deletion time (whole seconds).
const DELETION_SEEN_WITHIN_MS: u64 = 2_000;

/// Flags of `e2e cluster`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Name of the run (file names under --out, the load generator's Job).
    #[arg(long)]
    pub label: String,
    /// Helm values for this run (e2e/values/*.yaml).
    #[arg(long)]
    pub values: PathBuf,
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
    /// is `monitoring/prometheus:web`); asked what it scraped while pods terminated.
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Where the record and the picture go.
    #[arg(long, default_value = "target/e2e")]
    pub out: PathBuf,
    #[command(flatten)]
    pub scenario: Scenario,
}

/// What the run shares between its tasks.
struct Shared {
    pods: Mutex<Pods>,
    /// Serving pods, sampled every second.
    routed: Mutex<Vec<(u64, usize)>>,
    /// The rollout under way (0 during warm-up).
    generation: AtomicU32,
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
    /// The pods' terminationGracePeriodSeconds.
    grace: i64,
    shared: Arc<Shared>,
    watching: JoinHandle<()>,
    sampling: JoinHandle<()>,
    /// The pods as the watch last saw them, once the load stopped.
    pods: Pods,
}

impl Release {
    /// Installs the chart and starts following its pods.
    async fn install(args: ClusterArgs) -> Result<Self> {
        let client = connect(args.context.as_deref()).await?;
        helm_upgrade(&args, &client).await?;
        let ns = &args.namespace;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let deployment = retry("get the Deployment", || deployments.get(&args.release)).await?;
        let selector = selector_of(&deployment)?;
        let grace = grace_of(&deployment);
        // An upgrade that changed the pod template rolled the Deployment; its
        // old pods must not count as this run's terminations.
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        wait_until_none_terminating(&pods, &selector).await?;

        let shared = Arc::new(Shared {
            pods: Mutex::new(Pods::default()),
            routed: Mutex::new(Vec::new()),
            generation: AtomicU32::new(0),
        });
        let watching = tokio::spawn(watch_pods(
            client.clone(),
            ns.clone(),
            selector,
            Arc::clone(&shared),
        ));
        let sampling = tokio::spawn(sample_routed(Arc::clone(&shared)));
        Ok(Self {
            args,
            client,
            deployments,
            grace,
            shared,
            watching,
            sampling,
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

    async fn start_load(&mut self) -> Result<Load> {
        let job = LoadJob::start(&self.client, &self.args).await?;
        let latest = Arc::new(Mutex::new(loadgen::Progress::default()));
        let polling = tokio::spawn(poll_progress(job.control.clone(), Arc::clone(&latest)));
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

    async fn roll(&mut self, generation: u32) -> Result<()> {
        self.shared.generation.store(generation, Ordering::Relaxed);
        restart(&self.deployments, &self.args.release, generation).await?;
        wait_for_rollout(&self.deployments, &self.args.release).await
    }

    async fn wait_old_gone(&mut self) -> Result<()> {
        wait_for_old_pods(&self.shared.pods).await
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
        }
    }

    async fn checks(&mut self, terminations: &[Termination], expect: Expect) -> Result<Vec<Check>> {
        let mut verdict = Verdict::default();
        check_pods(&self.pods, terminations, expect, &mut verdict);
        // The negative control's pods live a fraction of a second after their
        // deletion: nothing can be asked to scrape them.
        if let Some(spec) = self
            .args
            .prometheus
            .as_ref()
            .filter(|_| expect == Expect::NoFailures)
        {
            let prometheus = prometheus::Prometheus::new(self.client.clone(), spec)?;
            prometheus::check(&prometheus, terminations, &mut verdict).await?;
        }
        Ok(verdict.checks)
    }

    fn settings(&self) -> Vec<(String, String)> {
        let args = &self.args;
        vec![
            ("values".to_owned(), args.values.display().to_string()),
            ("image".to_owned(), args.image.clone()),
            ("grace period".to_owned(), format!("{}s", self.grace)),
            (
                "load generator".to_owned(),
                format!("Job {} → {}", args.job_name(), args.service_target()),
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

/// What the watch and the pod proxy showed of each terminated pod.
fn check_pods(pods: &Pods, terminations: &[Termination], expect: Expect, verdict: &mut Verdict) {
    for t in terminations {
        let Some(seen) = pods.seen.get(&t.name) else {
            continue;
        };
        // DeletionTimestamp − grace is the deletion request's time, truncated
        // to whole seconds; the watch must have seen it soon after.
        let lag = seen
            .deleted_ms
            .zip(seen.deleted_api_ms)
            .map(|(seen_ms, api_ms)| seen_ms as i64 - api_ms as i64);
        verdict.push(
            format!("{}'s deletion was seen as it happened", t.name),
            lag.is_some_and(|l| (0..=DELETION_SEEN_WITHIN_MS as i64).contains(&l)),
            match lag {
                Some(l) => format!(
                    "the watch saw it {l} ms after the API's deletion time (whole seconds), at most {DELETION_SEEN_WITHIN_MS} ms allowed"
                ),
                None => "unknown: the deletion time was not seen".to_owned(),
            },
        );
        if expect != Expect::NoFailures {
            continue;
        }
        let s = seen.shutdown;
        verdict.push(
            format!("{} answered /metrics through the pod proxy while it terminated", t.name),
            s.scrapes > 0,
            format!(
                "{} scrapes, highest lameduck_shutdown_phase {}, last lameduck_shutdown_duration_seconds {:.3}",
                s.scrapes, s.highest_phase, s.duration_seconds
            ),
        );
    }
}

/// `helm upgrade --install` with this run's values and image, waiting until
/// ready; if it fails, what the release's pods are waiting for.
async fn helm_upgrade(args: &ClusterArgs, client: &Client) -> Result<()> {
    let (repository, tag) = args
        .image
        .rsplit_once(':')
        .context("--image must be repository:tag")?;
    let mut helm = Command::new("helm");
    helm.args(["upgrade", "--install", &args.release])
        .arg(&args.chart)
        .args(["--namespace", &args.namespace, "--values"])
        .arg(&args.values)
        .arg(format!("--set-string=image.repository={repository}"))
        .arg(format!("--set-string=image.tag={tag}"))
        .args(["--wait", "--timeout", "3m"]);
    if let Some(context) = &args.context {
        helm.args(["--kube-context", context]);
    }
    let status = helm
        .status()
        .context("cannot run helm (is it installed and on PATH?)")?;
    if !status.success() {
        let selector = format!("app.kubernetes.io/instance={}", args.release);
        let why = explain_pods(client, &args.namespace, &selector).await;
        bail!("helm upgrade failed ({status}); the release's pods:\n{why}");
    }
    Ok(())
}

fn selector_of(deployment: &Deployment) -> Result<String> {
    let labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .context("the Deployment has no matchLabels")?;
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}

fn grace_of(deployment: &Deployment) -> i64 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// What `kubectl rollout restart` does: a new pod-template annotation.
async fn restart(deployments: &Api<Deployment>, name: &str, round: u32) -> Result<()> {
    let stamp = format!("{}-{round}", unix_ms());
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": stamp
    }}}}});
    let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
    retry("restart the Deployment", || {
        deployments.patch(name, &params, &patch)
    })
    .await
    .context("cannot restart the Deployment")?;
    Ok(())
}

/// Waits like `kubectl rollout status`.
async fn wait_for_rollout(deployments: &Api<Deployment>, name: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        let deployment = retry("get the Deployment", || deployments.get(name)).await?;
        match rollout::status(&deployment) {
            Rollout::Complete => return Ok(()),
            Rollout::Failed(why) => bail!("rollout failed: {why}"),
            Rollout::Waiting(why) if tokio::time::Instant::now() > deadline => {
                bail!("rollout did not complete within {ROLLOUT_TIMEOUT:?}: {why}")
            }
            Rollout::Waiting(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until no terminating server pod is left.
async fn wait_for_old_pods(pods: &Mutex<Pods>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    // The rollout completes when the old ReplicaSet is scaled to zero; the
    // watch may not have delivered the last deletion yet.
    tokio::time::sleep(POLL * 2).await;
    while pods.lock().unwrap().terminating().next().is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("old pods still terminating after {ROLLOUT_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Follows the server pods with a watch (relisting after 410 Gone or any
/// error, with backoff) and scrapes each one that starts terminating.
async fn watch_pods(client: Client, ns: String, selector: String, shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let config = watcher::Config::default().labels(&selector);
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                eprintln!("  watch of the server pods: {error}; resuming");
                continue;
            }
        };
        let now = unix_ms();
        let generation = shared.generation.load(Ordering::Relaxed);
        let deleted = shared.pods.lock().unwrap().apply(event, now, generation);
        for name in deleted {
            let proxy = Proxy::pod(client.clone(), &ns, &name, 8081);
            tokio::spawn(scrape_while_terminating(proxy, name, Arc::clone(&shared)));
        }
    }
}

/// Scrapes a terminating pod's `/metrics` every `SCRAPE` until it is gone.
async fn scrape_while_terminating(proxy: Proxy, name: String, shared: Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if shared
            .pods
            .lock()
            .unwrap()
            .seen
            .get(&name)
            .is_none_or(|s| s.gone_ms.is_some())
        {
            return;
        }
        // Failures are expected once the process has exited.
        if let Ok(text) = proxy.get_once("/metrics").await
            && let metrics = Metrics(text)
            && let (Some(phase), Some(duration)) = (
                metrics.value("lameduck_shutdown_phase"),
                metrics.value("lameduck_shutdown_duration_seconds"),
            )
            && let Some(s) = shared.pods.lock().unwrap().seen.get_mut(&name)
        {
            s.shutdown.scrapes += 1;
            s.shutdown.highest_phase = s.shutdown.highest_phase.max(phase);
            s.shutdown.duration_seconds = duration;
        }
        tokio::time::sleep(SCRAPE).await;
    }
}

async fn sample_routed(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let serving = shared.pods.lock().unwrap().serving();
        shared.routed.lock().unwrap().push((unix_ms(), serving));
    }
}

async fn poll_progress(control: Proxy, latest: Arc<Mutex<loadgen::Progress>>) {
    loop {
        if let Ok(text) = control.get_once("/progress").await
            && let Ok(progress) = serde_json::from_str(&text)
        {
            *latest.lock().unwrap() = progress;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl ClusterArgs {
    /// The load generator's Job.
    fn job_name(&self) -> String {
        format!("{}-loadgen-{}", self.release, self.label)
    }

    /// The Service, as the load generator's target.
    fn service_target(&self) -> String {
        format!("{}.{}.svc.cluster.local:80", self.release, self.namespace)
    }
}

/// The load generator, running as a Job in the cluster.
struct LoadJob {
    name: String,
    pod: String,
    control: Proxy,
}

impl LoadJob {
    /// Replaces any Job of the same name and waits until its control endpoint answers.
    async fn start(client: &Client, args: &ClusterArgs) -> Result<Self> {
        let ns = &args.namespace;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let name = args.job_name();
        let by_job = job_selector(&name);
        let _ = jobs.delete(&name, &DeleteParams::background()).await;
        wait_until_gone(&pods, &by_job).await?;
        let target = args.service_target();
        // The Job would only say so in its log.
        args.scenario
            .load(&target)
            .validate()
            .context("the scenario's load cannot run")?;
        let load_args = args
            .scenario
            .load_args(&target, &format!("0.0.0.0:{}", job::CONTROL_PORT));
        let manifest = job::manifest(&name, &args.image, &load_args);
        let params = PostParams::default();
        retry("create the load generator's Job", || {
            jobs.create(&params, &manifest)
        })
        .await
        .context("cannot create the load generator's Job")?;
        let job_pods = ListParams::default().labels(&by_job);
        for _ in 0..480 {
            let list = retry("list the Job's pods", || pods.list(&job_pods)).await?;
            if let Some(pod) = list.items.first().and_then(|p| p.metadata.name.clone()) {
                let control = Proxy::pod(client.clone(), ns, &pod, job::CONTROL_PORT);
                if control.get_once("/progress").await.is_ok() {
                    return Ok(Self { name, pod, control });
                }
            }
            tokio::time::sleep(POLL).await;
        }
        let why = explain_pods(client, ns, &by_job).await;
        bail!("the load generator's pod never answered:\n{why}")
    }

    /// Stops the load, waits for the process to exit, reads the report from
    /// its log and deletes the Job.
    async fn finish(&self, client: &Client, ns: &str) -> Result<loadgen::Report> {
        self.control
            .post("/stop")
            .await
            .context("cannot stop the load generator")?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let by_job = job_selector(&self.name);
        let mut ended = false;
        for _ in 0..480 {
            let pod = retry("get the load generator's pod", || pods.get(&self.pod)).await?;
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                ended = true;
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        if !ended {
            let why = explain_pods(client, ns, &by_job).await;
            bail!("the load generator did not finish:\n{why}");
        }
        let (report, log) = self.report_from_log(&pods).await?;
        let Some(report) = report else {
            let why = explain_pods(client, ns, &by_job).await;
            bail!(
                "no report in the load generator's log:\n{why}  last lines of its log:\n{}",
                tail(&log, LOG_TAIL)
            );
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let _ = jobs.delete(&self.name, &DeleteParams::background()).await;
        Ok(report)
    }

    /// Reads the report from the log of the ended pod. The container's last
    /// lines may reach the log file a moment after the pod is seen ended, so
    /// a log without a report is read again a few times.
    async fn report_from_log(&self, pods: &Api<Pod>) -> Result<(Option<loadgen::Report>, String)> {
        let whole = LogParams::default();
        let mut attempt = 0;
        loop {
            let log = retry("read the load generator's log", || {
                pods.logs(&self.pod, &whole)
            })
            .await?;
            attempt += 1;
            match loadgen::Report::find_in_log(&log) {
                Some(report) => return Ok((Some(report), log)),
                None if attempt == LOG_READS => return Ok((None, log)),
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// The label selector of a Job's pods.
fn job_selector(job: &str) -> String {
    format!("job-name={job}")
}

/// The last `n` lines of `log`, each cut to a readable length, indented.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            let cut: String = l.chars().take(400).collect();
            let more = if cut.len() < l.len() { " …" } else { "" };
            format!("    {cut}{more}\n")
        })
        .collect()
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

async fn wait_until_gone(pods: &Api<Pod>, selector: &str) -> Result<()> {
    let by_selector = ListParams::default().labels(selector);
    for _ in 0..240 {
        let list = retry("list pods", || pods.list(&by_selector)).await?;
        if list.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("pods {selector} are still there")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_report_shows_the_log_s_last_lines_cut_to_length() {
        let long = "é".repeat(500);
        let log = format!("one\ntwo\n{long}\nthree\n");
        let shown = tail(&log, 3);
        let cut = "é".repeat(400);
        assert_eq!(shown, format!("    two\n    {cut} …\n    three\n"));
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn the_report_is_found_among_the_jobs_progress_lines() {
        let report = crate::verdict::fixtures::report(&[(0, 2000, &[("lameduck-abc", 1500)])], 3);
        let log = format!(
            "{{\"control_listen\":\"0.0.0.0:9090\"}}\n\
             {{\"elapsed_ms\":1000,\"sent\":2000,\"rate\":2000.0,\"in_flight\":3,\"ok\":1997,\"failures\":3}}\n\
             {}\n",
            report.to_json_line()
        );
        assert_eq!(loadgen::Report::find_in_log(&log), Some(report));
    }

    #[test]
    fn selector_and_grace_come_from_the_deployment() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lameduck"},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/instance": "lameduck",
                                                   "app.kubernetes.io/component": "server"}},
                     "template": {"spec": {"terminationGracePeriodSeconds": 35, "containers": []}}}
        }))
        .unwrap();
        assert_eq!(
            selector_of(&d).unwrap(),
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=lameduck"
        );
        assert_eq!(grace_of(&d), 35);
    }
}
