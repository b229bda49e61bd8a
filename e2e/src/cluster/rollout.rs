//! A rolling restart through the API, and when it is done: the same answer
//! as `kubectl rollout status`, plus what that command does not wait for:
//! each old pod actually gone, asked of the API rather than of the watch.
//!
//! Checking only the `Available`/`Progressing` conditions (or
//! `is_deployment_completed`) can pass before the controller has even seen
//! the new template: the status must first describe the current generation.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use super::api::retry;
use crate::timeline::unix_ms;

/// How often a Deployment's status or a pod is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Longest a single rollout, or the end of its old pods, may take.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);

/// A pod as the API names it: a name can come back with a new uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodId {
    pub name: String,
    pub uid: String,
}

/// The pods matching `selector` that are not being deleted: before a
/// restart, the ones it will replace.
pub async fn live_pods(pods: &Api<Pod>, selector: &str) -> Result<Vec<PodId>> {
    let by_selector = ListParams::default().labels(selector);
    let list = retry("list pods", || pods.list(&by_selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            Some(PodId {
                name: p.metadata.name?,
                uid: p.metadata.uid?,
            })
        })
        .collect())
}

/// What `kubectl rollout restart` does: a new pod-template annotation.
pub async fn restart(deployments: &Api<Deployment>, name: &str, round: u32) -> Result<()> {
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
pub async fn wait_complete(deployments: &Api<Deployment>, name: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        let deployment = retry("get the Deployment", || deployments.get(name)).await?;
        match status(&deployment) {
            Rollout::Complete => return Ok(()),
            Rollout::Failed(why) => bail!("rollout failed: {why}"),
            Rollout::Waiting(why) if tokio::time::Instant::now() > deadline => {
                bail!("rollout did not complete within {ROLLOUT_TIMEOUT:?}: {why}")
            }
            Rollout::Waiting(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Waits until the API no longer has any of `old` (the pod is gone, or its
/// name belongs to another uid). The kubelet deletes a pod for good only
/// once its containers are gone, so this is when the pod's whole
/// termination has been written.
pub async fn wait_gone(pods: &Api<Pod>, old: &[PodId]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    for pod in old {
        loop {
            let now = retry("get a pod", || pods.get_opt(&pod.name)).await?;
            if now.is_none_or(|p| p.metadata.uid.as_deref() != Some(&pod.uid)) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "pod {} still there {ROLLOUT_TIMEOUT:?} after the rollout",
                    pod.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Still going; the reason, in kubectl's words.
    Waiting(String),
    /// Every replica is updated and available, no old replica is left.
    Complete,
    /// The controller gave up (progress deadline exceeded).
    Failed(String),
}

/// `kubectl rollout status` for one Deployment.
pub fn status(deployment: &Deployment) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = deployment.status.as_ref() else {
        return Rollout::Waiting("no status yet".to_owned());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting(
            "waiting for the deployment spec update to be observed".to_owned(),
        );
    }
    let progress_failed = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if progress_failed {
        return Rollout::Failed("progress deadline exceeded".to_owned());
    }
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        return Rollout::Waiting(format!(
            "{updated} out of {wanted} new replicas have been updated"
        ));
    }
    if total > updated {
        return Rollout::Waiting(format!(
            "{} old replicas are pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Rollout::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Rollout::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, spec_replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lameduck", "generation": generation},
            "spec": {"replicas": spec_replicas, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_status_of_the_previous_generation_is_not_complete() {
        // Everything looks available, but it describes the old template: the
        // controller has not seen the restart yet.
        let d = deployment(
            3,
            3,
            serde_json::json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                "availableReplicas": 3, "readyReplicas": 3,
                "conditions": [{"type": "Available", "status": "True"},
                               {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}),
        );
        assert!(matches!(status(&d), Rollout::Waiting(w) if w.contains("observed")));
    }

    #[test]
    fn waits_through_each_stage_of_a_rollout() {
        let stages = [
            (
                serde_json::json!({"observedGeneration": 3, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
                "1 out of 3 new replicas",
            ),
            (
                serde_json::json!({"observedGeneration": 3, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
                "1 old replicas are pending termination",
            ),
            (
                serde_json::json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
                "2 of 3 updated replicas are available",
            ),
        ];
        for (s, reason) in stages {
            match status(&deployment(3, 3, s)) {
                Rollout::Waiting(w) => assert!(w.contains(reason), "{w}"),
                other => panic!("{other:?}"),
            }
        }
        let done = serde_json::json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(status(&deployment(3, 3, done)), Rollout::Complete);
    }

    #[test]
    fn a_progress_deadline_fails_the_rollout() {
        let s = serde_json::json!({"observedGeneration": 3, "replicas": 4, "updatedReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        assert!(matches!(status(&deployment(3, 3, s)), Rollout::Failed(_)));
    }
}
