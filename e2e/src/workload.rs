//! What the chart renders, as the rollout needs it: the pod's termination
//! timeline, the container's arguments, and the rolling-update strategy.
//! Read from the rendered Deployment, so the suite runs what users deploy.
//!
//! The Deployment is read into the few fields below rather than through
//! k8s-openapi's types: those take a third of the demo's first build, and the
//! cluster backend (which needs them) is not part of it.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The parts of the Deployment the local backend plays out.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub replicas: u32,
    /// Rolling update: pods above `replicas` during a rollout.
    pub max_surge: u32,
    /// Rolling update: pods below `replicas` during a rollout.
    pub max_unavailable: u32,
    /// A new pod counts as available this long after it became ready.
    pub min_ready: Duration,
    /// The preStop sleep (zero without a hook).
    pub pre_stop: Duration,
    /// SIGKILL this long after preStop started.
    pub grace: Duration,
    /// Readiness probe period.
    pub readiness_period: Duration,
    /// The container's arguments.
    pub args: Vec<String>,
    /// Environment variables with literal values.
    pub env: Vec<(String, String)>,
}

impl Workload {
    /// Finds the Deployment in a JSON array of rendered objects.
    pub fn from_rendered(json: &str) -> Result<Self> {
        let objects: Vec<serde_json::Value> =
            serde_json::from_str(json).context("rendered chart is not a JSON array")?;
        let deployment = objects
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .context("the rendered chart has no Deployment")?;
        let deployment: Deployment =
            serde_json::from_value(deployment).context("the Deployment does not parse")?;
        Self::from_deployment(&deployment)
    }

    fn from_deployment(deployment: &Deployment) -> Result<Self> {
        let spec = &deployment.spec;
        let pod = &spec.template.spec;
        let container = pod.containers.first().context("pod without containers")?;
        let replicas = u32::try_from(spec.replicas.unwrap_or(1)).context("negative replicas")?;
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let max_surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true)?;
        let max_unavailable = scaled(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
            false,
        )?;
        let pre_stop = match container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        {
            None => Duration::ZERO,
            Some(hook) => {
                if let Some(sleep) = &hook.sleep {
                    Duration::from_secs(u64::try_from(sleep.seconds).context("negative sleep")?)
                } else if let Some(exec) = &hook.exec {
                    exec_sleep(exec.command.as_deref().unwrap_or_default())?
                } else {
                    bail!("preStop hook is neither a sleep action nor `lameduck sleep`")
                }
            }
        };
        let grace = Duration::from_secs(
            u64::try_from(pod.termination_grace_period_seconds.unwrap_or(30))
                .context("negative grace period")?,
        );
        let readiness_period = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.period_seconds)
            .map_or(Duration::from_secs(10), |s| {
                Duration::from_secs(s.unsigned_abs().into())
            });
        let env = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        Ok(Self {
            replicas,
            max_surge,
            max_unavailable,
            min_ready: Duration::from_secs(
                u64::try_from(spec.min_ready_seconds.unwrap_or(0))
                    .context("negative minReadySeconds")?,
            ),
            pre_stop,
            grace,
            readiness_period,
            args: container.args.clone().unwrap_or_default(),
            env,
        })
    }

    /// The arguments without the given flags (and their values).
    pub fn args_without(&self, flags: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            let name = arg.split('=').next().unwrap_or(arg);
            if flags.contains(&name) {
                if !arg.contains('=') {
                    args.next();
                }
                continue;
            }
            out.push(arg.clone());
        }
        out
    }
}

// The parts of an apps/v1 Deployment read above; the rest is ignored.

