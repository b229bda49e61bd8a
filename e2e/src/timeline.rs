//! What one run recorded, in wall-clock Unix milliseconds so that the load
//! generator's timeline, the replicas' events and the rollout line up.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::verdict::{Expect, Termination, Verdict};

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A replica's life, as far as the backend saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaRecord {
    pub name: String,
    /// 0 for the replicas that were there before the first rollout.
    pub generation: u32,
    pub started_ms: u64,
    pub ready_ms: Option<u64>,
    pub terminating_ms: Option<u64>,
    pub sigterm_ms: Option<u64>,
    pub exited_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub killed: bool,
    /// Requests the replica itself reported as cut off.
    pub aborted_requests: Option<u64>,
}

impl ReplicaRecord {
    /// The replica as the assertions see it, once it went through
    /// termination; else what was never seen of it.
    pub fn termination(&self) -> Result<Termination, &'static str> {
        let terminating_ms = self.terminating_ms.ok_or("its deletion was never seen")?;
        let exited_ms = self.exited_ms.ok_or("its exit was never seen")?;
        if self.exit_code.is_none() {
            return Err("its exit code was never seen");
        }
        Ok(Termination {
            name: self.name.clone(),
            terminating_ms,
            sigterm_ms: self.sigterm_ms,
            exited_ms,
            killed: self.killed,
            exit_code: self.exit_code,
        })
    }
}

/// One change of a replica, as the backend saw it happen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub t_unix_ms: u64,
    pub pod: String,
    pub change: String,
}

/// One rollout: the restart, the controller done, the old replicas gone.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutSpan {
    pub started_ms: u64,
    pub completed_ms: u64,
    pub old_gone_ms: u64,
}

/// Everything a run produced; written as JSON next to its picture.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub label: String,
    pub backend: &'static str,
    pub expect: Expect,
    /// Settings worth printing: (name, value).
    pub settings: Vec<(String, String)>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub rollouts: Vec<RolloutSpan>,
    pub replicas: Vec<ReplicaRecord>,
    /// Endpoints traffic was routed to, sampled every second.
    pub routed: Vec<(u64, usize)>,
    /// Every replica transition in the order seen (the cluster backend's watch).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    pub load: loadgen::Report,
    pub verdict: Verdict,
}
