//! The report of a run, and the progress snapshot; both are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::outcome::{Kind, Origin};

/// Version of the report format; bumped on incompatible changes.
///
/// 2: HTTP/2 mode (`modes.http2`, `mode: "http2"` in error samples) and the
/// outcome kind `refused_resent`, which `sent == outcomes.total()` counts.
///
/// 3: long-lived clients (`streams`, `stream_failures`), which
/// [`Report::is_clean`] takes into account.
///
/// 4: `POST /` requests (`routes.echo`, `methods`, the failure kind
/// `wrong_echo`), error statuses by origin (`status_by_origin` in every
/// `outcomes`), answers per replica header (`answered_by`,
/// `served_in_shutdown`), failures located per second
/// (`timeline[].failures`), and the wall clock in progress snapshots
/// (`now_unix_ms`).
///
/// 5: burst schedules (`config.bursts`; `bursts`, how the schedule was
/// kept; the stop reason `bursts_done`).
pub const REPORT_VERSION: u32 = 5;

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
    /// With a burst schedule: how it was kept, burst by burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursts: Option<BurstsReport>,
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
    /// Outcomes per request method (`GET` and `POST`), and within each per
    /// connection mode and protocol.
    #[serde(default)]
    pub methods: Methods,
    /// `GET /` answers (2xx) per replica name, the body of the response.
    pub served_by: BTreeMap<String, u64>,
    /// Answers (2xx: `ok` and `refused_resent`) of every route and protocol
    /// per replica, as named by their `lameduck-replica` header; answers
    /// without it are not counted here (a target that never sets it leaves
    /// this empty).
    #[serde(default)]
    pub answered_by: BTreeMap<String, u64>,
    /// Of `answered_by`, those that also carried `lameduck-phase`: answered
    /// after the replica's shutdown had begun (after its SIGTERM), on the
    /// server's own account.
    #[serde(default)]
    pub served_in_shutdown: BTreeMap<String, u64>,
    /// One entry per second of the run.
    pub timeline: Vec<Second>,
    /// The first failures' messages, verbatim.
    pub errors: Vec<ErrorSample>,
    /// The long-lived clients: Server-Sent Events and WebSockets.
    #[serde(default)]
    pub streams: Streams,
    /// Failed streams of both kinds (`streams.sse.failed +
    /// streams.ws.failed`).
    #[serde(default)]
    pub stream_failures: u64,
}

impl Report {
    /// No failed request or stream, and every scheduled request started and
    /// finished. Requests refused unprocessed and resent (`refused_resent`)
    /// and WebSocket messages resent after a server's close
    /// (`resent_after_close`) do not make a run unclean: they are counted on
    /// their own, to be judged.
    pub fn is_clean(&self) -> bool {
        self.failures == 0
            && self.stream_failures == 0
            && self.outcomes.aborted == 0
            && self.not_started == 0
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
    /// The last burst of a burst schedule was dispatched.
    BurstsDone,
}

/// How a burst schedule was kept. A burst's requests are all due at its
/// instant, so their start delays also count in `late_start` and
/// `max_start_delay_ms` like any request's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BurstsReport {
    /// Bursts whose instant came and whose requests were dispatched
    /// (`config.bursts.count` unless the run was stopped).
    pub started: u64,
    /// The longest delay between a burst's instant and the start of its
    /// first request.
    pub max_start_delay_ms: f64,
    /// The longest spread of one burst: from its first request's start to
    /// its last one's.
    pub max_spread_ms: f64,
    /// One entry per started burst, in order.
    pub per_burst: Vec<BurstReport>,
}

/// One burst.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BurstReport {
    /// When it was due, from the start of the run (`started_unix_ms`).
    pub at_ms: f64,
    /// Its requests that started.
    pub sent: u64,
    /// Its requests that failed (as counted in `failures`).
    pub failures: u64,
    /// From its instant to its first request's start.
    pub start_delay_ms: f64,
    /// From its first request's start to its last one's.
    pub spread_ms: f64,
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
    /// `POST /` answered with a 2xx whose body is not the one sent.
    #[serde(default)]
    pub wrong_echo: u64,
    /// The `status` responses again, by who produced them.
    #[serde(default)]
    pub status_by_origin: StatusByOrigin,
}

