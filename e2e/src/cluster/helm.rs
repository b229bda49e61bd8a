//! The release under test as Helm installs it, and what the suite reads back
//! from its Deployment: the pod selector, the replica count and the grace
//! period.

use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;

use super::ClusterArgs;
use super::api::explain_pods;

/// `helm upgrade --install` with this run's values and image, waiting until
/// ready; if it fails, what the release's pods are waiting for.
pub async fn upgrade(args: &ClusterArgs, client: &Client) -> Result<()> {
    let (repository, tag) = args
        .image
        .rsplit_once(':')
        .context("--image must be repository:tag")?;
    let mut helm = Command::new("helm");
    helm.args(["upgrade", "--install", &args.release])
        .arg(&args.chart)
        .args(["--namespace", &args.namespace, "--create-namespace"]);
    for values in &args.values {
        helm.arg("--values").arg(values);
    }
    helm.arg(format!("--set-string=image.repository={repository}"))
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

/// The Deployment's pod selector, as a label selector string.
pub fn selector_of(deployment: &Deployment) -> Result<String> {
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

/// The pods' terminationGracePeriodSeconds.
pub fn grace_of(deployment: &Deployment) -> i64 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// The replicas the Deployment asks for.
pub fn replicas_of(deployment: &Deployment) -> usize {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .map_or(1, |n| usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_replicas_and_grace_come_from_the_deployment() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "lameduck"},
            "spec": {"replicas": 3,
                     "selector": {"matchLabels": {"app.kubernetes.io/instance": "lameduck",
                                                   "app.kubernetes.io/component": "server"}},
                     "template": {"spec": {"terminationGracePeriodSeconds": 35, "containers": []}}}
        }))
        .unwrap();
        assert_eq!(
            selector_of(&d).unwrap(),
            "app.kubernetes.io/component=server,app.kubernetes.io/instance=lameduck"
        );
        assert_eq!(grace_of(&d), 35);
        assert_eq!(replicas_of(&d), 3);
    }
}
