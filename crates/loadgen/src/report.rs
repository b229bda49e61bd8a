//! The report of a run, and the progress snapshot; both are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::outcome::Kind;

/// Version of the report format; bumped on incompatible changes.
///
/// 2: HTTP/2 mode (`modes.http2`, `mode: "http2"` in error samples) and the
/// outcome kind `refused_resent`, which `sent == outcomes.total()` counts.
pub const REPORT_VERSION: u32 = 2;

/// Everything a run observed. Invariant: `sent == outcomes.total()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The configuration, as given.
    pub config: Config,
    /// The address the target resolved to (once, at the start).
    pub target_addr: String,
    /// Wall-clock start, Unix milliseconds.
    pub started_unix_ms: u64,
    /// From the start to the end of the drain.
    pub elapsed_ms: u64,
    /// Why scheduling ended.
    pub stop_reason: StopReason,
    /// Requests whose slot came and that were handed to a connection mode.
    pub scheduled: u64,
    /// Requests started (connect or send begun); each has one outcome.
    pub sent: u64,
    /// Dispatched but never started: still waiting for a pooled connection
    /// when the drain time ran out.
    pub not_started: u64,
    /// Started later than `late_after_ms` after their slot (they still count
    /// in `sent` and have an outcome).
    pub late_start: u64,
    /// The longest delay between a slot and its request's start.
    pub max_start_delay_ms: f64,
    /// Outcome of every started request.
    pub outcomes: Outcomes,
    /// Sum of the failure kinds in `outcomes` (everything but ok, aborted
    /// and refused_resent).
    pub failures: u64,
    /// Connection accounting (informational).
    pub connections: Connections,
    /// Latency of requests that got a complete response (any status).
    pub latency: Latency,
    /// The same per route.
    pub routes: Routes,
    /// Outcomes per connection mode and protocol.
    pub modes: Modes,
    /// `GET /` answers (2xx) per replica name, the body of the response.
    pub served_by: BTreeMap<String, u64>,
    /// One entry per second of the run.
    pub timeline: Vec<Second>,
    /// The first failures' messages, verbatim.
    pub errors: Vec<ErrorSample>,
}

impl Report {
    /// No failure, and every scheduled request started and finished.
    /// Requests refused unprocessed and resent (`refused_resent`) do not
    /// make a run unclean: they are counted on their own, to be judged.
    pub fn is_clean(&self) -> bool {
        self.failures == 0 && self.outcomes.aborted == 0 && self.not_started == 0
    }

    /// One line of JSON, as the binary prints it.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// Finds the last report in a log that also holds other lines (pod logs
    /// interleave stdout and stderr).
    pub fn find_in_log(log: &str) -> Option<Report> {
        log.lines()
            .rev()
            .filter(|l| l.trim_start().starts_with('{'))
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    }
}

/// Why the scheduler stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The configured duration passed.
    Duration,
    /// The configured number of requests was scheduled.
    MaxRequests,
    /// A stop was requested (signal, `POST /stop`, the stop future).
    Stopped,
}

/// Counts per outcome kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// 2xx responses.
    pub ok: u64,
    /// Other responses, per status code.
    pub status: BTreeMap<u16, u64>,
    /// Connects refused.
    pub connect_refused: u64,
    /// Other connect failures.
    pub connect_error: u64,
    /// Connections reset or closed before a complete response.
    pub reset: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Other errors (e.g. malformed responses).
    pub other: u64,
    /// Cut off by the drain timeout (not a server failure, but no answer).
    pub aborted: u64,
    /// HTTP/2 requests the server refused unprocessed (GOAWAY or
    /// REFUSED_STREAM), resent once and then answered with a 2xx. Neither
    /// ok nor a failure.
    #[serde(default)]
    pub refused_resent: u64,
}

impl Outcomes {
    /// Counts one outcome; `status` is used for [`Kind::Status`].
    pub fn add(&mut self, kind: Kind, status: u16) {
        match kind {
            Kind::Ok => self.ok += 1,
            Kind::Status => *self.status.entry(status).or_default() += 1,
            Kind::ConnectRefused => self.connect_refused += 1,
            Kind::ConnectError => self.connect_error += 1,
            Kind::Reset => self.reset += 1,
            Kind::Timeout => self.timeout += 1,
            Kind::Other => self.other += 1,
            Kind::Aborted => self.aborted += 1,
            Kind::RefusedResent => self.refused_resent += 1,
        }
    }

    /// Failed requests: everything but ok, aborted and refused_resent.
    pub fn failures(&self) -> u64 {
        self.status.values().sum::<u64>()
            + self.connect_refused
            + self.connect_error
            + self.reset
            + self.timeout
            + self.other
    }

    /// All outcomes.
    pub fn total(&self) -> u64 {
        self.ok + self.failures() + self.aborted + self.refused_resent
    }
}

/// Connection accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// TCP connections established (HTTP/1.1 and HTTP/2).
    pub opened: u64,
    /// Responses on pooled connections that carried `Connection: close` (the
    /// next request on that slot opens a new connection; not a failure).
    /// Fresh requests ask for the close themselves and are not counted.
    pub close_responses: u64,
    /// Pooled connections found closed by the server while idle, before a
    /// request was handed to them (replaced; not a failure).
    pub closed_while_idle: u64,
    /// HTTP/2 connections established (included in `opened`).
    #[serde(default)]
    pub h2_opened: u64,
    /// GOAWAY frames received on HTTP/2 connections (a graceful server sends
    /// two per connection: a warning, then the final last-stream-id).
    #[serde(default)]
    pub h2_goaways: u64,
    /// HTTP/2 requests put on another connection because theirs was going
    /// away before anything was sent (no HEADERS left the client; not an
    /// outcome of their own).
    #[serde(default)]
    pub h2_requeued_not_sent: u64,
    /// HTTP/2 requests resent once because the server refused them
    /// unprocessed; they end as `refused_resent` or as the resend's failure.
    #[serde(default)]
    pub h2_resent: u64,
}

