//! The load generator as a Job inside the cluster, sending to the ClusterIP
//! Service: the path real clients take (a port-forward would pin one pod).
//! The runner reaches its control endpoint through the API server's pod
//! proxy: progress once a second (with the load generator's clock, to
//! measure the offset), then a stop, and the report from the pod's log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, Client};

use super::ClusterArgs;
use super::api::{Proxy, explain_pods, retry};
use super::rollout::POLL;
use crate::clock;
use crate::timeline::unix_ms;

/// Port of the load generator's control endpoint (`GET /progress`, `POST /stop`).
pub const CONTROL_PORT: u16 = 9090;
/// Reads of an ended load generator's log before its report is given up for lost (5 s).
const LOG_READS: u32 = 20;
/// Lines of the load generator's log shown when its report is missing.
const LOG_TAIL: usize = 20;

/// The Job running `/loadgen` from the lameduck image with `args`.
pub fn manifest(name: &str, image: &str, args: &[String]) -> Job {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "lameduck-loadgen"}},
        "spec": {
            // One run, no retry: a second attempt would hide the first one's failures.
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "lameduck-loadgen", "job": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "loadgen",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/loadgen"],
                        "args": args,
                        "ports": [{"name": "control", "containerPort": CONTROL_PORT}],
                        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    }))
    .expect("the Job manifest is well-formed")
}

/// The load generator, running as a Job in the cluster.
pub struct LoadJob {
    name: String,
    pod: String,
    pub control: Proxy,
}

impl LoadJob {
    /// Replaces any Job of the same name and waits until its control endpoint answers.
    pub async fn start(client: &Client, args: &ClusterArgs) -> Result<Self> {
        let ns = &args.namespace;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let name = args.job_name();
        let by_job = job_selector(&name);
        let _ = jobs.delete(&name, &DeleteParams::background()).await;
        wait_until_gone(&pods, &by_job).await?;
        let target = args.service_target()?;
        // The Job would only say so in its log.
        args.scenario
            .load(&target)
            .validate()
            .context("the scenario's load cannot run")?;
        let load_args = args
            .scenario
            .load_args(&target, &format!("0.0.0.0:{}", CONTROL_PORT));
        let manifest = manifest(&name, &args.image, &load_args);
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
                let control = Proxy::pod(client.clone(), ns, &pod, CONTROL_PORT);
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
    pub async fn finish(&self, client: &Client, ns: &str) -> Result<loadgen::Report> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        // A burst schedule ends by itself, and its process with it.
        if !self.ended(&pods).await? {
            self.control
                .post("/stop")
                .await
                .context("cannot stop the load generator")?;
        }
        let by_job = job_selector(&self.name);
        let mut ended = false;
        for _ in 0..480 {
            if self.ended(&pods).await? {
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

    /// Whether the load generator's pod has ended.
    async fn ended(&self, pods: &Api<Pod>) -> Result<bool> {
        let pod = retry("get the load generator's pod", || pods.get(&self.pod)).await?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        Ok(phase == "Succeeded" || phase == "Failed")
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

/// Polls the load generator's progress into `latest` once a second, and
/// keeps each answer's clock reading as a sample of the offset.
pub async fn poll_progress(
    control: Proxy,
    latest: Arc<Mutex<loadgen::Progress>>,
    clock: Arc<Mutex<Vec<clock::Sample>>>,
) {
    loop {
        let sent_ms = unix_ms();
        if let Ok(text) = control.get_once("/progress").await {
            let received_ms = unix_ms();
            if let Ok(progress) = serde_json::from_str(&text) {
                *latest.lock().unwrap() = progress;
            }
            let remote = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["now_unix_ms"].as_u64());
            if let Some(remote_ms) = remote {
                clock.lock().unwrap().push(clock::Sample {
                    sent_ms,
                    remote_ms,
                    received_ms,
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
    fn runs_loadgen_once_from_the_same_image() {
        let job = manifest("load-1", "repo/lameduck:abc", &["--rate=2000".to_owned()]);
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("repo/lameduck:abc"));
        assert_eq!(c.command.as_deref(), Some(&["/loadgen".to_owned()][..]));
        assert_eq!(c.args.as_deref(), Some(&["--rate=2000".to_owned()][..]));
    }

    #[test]
    fn the_job_runs_the_scenarios_protocol_mix() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            scenario: crate::scenario::Scenario,
        }
        let scenario = <Cli as clap::Parser>::parse_from(["e2e"]).scenario;
        let args = scenario.load_args("lameduck.default.svc.cluster.local:80", "0.0.0.0:9090");
        let job = manifest("load-1", "repo/lameduck:abc", &args);
        let pod = job.spec.unwrap().template.spec.unwrap();
        let given = pod.containers[0].args.clone().unwrap();
        crate::scenario::tests::assert_flags(&given, crate::scenario::tests::DEFAULT_MIX_FLAGS);
    }
}
