//! The kind backend: the chart in a real cluster, the load generator as a Job
//! against the ClusterIP Service, rolling restarts through the API, and the
//! terminating pods' `/metrics` scraped through the API server's pod proxy.

mod job;
mod pods;
mod rollout;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client};

use crate::progress::Progress;
use crate::scenario::Scenario;
use crate::timeline::{RolloutSpan, RunRecord, unix_ms};
use crate::verdict::{self, Expect};
use pods::{Pods, ShutdownSample};
use rollout::Rollout;

/// How often the backend looks at the cluster.
const POLL: Duration = Duration::from_millis(250);
/// Longest a single rollout may take before the run fails.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// Flags of `e2e kind`.
#[derive(Debug, Clone, Args)]
pub struct KindArgs {
    /// Name of the run (file names under --out, the load generator's Job).
    #[arg(long)]
    pub label: String,
    /// Helm values for this run (e2e/values/*.yaml).
    #[arg(long)]
    pub values: PathBuf,
    /// What the run must show.
    #[arg(long, value_enum)]
    pub expect: Expect,
    /// The image, `repository:tag`, already loaded into the cluster.
    #[arg(long)]
    pub image: String,
    /// kubeconfig context (the kind cluster's is `kind-<name>`).
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Helm release name; also the Deployment's and Service's name.
    #[arg(long, default_value = "lameduck")]
    pub release: String,
    #[arg(long, default_value = "charts/lameduck")]
    pub chart: PathBuf,
    /// Where the record and the picture go.
    #[arg(long, default_value = "target/e2e")]
    pub out: PathBuf,
    #[command(flatten)]
    pub scenario: Scenario,
}