/// Non-2xx responses per status code, by whether they carried the
/// application's `lameduck-replica` header. Invariant: per code,
/// `application + no_marker` is [`Outcomes::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusByOrigin {
    /// Answered by the application itself (e.g. its 404 or 413).
    pub application: BTreeMap<u16, u64>,
    /// Without the header: a proxy in between (its 502, 503, 504), or a
    /// target that never sets it.
    pub no_marker: BTreeMap<u16, u64>,
}

impl StatusByOrigin {
    /// All of them, from either origin.
    pub fn total(&self) -> u64 {
        self.application.values().sum::<u64>() + self.no_marker.values().sum::<u64>()
    }
}

impl Outcomes {
    /// Counts one outcome; `status` and `origin` are used for
    /// [`Kind::Status`].
    pub fn add(&mut self, kind: Kind, status: u16, origin: Origin) {
        match kind {
            Kind::Ok => self.ok += 1,
            Kind::Status => {
                *self.status.entry(status).or_default() += 1;
                let by_origin = match origin {
                    Origin::Application => &mut self.status_by_origin.application,
                    Origin::NoMarker => &mut self.status_by_origin.no_marker,
                };
                *by_origin.entry(status).or_default() += 1;
            }
            Kind::ConnectRefused => self.connect_refused += 1,
            Kind::ConnectError => self.connect_error += 1,
            Kind::Reset => self.reset += 1,
            Kind::Timeout => self.timeout += 1,
            Kind::Other => self.other += 1,
            Kind::Aborted => self.aborted += 1,
            Kind::RefusedResent => self.refused_resent += 1,
            Kind::WrongEcho => self.wrong_echo += 1,
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
            + self.wrong_echo
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

/// Numbers for `GET /`, `GET /work` and `POST /`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// `GET /`.
    pub root: RouteReport,
    /// `GET /work?ms=…`.
    pub work: RouteReport,
    /// `POST /`, whose answer must echo its body.
    #[serde(default)]
    pub echo: RouteReport,
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

/// Numbers for one request method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodReport {
    /// Requests started.
    pub sent: u64,
    /// Their outcomes.
    pub outcomes: Outcomes,
    /// The same per connection mode and protocol.
    pub modes: Modes,
}

/// Numbers per request method: a proxy may retry a `GET` on its own, never
/// a `POST`, so a failure a proxy hid from `GET`s shows on `POST`s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Methods {
    /// `GET /` and `GET /work`.
    pub get: MethodReport,
    /// `POST /`.
    pub post: MethodReport,
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
    /// Failures observed in this second, located: requests by protocol and
    /// by method (in the second they ended), long-lived streams by kind (in
    /// the second they failed).
    #[serde(default)]
    pub failures: SecondFailures,
}

/// The failures of one second, split two ways for requests (each way adds
/// up to the second's failed `outcomes`) and by kind for streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFailures {
    /// Failed requests on pooled HTTP/1.1 connections.
    pub keepalive: u64,
    /// Failed requests on fresh HTTP/1.1 connections.
    pub fresh: u64,
    /// Failed HTTP/2 requests.
    pub http2: u64,
    /// Failed `GET`s.
    pub get: u64,
    /// Failed `POST`s.
    pub post: u64,
    /// Failed Server-Sent Events streams and attempts to open one.
    pub sse: u64,
    /// Failed WebSocket streams and attempts to open one.
    pub ws: u64,
}

impl SecondFailures {
    /// Failed requests (either way of counting them).
    pub fn requests(&self) -> u64 {
        self.keepalive + self.fresh + self.http2
    }

    /// Failed streams of both kinds.
    pub fn streams(&self) -> u64 {
        self.sse + self.ws
    }
}

/// Puts the long-lived clients' failures, counted per second of the run
/// (`[sse, ws]` for second `i`), into the timeline, which grows to hold
/// them if need be.
pub(crate) fn place_stream_failures(
    timeline: &mut Vec<Second>,
    started_unix_ms: u64,
    per_second: &[[u64; 2]],
) {
    for (i, [sse, ws]) in per_second.iter().enumerate() {
        if sse + ws == 0 {
            continue;
        }
        while timeline.len() <= i {
            timeline.push(Second {
                t_unix_ms: started_unix_ms + 1000 * timeline.len() as u64,
                ..Second::default()
            });
        }
        timeline[i].failures.sse += sse;
        timeline[i].failures.ws += ws;
    }
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

/// The long-lived clients of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streams {
    /// `GET /events` readers (Server-Sent Events).
    pub sse: StreamReport,
    /// `GET /ws` echo clients (WebSocket).
    pub ws: StreamReport,
}

