//! The server pods as a watch on the API server reports them: when each was
//! first seen, became ready, was deleted, when its container terminated and
//! with which exit code, and when the pod object went away.
//!
//! Times are the moments the watch delivered each change, in Unix
//! milliseconds. They are not computed from `deletionTimestamp`: when the
//! kubelet is done it deletes the pod again with grace 0, so a pod first seen
//! in that state would have the end of its termination taken for its start;
//! and API timestamps have whole-second resolution. The API's own deletion
//! time is kept as a cross-check.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use serde::Serialize;

use crate::timeline::{ReplicaRecord, Transition};
use crate::verdict::{Expect, Termination, Verdict};

/// How far the watch may be behind the API's deletion time (whole seconds).
const DELETION_SEEN_WITHIN_MS: u64 = 2_000;

/// What scraping a terminating pod's `/metrics` through the pod proxy showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ShutdownSample {
    pub scrapes: u32,
    pub highest_phase: f64,
    pub duration_seconds: f64,
}

/// The server's own account of its shutdown: the container's termination
/// message, which `lameduck --termination-log` writes at exit (the chart
/// points it at Kubernetes' `/dev/termination-log`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct Account {
    /// `clean` or `forced`.
    pub outcome: String,
    /// When the signal came, on the pod's node's clock.
    pub signal_unix_ms: u64,
    /// From the signal to the end of the shutdown.
    pub duration_ms: u64,
    /// Requests completed during the shutdown.
    pub completed: u64,
    pub aborted: u64,
    pub aborted_upgraded: u64,
    /// How long it waited for its final scrape.
    #[serde(default)]
    pub linger_ms: u64,
}

/// Everything seen of one pod.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub generation: u32,
    pub first_seen_ms: u64,
    pub ready_ms: Option<u64>,
    /// The watch delivered the pod with a deletion timestamp.
    pub deleted_ms: Option<u64>,
    /// `deletionTimestamp − deletionGracePeriodSeconds` of that event.
    pub deleted_api_ms: Option<u64>,
    /// The watch delivered the container's terminated state.
    pub exited_ms: Option<u64>,
    pub exit_code: Option<i32>,
    /// Its termination message, when it wrote one.
    pub account: Option<Account>,
    /// The pod object was deleted (or missing from a relist).
    pub gone_ms: Option<u64>,
    pub shutdown: ShutdownSample,
}

impl Seen {
    pub fn state(&self) -> &'static str {
        match (self.deleted_ms, self.ready_ms) {
            (Some(_), _) => "Terminating",
            (None, Some(_)) => "Ready",
            (None, None) => "Starting",
        }
    }
}

/// The pods by name, and every transition in the order it was seen.
#[derive(Debug, Default)]
pub struct Pods {
    pub seen: BTreeMap<String, Seen>,
    pub transitions: Vec<Transition>,
    /// Names listed since the watch restarted (a relist after 410 Gone or an error).
    relisting: Option<BTreeSet<String>>,
}

impl Pods {
    /// Takes in one watch event that arrived at `now_ms` during rollout
    /// `generation`. Returns the pods whose deletion this event revealed.
    pub fn apply(&mut self, event: Event<Pod>, now_ms: u64, generation: u32) -> Vec<String> {
        match event {
            Event::Apply(pod) => self.observe(&pod, now_ms, generation),
            Event::Delete(pod) => {
                let deleted = self.observe(&pod, now_ms, generation);
                if let Some(name) = pod.metadata.name {
                    self.gone(&name, now_ms);
                }
                deleted
            }
            Event::Init => {
                self.relisting = Some(BTreeSet::new());
                Vec::new()
            }
            Event::InitApply(pod) => {
                if let (Some(listed), Some(name)) = (&mut self.relisting, &pod.metadata.name) {
                    listed.insert(name.clone());
                }
                self.observe(&pod, now_ms, generation)
            }
            Event::InitDone => {
                // A pod deleted while the watch was down is missing from the
                // relist, and no Delete event will ever come for it.
                if let Some(listed) = self.relisting.take() {
                    let missing: Vec<String> = self
                        .seen
                        .iter()
                        .filter(|(n, s)| s.gone_ms.is_none() && !listed.contains(*n))
                        .map(|(n, _)| n.clone())
                        .collect();
                    for name in missing {
                        self.gone(&name, now_ms);
                    }
                }
                Vec::new()
            }
        }
    }