/// Installs the chart with this run's values, rolls it under load, judges.
pub async fn run(args: KindArgs) -> Result<RunRecord> {
    helm_upgrade(&args)?;
    let config = kube::Config::from_kubeconfig(&KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    })
    .await
    .context("cannot read the kubeconfig")?;
    let client = Client::try_from(config)?;
    let ns = &args.namespace;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);

    let deployment = deployments.get(&args.release).await?;
    let selector = selector_of(&deployment)?;
    let grace = grace_of(&deployment);
    let listing = ListParams::default().labels(&selector);

    // The load generator, against the Service's cluster DNS name.
    let job_name = format!("{}-loadgen-{}", args.release, args.label);
    let _ = jobs.delete(&job_name, &DeleteParams::background()).await;
    wait_until_gone(&pods, &format!("job-name={job_name}")).await?;
    let target = format!("{}.{ns}.svc.cluster.local:80", args.release);
    let load_args = args
        .scenario
        .load_args(&target, &format!("0.0.0.0:{}", job::CONTROL_PORT));
    jobs.create(
        &PostParams::default(),
        &job::manifest(&job_name, &args.image, &load_args),
    )
    .await
    .context("cannot create the load generator's Job")?;
    let load_pod = wait_for_load_pod(&pods, &client, ns, &job_name).await?;
    let control = PodProxy::new(client.clone(), ns, &load_pod, job::CONTROL_PORT);

    let seen = Arc::new(Mutex::new(Pods::default()));
    let routed = Arc::new(Mutex::new(Vec::new()));
    let latest = Arc::new(Mutex::new(loadgen::Progress::default()));
    let started_ms = unix_ms();
    let generation = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let watcher = tokio::spawn(watch_pods(
        client.clone(),
        ns.clone(),
        listing.clone(),
        Arc::clone(&seen),
        Arc::clone(&routed),
        Arc::clone(&generation),
    ));
    let poller = tokio::spawn({
        let control = control.clone();
        let latest = Arc::clone(&latest);
        async move {
            loop {
                if let Ok(text) = control.get("/progress").await
                    && let Ok(progress) = serde_json::from_str(&text)
                {
                    *latest.lock().unwrap() = progress;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let progress = Progress::spawn({
        let seen = Arc::clone(&seen);
        let latest = Arc::clone(&latest);
        move || {
            let pods = seen.lock().unwrap();
            let states = pods
                .seen
                .iter()
                .filter(|(_, s)| !s.gone)
                .map(|(n, s)| {
                    let state = if s.terminating_ms.is_some() {
                        "Terminating"
                    } else if s.ready_ms.is_some() {
                        "Ready"
                    } else {
                        "Starting"
                    };
                    format!("{n}:{state}")
                })
                .collect();
            (latest.lock().unwrap().clone(), states)
        }
    });

    tokio::time::sleep(args.scenario.warmup).await;
    let mut spans = Vec::new();
    for round in 1..=args.scenario.rollouts {
        generation.store(round, std::sync::atomic::Ordering::Relaxed);
        let started = unix_ms();
        restart(&deployments, &args.release, round).await?;
        let completed = wait_for_rollout(&deployments, &args.release).await?;
        wait_for_old_pods(&seen).await?;
        spans.push(RolloutSpan {
            started_ms: started,
            completed_ms: completed,
            old_gone_ms: unix_ms(),
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    control
        .post("/stop")
        .await
        .context("cannot stop the load generator")?;
    let log = wait_for_report(&pods, &load_pod).await?;
    let report =
        loadgen::Report::find_in_log(&log).context("no report in the load generator's log")?;
    progress.stop();
    poller.abort();
    watcher.abort();
    let finished_ms = unix_ms();

    let pods_seen = std::mem::take(&mut *seen.lock().unwrap());
    let replicas = pods_seen.records();
    let terminations: Vec<_> = replicas
        .iter()
        .filter_map(crate::timeline::ReplicaRecord::termination)
        .collect();
    let mut verdict = verdict::judge(&report, &terminations, args.expect, args.scenario.bar());
    if args.expect == Expect::NoFailures {
        for t in &terminations {
            let sample = pods_seen.seen.get(&t.name).and_then(|s| s.shutdown);
            let ShutdownSample {
                phase,
                duration_seconds,
            } = sample.unwrap_or_default();
            verdict.push(
                format!("{}'s shutdown was scraped through the pod proxy", t.name),
                phase >= 1.0 && duration_seconds > 0.0,
                format!(
                    "last phase {phase}, lameduck_shutdown_duration_seconds {duration_seconds:.3}"
                ),
            );
        }
    }
    let _ = jobs.delete(&job_name, &DeleteParams::background()).await;

    let mut settings = vec![
        ("values".to_owned(), args.values.display().to_string()),
        ("image".to_owned(), args.image.clone()),
        ("grace period".to_owned(), format!("{grace}s")),
        (
            "load generator".to_owned(),
            format!("Job {job_name} → {target}"),
        ),
    ];
    settings.extend(args.scenario.settings());
    let routed = std::mem::take(&mut *routed.lock().unwrap());
    Ok(RunRecord {
        label: args.label,
        backend: "kind",
        expect: args.expect,
        settings,
        started_ms,
        finished_ms,
        rollouts: spans,
        replicas,
        routed,
        load: report,
        verdict,
    })
}

/// `helm upgrade --install` with this run's values and image, waiting until ready.
fn helm_upgrade(args: &KindArgs) -> Result<()> {
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
        .args(["--wait", "--timeout", "5m"]);
    if let Some(context) = &args.context {
        helm.args(["--kube-context", context]);
    }
    let status = helm
        .status()
        .context("cannot run helm (is it installed?)")?;
    if !status.success() {
        bail!("helm upgrade failed: {status}");
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
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context("cannot restart the Deployment")?;
    Ok(())
}

/// Waits like `kubectl rollout status`; returns when it completed.
async fn wait_for_rollout(deployments: &Api<Deployment>, name: &str) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        match rollout::status(&deployments.get(name).await?) {
            Rollout::Complete => return Ok(unix_ms()),
            Rollout::Failed(why) => bail!("rollout failed: {why}"),
            Rollout::Waiting(_) if tokio::time::Instant::now() > deadline => {
                bail!("rollout did not complete within {ROLLOUT_TIMEOUT:?}")
            }
            Rollout::Waiting(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until no terminating server pod is left.
async fn wait_for_old_pods(seen: &Mutex<Pods>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    // Internal: give the watcher one look after the rollout completed.
    tokio::time::sleep(POLL * 2).await;
    while seen.lock().unwrap().terminating().next().is_some() {
        if tokio::time::Instant::now() > deadline {
            bail!("old pods still terminating after {ROLLOUT_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Lists the server pods every `POLL`; scrapes terminating ones' `/metrics`
/// through the pod proxy while they shut down; samples the serving count.
async fn watch_pods(
    client: Client,
    ns: String,
    listing: ListParams,
    seen: Arc<Mutex<Pods>>,
    routed: Arc<Mutex<Vec<(u64, usize)>>>,
    generation: Arc<std::sync::atomic::AtomicU32>,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut last_sample = 0;
    loop {
        if let Ok(list) = pods.list(&listing).await {
            let now = unix_ms();
            let round = generation.load(std::sync::atomic::Ordering::Relaxed);
            let terminating: Vec<String> = {
                let mut seen = seen.lock().unwrap();
                seen.observe(&list.items, now, round);
                if now >= last_sample + 1000 {
                    routed.lock().unwrap().push((now, seen.serving()));
                    last_sample = now;
                }
                seen.terminating().map(str::to_owned).collect()
            };
            for name in terminating {
                let proxy = PodProxy::new(client.clone(), &ns, &name, 8081);
                if let Ok(text) = proxy.get("/metrics").await
                    && let (Some(phase), Some(duration_seconds)) = (
                        pods::sample(&text, "lameduck_shutdown_phase"),
                        pods::sample(&text, "lameduck_shutdown_duration_seconds"),
                    )
                    && let Some(s) = seen.lock().unwrap().seen.get_mut(&name)
                {
                    s.shutdown = Some(ShutdownSample {
                        phase,
                        duration_seconds,
                    });
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_until_gone(pods: &Api<Pod>, selector: &str) -> Result<()> {
    for _ in 0..240 {
        if pods
            .list(&ListParams::default().labels(selector))
            .await?
            .items
            .is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("pods {selector} are still there")
}

/// Waits for the Job's pod to run and its control endpoint to answer.
async fn wait_for_load_pod(
    pods: &Api<Pod>,
    client: &Client,
    ns: &str,
    job: &str,
) -> Result<String> {
    for _ in 0..480 {
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await?;
        if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone())
            && PodProxy::new(client.clone(), ns, &name, job::CONTROL_PORT)
                .get("/progress")
                .await
                .is_ok()
        {
            return Ok(name);
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the load generator's pod never answered")
}

/// Waits for the load generator to exit and returns its log.
async fn wait_for_report(pods: &Api<Pod>, name: &str) -> Result<String> {
    for _ in 0..480 {
        let pod = pods.get(name).await?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(pods.logs(name, &LogParams::default()).await?);
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("the load generator did not finish")
}

/// HTTP to a pod's port through the API server.
#[derive(Clone)]
struct PodProxy {
    client: Client,
    base: String,
}

impl PodProxy {
    fn new(client: Client, ns: &str, pod: &str, port: u16) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy"),
        }
    }

    async fn get(&self, path: &str) -> Result<String> {
        let request = http::Request::get(format!("{}{path}", self.base)).body(Vec::new())?;
        Ok(self.client.request_text(request).await?)
    }

    async fn post(&self, path: &str) -> Result<String> {
        let request = http::Request::post(format!("{}{path}", self.base)).body(Vec::new())?;
        Ok(self.client.request_text(request).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