impl Streams {
    /// Failed streams of both kinds.
    pub fn failed(&self) -> u64 {
        self.sse.failed + self.ws.failed
    }
}

/// One kind of long-lived client. A client holds one stream at a time and
/// opens the next when it ends, until the run ends. Invariant: `opened ==
/// ended_clean + closed_by_client + failures.after_open()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReport {
    /// Clients configured.
    pub clients: u64,
    /// Streams opened (SSE: a 200 `text/event-stream` head; WebSocket: a
    /// completed handshake).
    pub opened: u64,
    /// Streams the server ended cleanly (SSE: its `shutdown` event, then the
    /// end of the body; WebSocket: a close frame with 1000 or 1001).
    pub ended_clean: u64,
    /// Streams still open when the run ended, closed by the client.
    pub closed_by_client: u64,
    /// New streams opened after a clean end (to another replica, in a
    /// rollout). Not a failure.
    pub reconnects: u64,
    /// Failed attempts and streams: the sum of `failures`.
    pub failed: u64,
    /// Failures by cause.
    pub failures: StreamFailures,
    /// SSE: `tick` events received.
    pub events: u64,
    /// WebSocket: messages sent (resends included).
    pub messages_sent: u64,
    /// WebSocket: messages echoed back.
    pub messages_echoed: u64,
    /// WebSocket: messages not yet echoed when the server closed cleanly,
    /// sent again on the next stream (where they must be echoed). Not a
    /// failure.
    pub resent_after_close: u64,
    /// SSE: streams per replica, as named by their first event (a stream
    /// closed by the client before its first event is not counted here).
    pub served_by: BTreeMap<String, u64>,
    /// The first failures' messages, verbatim.
    pub errors: Vec<StreamErrorSample>,
}

/// Why a stream, or an attempt to open one, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamFailure {
    /// The TCP connect was refused.
    ConnectRefused,
    /// The TCP connect failed otherwise.
    ConnectError,
    /// The server answered with another status than 200 (SSE) or 101
    /// (WebSocket).
    Status,
    /// No stream was opened for another reason: the connection broke or
    /// timed out before the response head, the head was not a stream's
    /// (SSE: not `text/event-stream`), or the WebSocket handshake failed.
    Handshake,
    /// The connection of an open stream broke.
    Reset,
    /// The stream ended without its final event or close frame.
    Truncated,
    /// The server closed a WebSocket with another code than 1000 or 1001.
    CloseCode,
    /// A message sent was not echoed within the timeout.
    Unechoed,
    /// An open stream went quiet: no event within the timeout.
    Stalled,
    /// The server sent something the client cannot read on an open stream:
    /// a bad event, a wrong echo.
    Malformed,
}

/// Failures per cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFailures {
    /// See [`StreamFailure::ConnectRefused`].
    pub connect_refused: u64,
    /// See [`StreamFailure::ConnectError`].
    pub connect_error: u64,
    /// See [`StreamFailure::Status`].
    pub status: u64,
    /// See [`StreamFailure::Handshake`].
    pub handshake: u64,
    /// See [`StreamFailure::Reset`].
    pub reset: u64,
    /// See [`StreamFailure::Truncated`].
    pub truncated: u64,
    /// See [`StreamFailure::CloseCode`].
    pub close_code: u64,
    /// See [`StreamFailure::Unechoed`].
    pub unechoed: u64,
    /// See [`StreamFailure::Stalled`].
    pub stalled: u64,
    /// See [`StreamFailure::Malformed`].
    pub malformed: u64,
}