/// Latency percentiles in milliseconds (microsecond resolution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Per-route numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    /// Requests started.
    pub sent: u64,
    /// Their outcomes.
    pub outcomes: Outcomes,
    /// Latency of those with a complete response.
    pub latency: Latency,
}

/// Numbers for `GET /` and `GET /work`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// `GET /`.
    pub root: RouteReport,
    /// `GET /work?ms=…`.
    pub work: RouteReport,
}

/// Per-mode numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeReport {
    /// Requests started.
    pub sent: u64,
    /// Their outcomes.
    pub outcomes: Outcomes,
}

/// Numbers per connection mode: HTTP/1.1 pooled and fresh, and HTTP/2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    /// HTTP/1.1 on pooled keep-alive connections.
    pub keepalive: ModeReport,
    /// HTTP/1.1 on a fresh connection per request.
    pub fresh: ModeReport,
    /// HTTP/2 streams on pooled connections.
    #[serde(default)]
    pub http2: ModeReport,
}

/// One second of the run. Requests count as sent in the second they started
/// and by outcome in the second they ended, so failures line up with what
/// the server was doing when they were observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Second {
    /// Wall-clock start of this second, Unix milliseconds.
    pub t_unix_ms: u64,
    /// Requests started.
    pub sent: u64,
    /// Requests started late.
    pub late_start: u64,
    /// Outcomes of requests that ended in this second.
    pub outcomes: Outcomes,
    /// `GET /` answers per replica.
    pub served_by: BTreeMap<String, u64>,
}

/// A failure's message, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSample {
    /// When it ended, Unix milliseconds.
    pub at_unix_ms: u64,
    /// The outcome kind.
    pub kind: Kind,
    /// The status code, for [`Kind::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `root` or `work`.
    pub route: crate::Route,
    /// `keepalive`, `fresh` or `http2`.
    pub mode: crate::Mode,
    /// Whether the request went out on a pooled connection that had already
    /// carried requests (for HTTP/2: a stream other than the first).
    pub reused_connection: bool,
    /// The error, with its causes.
    pub message: String,
}

/// A live snapshot (`--progress`, `GET /progress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Since the start of the run.
    pub elapsed_ms: u64,
    /// Requests started so far.
    pub sent: u64,
    /// Requests started in the last whole second (requests/s achieved).
    pub rate: f64,
    /// Started and not yet ended.
    pub in_flight: u64,
    /// 2xx so far.
    pub ok: u64,
    /// Failed so far.
    pub failures: u64,
    /// Late starts so far.
    pub late_start: u64,
    /// All outcomes so far.
    pub outcomes: Outcomes,
    /// A stop was requested.
    pub stopping: bool,
    /// The run has ended (the report is being or has been written).
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_sums() {
        let mut o = Outcomes::default();
        for (k, s) in [
            (Kind::Ok, 200),
            (Kind::Ok, 204),
            (Kind::Status, 503),
            (Kind::Status, 503),
            (Kind::Status, 502),
            (Kind::Reset, 0),
            (Kind::Timeout, 0),
            (Kind::ConnectRefused, 0),
            (Kind::ConnectError, 0),
            (Kind::Other, 0),
            (Kind::Aborted, 0),
            (Kind::RefusedResent, 200),
        ] {
            o.add(k, s);
        }
        assert_eq!(o.ok, 2);
        assert_eq!(o.status, BTreeMap::from([(502, 1), (503, 2)]));
        assert_eq!(o.failures(), 8);
        assert_eq!(o.refused_resent, 1);
        assert_eq!(o.total(), 12);
    }

    #[test]
    fn version_1_parts_still_parse() {
        // The parts as version 1 wrote them: without the HTTP/2 fields.
        let v1 = |value: serde_json::Value, fields: &[&str]| {
            let mut value = value;
            for f in fields {
                value.as_object_mut().unwrap().remove(*f).unwrap();
            }
            value
        };
        let outcomes = v1(
            serde_json::to_value(Outcomes::default()).unwrap(),
            &["refused_resent"],
        );
        let o: Outcomes = serde_json::from_value(outcomes.clone()).unwrap();
        assert_eq!(o, Outcomes::default());
        let connections = v1(
            serde_json::to_value(Connections::default()).unwrap(),
            &[
                "h2_opened",
                "h2_goaways",
                "h2_requeued_not_sent",
                "h2_resent",
            ],
        );
        let c: Connections = serde_json::from_value(connections).unwrap();
        assert_eq!(c, Connections::default());
        let mode = serde_json::json!({ "sent": 0, "outcomes": outcomes });
        let m: Modes =
            serde_json::from_value(serde_json::json!({ "keepalive": mode, "fresh": mode }))
                .unwrap();
        assert_eq!(m, Modes::default());
    }

    #[test]
    fn status_codes_are_json_object_keys() {
        let mut o = Outcomes::default();
        o.add(Kind::Status, 503);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["status"]["503"], 1);
        let back: Outcomes = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }
}