    fn note(&mut self, now_ms: u64, pod: &str, change: String) {
        self.transitions.push(Transition {
            t_unix_ms: now_ms,
            pod: pod.to_owned(),
            change,
        });
    }

    fn observe(&mut self, pod: &Pod, now_ms: u64, generation: u32) -> Vec<String> {
        let Some(name) = pod.metadata.name.clone() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let seen = self.seen.entry(name.clone()).or_insert_with(|| {
            changes.push("seen".to_owned());
            Seen {
                generation,
                first_seen_ms: now_ms,
                ..Seen::default()
            }
        });
        if seen.ready_ms.is_none() && seen.deleted_ms.is_none() && is_ready(pod) {
            seen.ready_ms = Some(now_ms);
            changes.push("ready".to_owned());
        }
        let mut deleted = Vec::new();
        if seen.deleted_ms.is_none()
            && let Some(at) = &pod.metadata.deletion_timestamp
        {
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            seen.deleted_ms = Some(now_ms);
            seen.deleted_api_ms = u64::try_from(at.0.as_millisecond() - grace * 1000).ok();
            changes.push(format!("deleted (grace {grace} s)"));
            deleted.push(name.clone());
        }
        if seen.exited_ms.is_none()
            && let Some((code, message)) = terminated(pod)
        {
            seen.exited_ms = Some(now_ms);
            seen.exit_code = Some(code);
            seen.account = message.and_then(|m| serde_json::from_str(m.trim()).ok());
            changes.push(format!("container terminated, exit code {code}"));
        }
        for change in changes {
            self.note(now_ms, &name, change);
        }
        deleted
    }

    fn gone(&mut self, name: &str, now_ms: u64) {
        if let Some(seen) = self.seen.get_mut(name)
            && seen.gone_ms.is_none()
        {
            seen.gone_ms = Some(now_ms);
            self.note(now_ms, name, "gone".to_owned());
        }
    }

    /// Pods that are ready and not being deleted.
    pub fn serving(&self) -> usize {
        self.seen
            .values()
            .filter(|s| s.ready_ms.is_some() && s.deleted_ms.is_none() && s.gone_ms.is_none())
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
                terminating_ms: s.deleted_ms,
                // The kubelet's SIGTERM is not visible from the API server;
                // the server says when it came (on its node's clock).
                sigterm_ms: s.account.as_ref().map(|a| a.signal_unix_ms),
                // Only the container's terminated state is an exit: a pod
                // that went without showing one stays unknown, and fails.
                exited_ms: s.exited_ms,
                exit_code: s.exit_code,
                killed: s.exit_code == Some(137),
                aborted_requests: s.account.as_ref().map(|a| a.aborted),
            })
            .collect()
    }
}

/// What the watch and the pod proxy showed of each terminated pod.
pub fn check(pods: &Pods, terminations: &[Termination], expect: Expect, verdict: &mut Verdict) {
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
            format!("{} showed its shutdown on /metrics through the pod proxy", t.name),
            s.highest_phase >= 1.0 && s.duration_seconds > 0.0,
            format!(
                "{} scrapes, highest lameduck_shutdown_phase {}, last lameduck_shutdown_duration_seconds {:.3}",
                s.scrapes, s.highest_phase, s.duration_seconds
            ),
        );
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The exit code and termination message of the pod's (only) container,
/// once it has terminated.
fn terminated(pod: &Pod) -> Option<(i32, Option<&str>)> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            Some((t.exit_code, t.message.as_deref()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, deleting: Option<(&str, i64)>, exit: Option<i32>) -> Pod {
        let mut p = serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if let Some((at, grace)) = deleting {
            p["metadata"]["deletionTimestamp"] = at.into();
            p["metadata"]["deletionGracePeriodSeconds"] = grace.into();
        }
        if let Some(code) = exit {
            p["status"]["containerStatuses"] = serde_json::json!([{
                "name": "lameduck", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "message": MESSAGE}}
            }]);
        }
        serde_json::from_value(p).unwrap()
    }

    /// What `lameduck --termination-log` writes.
    const MESSAGE: &str = r#"{"outcome":"clean","signal_unix_ms":8000,"duration_ms":560,"completed":31,"aborted":0,"aborted_upgraded":0,"linger_ms":310,"scrapers":[{"address":"10.0.0.9","scraped":true}],"scrapers_not_listed":0}