impl StreamFailures {
    /// Counts one failure.
    pub fn add(&mut self, cause: StreamFailure) {
        let n = match cause {
            StreamFailure::ConnectRefused => &mut self.connect_refused,
            StreamFailure::ConnectError => &mut self.connect_error,
            StreamFailure::Status => &mut self.status,
            StreamFailure::Handshake => &mut self.handshake,
            StreamFailure::Reset => &mut self.reset,
            StreamFailure::Truncated => &mut self.truncated,
            StreamFailure::CloseCode => &mut self.close_code,
            StreamFailure::Unechoed => &mut self.unechoed,
            StreamFailure::Stalled => &mut self.stalled,
            StreamFailure::Malformed => &mut self.malformed,
        };
        *n += 1;
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.before_open() + self.after_open()
    }

    /// Failed attempts to open a stream (no stream was opened).
    pub fn before_open(&self) -> u64 {
        self.connect_refused + self.connect_error + self.status + self.handshake
    }

    /// Opened streams that failed.
    pub fn after_open(&self) -> u64 {
        self.reset
            + self.truncated
            + self.close_code
            + self.unechoed
            + self.stalled
            + self.malformed
    }
}

/// A stream failure's message, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamErrorSample {
    /// When it failed, Unix milliseconds.
    pub at_unix_ms: u64,
    /// The cause.
    pub cause: StreamFailure,
    /// What happened.
    pub message: String,
}

/// A live snapshot (`--progress`, `GET /progress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The load generator's wall clock when the snapshot was taken, Unix
    /// milliseconds: a caller on another machine that polls `/progress`
    /// measures the offset between the two clocks from it (the sample with
    /// the shortest round trip bounds the error by half that trip).
    #[serde(default)]
    pub now_unix_ms: u64,
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
    /// Long-lived streams open now (both kinds).
    #[serde(default)]
    pub streams_open: u64,
    /// Failed streams so far (both kinds).
    #[serde(default)]
    pub stream_failures: u64,
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
        let (app, none) = (Origin::Application, Origin::NoMarker);
        for (k, s, origin) in [
            (Kind::Ok, 200, app),
            (Kind::Ok, 204, none),
            (Kind::Status, 503, app),
            (Kind::Status, 503, none),
            (Kind::Status, 502, none),
            (Kind::Status, 404, app),
            (Kind::Reset, 0, none),
            (Kind::Timeout, 0, none),
            (Kind::ConnectRefused, 0, none),
            (Kind::ConnectError, 0, none),
            (Kind::Other, 0, none),
            (Kind::Aborted, 0, none),
            (Kind::RefusedResent, 200, app),
            (Kind::WrongEcho, 200, app),
        ] {
            o.add(k, s, origin);
        }
        assert_eq!(o.ok, 2);
        assert_eq!(o.status, BTreeMap::from([(404, 1), (502, 1), (503, 2)]));
        assert_eq!(
            o.status_by_origin,
            StatusByOrigin {
                application: BTreeMap::from([(404, 1), (503, 1)]),
                no_marker: BTreeMap::from([(502, 1), (503, 1)]),
            }
        );
        assert_eq!(o.status_by_origin.total(), 4);
        assert_eq!(o.failures(), 10);
        assert_eq!(o.refused_resent, 1);
        assert_eq!(o.wrong_echo, 1);
        assert_eq!(o.total(), 14);
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
            &["refused_resent", "wrong_echo", "status_by_origin"],
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
    fn stream_failures_land_in_their_second() {
        let mut timeline = vec![Second {
            t_unix_ms: 5000,
            sent: 3,
            ..Second::default()
        }];
        place_stream_failures(&mut timeline, 5000, &[[1, 0], [0, 0], [0, 0], [2, 3]]);
        assert_eq!(timeline.len(), 4);
        assert_eq!((timeline[0].sent, timeline[0].failures.sse), (3, 1));
        assert_eq!(timeline[1].failures, SecondFailures::default());
        assert_eq!(timeline[3].t_unix_ms, 8000);
        assert_eq!((timeline[3].failures.sse, timeline[3].failures.ws), (2, 3));
        assert_eq!(timeline[3].failures.streams(), 5);
        // Nothing to place: nothing grows.
        let mut short = Vec::new();
        place_stream_failures(&mut short, 0, &[[0, 0], [0, 0]]);
        assert!(short.is_empty());
    }

    #[test]
    fn status_codes_are_json_object_keys() {
        let mut o = Outcomes::default();
        o.add(Kind::Status, 503, Origin::NoMarker);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["status_by_origin"]["no_marker"]["503"], 1);
        let back: Outcomes = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }
}