#[derive(Deserialize)]
struct Deployment {
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: Option<i32>,
    min_ready_seconds: Option<i32>,
    strategy: Option<Strategy>,
    template: PodTemplate,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Strategy {
    rolling_update: Option<RollingUpdate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RollingUpdate {
    max_surge: Option<IntOrString>,
    max_unavailable: Option<IntOrString>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i32),
    String(String),
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    termination_grace_period_seconds: Option<i64>,
    containers: Vec<Container>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    args: Option<Vec<String>>,
    env: Option<Vec<EnvVar>>,
    readiness_probe: Option<Probe>,
    lifecycle: Option<Lifecycle>,
}

/// `value` is absent for `valueFrom`.
#[derive(Deserialize)]
struct EnvVar {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    period_seconds: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lifecycle {
    pre_stop: Option<Hook>,
}

#[derive(Deserialize)]
struct Hook {
    exec: Option<Exec>,
    sleep: Option<Sleep>,
}

#[derive(Deserialize)]
struct Exec {
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Sleep {
    seconds: i64,
}

/// `["/lameduck", "sleep", "5s"]` → 5 s.
fn exec_sleep(command: &[String]) -> Result<Duration> {
    match command {
        [_, sleep, duration] if sleep == "sleep" => humantime::parse_duration(duration)
            .with_context(|| format!("preStop sleep duration {duration:?}")),
        _ => bail!("preStop exec {command:?} is not `lameduck sleep <duration>`"),
    }
}

/// An absolute or percentage rolling-update bound, as the Deployment
/// controller resolves it: surge rounds up, unavailable rounds down.
fn scaled(value: Option<&IntOrString>, replicas: u32, round_up: bool) -> Result<u32> {
    // Both bounds default to 25 %.
    let default = IntOrString::String("25%".to_owned());
    Ok(match value.unwrap_or(&default) {
        IntOrString::Int(n) => u32::try_from(*n).context("negative rolling-update bound")?,
        IntOrString::String(s) => {
            let percent: u32 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("rolling-update bound {s:?}"))?;
            if round_up {
                (replicas * percent).div_ceil(100)
            } else {
                replicas * percent / 100
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"[
      {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "x"}},
      {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "lameduck"},
       "spec": {"replicas": 3, "minReadySeconds": 5,
         "selector": {"matchLabels": {"a": "b"}},
         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
         "template": {"spec": {"terminationGracePeriodSeconds": 30, "containers": [{
           "name": "lameduck", "args": ["serve", "--listen=0.0.0.0:8080", "--drain-delay=0s", "--log-format", "json"],
           "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                   {"name": "RUST_LOG", "value": "debug"}],
           "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 2},
           "lifecycle": {"preStop": {"exec": {"command": ["/lameduck", "sleep", "5s"]}}}}]}}}}
    ]"#;

    #[test]
    fn reads_the_rendered_deployment() {
        let w = Workload::from_rendered(RENDERED).unwrap();
        assert_eq!((w.replicas, w.max_surge, w.max_unavailable), (3, 1, 0));
        assert_eq!(w.pre_stop, Duration::from_secs(5));
        assert_eq!(w.grace, Duration::from_secs(30));
        assert_eq!(w.min_ready, Duration::from_secs(5));
        assert_eq!(w.readiness_period, Duration::from_secs(2));
        assert_eq!(w.env, vec![("RUST_LOG".to_owned(), "debug".to_owned())]);
        assert_eq!(
            w.args_without(&["--listen", "--log-format"]),
            vec!["serve", "--drain-delay=0s"]
        );
    }

    #[test]
    fn native_sleep_and_no_hook() {
        let sleep = RENDERED.replace(
            r#"{"exec": {"command": ["/lameduck", "sleep", "5s"]}}"#,
            r#"{"sleep": {"seconds": 7}}"#,
        );
        assert_eq!(
            Workload::from_rendered(&sleep).unwrap().pre_stop,
            Duration::from_secs(7)
        );
        let none = RENDERED.replace(
            r#""lifecycle": {"preStop": {"exec": {"command": ["/lameduck", "sleep", "5s"]}}}"#,
            r#""lifecycle": {}"#,
        );
        assert_eq!(
            Workload::from_rendered(&none).unwrap().pre_stop,
            Duration::ZERO
        );
    }

    #[test]
    fn percentages_resolve_like_the_controller() {
        let pct = |s: &str| IntOrString::String(s.to_owned());
        assert_eq!(scaled(Some(&pct("25%")), 3, true).unwrap(), 1);
        assert_eq!(scaled(Some(&pct("25%")), 3, false).unwrap(), 0);
        assert_eq!(scaled(None, 10, true).unwrap(), 3);
        assert_eq!(scaled(None, 10, false).unwrap(), 2);
        assert!(scaled(Some(&pct("lots")), 3, true).is_err());
    }
}