"#;

    #[test]
    fn follows_a_pod_from_ready_to_gone_at_the_moments_the_watch_saw() {
        let mut pods = Pods::default();
        let deleting = Some(("2026-01-01T00:00:30Z", 30));
        assert!(
            pods.apply(Event::Apply(pod("a", false, None, None)), 1_000, 0)
                .is_empty()
        );
        pods.apply(Event::Apply(pod("a", true, None, None)), 2_000, 0);
        assert_eq!(pods.serving(), 1);
        let deleted = pods.apply(Event::Apply(pod("a", true, deleting, None)), 3_000, 1);
        assert_eq!(deleted, ["a"]);
        pods.apply(Event::Apply(pod("b", true, None, None)), 3_100, 1);
        assert_eq!(pods.serving(), 1);
        pods.apply(Event::Apply(pod("a", false, deleting, Some(0))), 8_600, 1);
        // The kubelet's final delete: grace 0, the deadline now in the past.
        let last = pod("a", false, Some(("2026-01-01T00:00:06Z", 0)), Some(0));
        assert!(pods.apply(Event::Delete(last), 8_650, 1).is_empty());
        let a = &pods.seen["a"];
        assert_eq!((a.ready_ms, a.deleted_ms), (Some(2_000), Some(3_000)));
        assert_eq!(a.deleted_api_ms, Some(1_767_225_600_000));
        assert_eq!(
            (a.exited_ms, a.exit_code, a.gone_ms),
            (Some(8_600), Some(0), Some(8_650))
        );
        let record = &pods.records()[0];
        assert_eq!(
            (record.terminating_ms, record.exited_ms),
            (Some(3_000), Some(8_600))
        );
        // The server's own account: when SIGTERM came, what it cut off.
        assert_eq!(
            (record.sigterm_ms, record.aborted_requests),
            (Some(8_000), Some(0))
        );
        assert_eq!(a.account.as_ref().unwrap().completed, 31);
        let changes: Vec<_> = pods.transitions.iter().map(|t| t.change.as_str()).collect();
        assert_eq!(
            changes,
            [
                "seen",
                "ready",
                "deleted (grace 30 s)",
                "seen",
                "ready",
                "container terminated, exit code 0",
                "gone"
            ]
        );
    }

    #[test]
    fn a_pod_first_seen_at_its_final_delete_starts_terminating_then_not_earlier() {
        let mut pods = Pods::default();
        let last = pod("a", false, Some(("2026-01-01T00:00:06Z", 0)), Some(0));
        pods.apply(Event::Delete(last), 9_000, 1);
        let a = &pods.seen["a"];
        assert_eq!((a.deleted_ms, a.gone_ms), (Some(9_000), Some(9_000)));
    }

    #[test]
    fn a_relist_marks_pods_deleted_during_the_gap_gone_with_an_unknown_exit() {
        let mut pods = Pods::default();
        pods.apply(Event::Apply(pod("a", true, None, None)), 1_000, 0);
        pods.apply(Event::Apply(pod("b", true, None, None)), 1_000, 0);
        pods.apply(Event::Init, 5_000, 1);
        pods.apply(Event::InitApply(pod("b", true, None, None)), 5_010, 1);
        pods.apply(Event::InitDone, 5_020, 1);
        assert_eq!(pods.seen["a"].gone_ms, Some(5_020));
        assert_eq!(pods.seen["a"].exit_code, None);
        assert_eq!(pods.seen["b"].gone_ms, None);
        // Its record says so, and the verdict cannot take it for a termination.
        let a = pods.records().into_iter().find(|r| r.name == "a").unwrap();
        assert_eq!(a.exited_ms, None);
        assert_eq!(a.termination(), Err("its deletion was never seen"));
    }
}
