//! Bookkeeping of the server pods as the API server shows them: when each
//! became ready, started terminating, and was last seen; what its own
//! `/metrics` said while it shut down.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::kind::rollout::terminating_since_ms;
use crate::timeline::ReplicaRecord;

/// The last shutdown metrics scraped from a terminating pod.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShutdownSample {
    pub phase: f64,
    pub duration_seconds: f64,
}

/// Everything seen of one pod.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub generation: u32,
    pub first_seen_ms: u64,
    pub ready_ms: Option<u64>,
    pub terminating_ms: Option<u64>,
    pub last_seen_ms: u64,
    pub exit_code: Option<i32>,
    pub gone: bool,
    pub shutdown: Option<ShutdownSample>,
}

/// Pods by name.
#[derive(Debug, Default)]
pub struct Pods {
    pub seen: BTreeMap<String, Seen>,
}

impl Pods {
    /// Takes in one listing made at `now_ms` during rollout `generation`.
    pub fn observe(&mut self, pods: &[Pod], now_ms: u64, generation: u32) {
        for pod in pods {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let seen = self.seen.entry(name).or_insert_with(|| Seen {
                generation,
                first_seen_ms: now_ms,
                ..Seen::default()
            });
            seen.last_seen_ms = now_ms;
            if seen.ready_ms.is_none() && is_ready(pod) {
                seen.ready_ms = Some(now_ms);
            }
            if seen.terminating_ms.is_none() {
                seen.terminating_ms = terminating_since_ms(pod);
            }
            if let Some(code) = exit_code(pod) {
                seen.exit_code = Some(code);
            }
        }
        let listed: Vec<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        for (name, seen) in &mut self.seen {
            if !listed.contains(&name.as_str()) {
                seen.gone = true;
            }
        }
    }

    /// Pods that are terminating and still there.
    pub fn terminating(&self) -> impl Iterator<Item = &str> {
        self.seen
            .iter()
            .filter(|(_, s)| s.terminating_ms.is_some() && !s.gone)
            .map(|(n, _)| n.as_str())
    }

    /// Pods that are ready and not terminating.
    pub fn serving(&self) -> usize {
        self.seen
            .values()
            .filter(|s| s.ready_ms.is_some() && s.terminating_ms.is_none() && !s.gone)
            .count()
    }

    pub fn records(&self) -> Vec<ReplicaRecord> {
        self.seen
            .iter()
            .map(|(name, s)| ReplicaRecord {
                name: name.clone(),
                generation: s.generation,
                started_ms: s.first_seen_ms,
                ready_ms: s.ready_ms,
                terminating_ms: s.terminating_ms,
                // The kubelet's SIGTERM is not visible from the API server.
                sigterm_ms: None,
                exited_ms: s.gone.then_some(s.last_seen_ms),
                exit_code: s.exit_code,
                killed: s.exit_code == Some(137),
                aborted_requests: None,
            })
            .collect()
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| Some(c.state.as_ref()?.terminated.as_ref()?.exit_code))
}

/// The value of an unlabelled sample in Prometheus text format.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.split_once(' ')?;
        (series == name)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, deleting: Option<&str>, exit: Option<i32>) -> Pod {
        let mut p = serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if let Some(at) = deleting {
            p["metadata"]["deletionTimestamp"] = at.into();
            p["metadata"]["deletionGracePeriodSeconds"] = 30.into();
        }
        if let Some(code) = exit {
            p["status"]["containerStatuses"] = serde_json::json!([{
                "name": "lameduck", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}
            }]);
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn follows_a_pod_from_ready_to_gone() {
        let mut pods = Pods::default();
        pods.observe(&[pod("a", false, None, None)], 1_000, 0);
        pods.observe(&[pod("a", true, None, None)], 2_000, 0);
        assert_eq!(pods.serving(), 1);
        pods.observe(
            &[
                pod("a", true, Some("2026-01-01T00:00:30Z"), None),
                pod("b", true, None, None),
            ],
            3_000,
            1,
        );
        assert_eq!(pods.terminating().collect::<Vec<_>>(), ["a"]);
        assert_eq!(pods.serving(), 1);
        pods.observe(
            &[
                pod("a", false, Some("2026-01-01T00:00:30Z"), Some(0)),
                pod("b", true, None, None),
            ],
            4_000,
            1,
        );
        pods.observe(&[pod("b", true, None, None)], 5_000, 1);
        let records = pods.records();
        let a = &records[0];
        assert_eq!(
            (a.ready_ms, a.terminating_ms),
            (Some(2_000), Some(1_767_225_600_000))
        );
        assert_eq!(
            (a.exited_ms, a.exit_code, a.killed),
            (Some(4_000), Some(0), false)
        );
        assert_eq!(records[1].generation, 1);
        assert!(records[1].exited_ms.is_none());
    }

    #[test]
    fn reads_unlabelled_samples() {
        let text = "# HELP x\nlameduck_shutdown_phase 2\nlameduck_shutdown_duration_seconds 0.75\n";
        assert_eq!(sample(text, "lameduck_shutdown_phase"), Some(2.0));
        assert_eq!(
            sample(text, "lameduck_shutdown_duration_seconds"),
            Some(0.75)
        );
        assert_eq!(sample(text, "missing"), None);
    }
}
