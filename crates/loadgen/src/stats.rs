//! Accounting: every start and every outcome goes through one mutex-guarded
//! record. Updates are a few counter bumps and a histogram record, so the lock
//! is held for well under a microsecond; replica names are looked up without
//! allocating and stored once per name.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::bursts::MAX_BURSTS;
use crate::config::Config;
use crate::mix::{Method, Mode, Plan, Route};
use crate::outcome::{Kind, Origin, Outcome};
use crate::report::{
    BurstReport, BurstsReport, Connections, ErrorSample, Latency, MethodReport, Methods,
    ModeReport, Modes, Outcomes, Progress, REPORT_VERSION, Report, RouteReport, Routes, Second,
    StopReason, Streams,
};

/// Latencies above an hour are clamped (timeouts are far shorter).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Replica names longer than this are cut (a Kubernetes name has at most 253).
const MAX_NAME: usize = 253;

#[derive(Debug)]
pub(crate) struct Recorder {
    late_after: Duration,
    error_cap: usize,
    inner: Mutex<Stats>,
}

#[derive(Debug)]
struct Stats {
    start: Instant,
    start_unix_ms: u64,
    done: bool,
    sent: u64,
    ended: u64,
    not_started: u64,
    late_start: u64,
    max_start_delay: Duration,
    outcomes: Outcomes,
    connections: Connections,
    latency: Histogram<u64>,
    routes: [RouteStats; 3],
    modes: [ModeReport; 3],
    /// Per method, all modes together...
    methods: [ModeReport; 2],
    /// ...and per mode.
    method_modes: [[ModeReport; 3]; 2],
    served_by: BTreeMap<String, u64>,
    answered_by: BTreeMap<String, u64>,
    served_in_shutdown: BTreeMap<String, u64>,
    timeline: Vec<Second>,
    errors: Vec<ErrorSample>,
    /// With a burst schedule, one per burst (empty otherwise).
    bursts: Vec<BurstStats>,
    bursts_started: u64,
}

/// One burst's requests. They share one due instant, so the spread of
/// their starts is the spread of their start delays.
#[derive(Debug, Clone, Copy)]
struct BurstStats {
    sent: u64,
    failures: u64,
    min_delay: Duration,
    max_delay: Duration,
}

impl Default for BurstStats {
    fn default() -> Self {
        Self {
            sent: 0,
            failures: 0,
            min_delay: Duration::MAX,
            max_delay: Duration::ZERO,
        }
    }
}

#[derive(Debug)]
struct RouteStats {
    sent: u64,
    outcomes: Outcomes,
    latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

fn route_idx(r: Route) -> usize {
    match r {
        Route::Root => 0,
        Route::Work => 1,
        Route::Echo => 2,
    }
}

fn method_idx(m: Method) -> usize {
    match m {
        Method::Get => 0,
        Method::Post => 1,
    }
}

fn mode_idx(m: Mode) -> usize {
    match m {
        Mode::Keepalive => 0,
        Mode::Fresh => 1,
        Mode::Http2 => 2,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock, Unix milliseconds.
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

impl Recorder {
    pub(crate) fn new(config: &Config) -> Self {
        let burst_count = config
            .bursts
            .map_or(0, |b| b.count.min(MAX_BURSTS) as usize);
        let route = || RouteStats {
            sent: 0,
            outcomes: Outcomes::default(),
            latency: histogram(),
        };
        Self {
            late_after: config.late_after,
            error_cap: config.error_samples,
            inner: Mutex::new(Stats {
                start: Instant::now(),
                start_unix_ms: 0,
                done: false,
                sent: 0,
                ended: 0,
                not_started: 0,
                late_start: 0,
                max_start_delay: Duration::ZERO,
                outcomes: Outcomes::default(),
                connections: Connections::default(),
                latency: histogram(),
                routes: [route(), route(), route()],
                modes: Default::default(),
                methods: Default::default(),
                method_modes: Default::default(),
                served_by: BTreeMap::new(),
                answered_by: BTreeMap::new(),
                served_in_shutdown: BTreeMap::new(),
                timeline: Vec::new(),
                errors: Vec::new(),
                bursts: vec![BurstStats::default(); burst_count],
                bursts_started: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Stats> {
        // A panic elsewhere must not take the report with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the clock; returns the instant the schedule is counted from.
    pub(crate) fn begin(&self) -> Instant {
        let mut s = self.lock();
        s.start = Instant::now();
        s.start_unix_ms = unix_now_ms();
        s.start
    }

    /// A request is about to connect or send, `now - due` after its slot;
    /// `burst` is its burst's index in a burst schedule.
    pub(crate) fn started(&self, plan: &Plan, due: Instant, now: Instant, burst: Option<u32>) {
        let delay = now.saturating_duration_since(due);
        let late = delay > self.late_after;
        let mut guard = self.lock();
        let s = &mut *guard;
        s.sent += 1;
        s.routes[route_idx(plan.route)].sent += 1;
        s.modes[mode_idx(plan.mode)].sent += 1;
        let method = method_idx(plan.route.method());
        s.methods[method].sent += 1;
        s.method_modes[method][mode_idx(plan.mode)].sent += 1;
        s.max_start_delay = s.max_start_delay.max(delay);
        s.late_start += u64::from(late);
        if let Some(b) = burst.and_then(|i| s.bursts.get_mut(i as usize)) {
            b.sent += 1;
            b.min_delay = b.min_delay.min(delay);
            b.max_delay = b.max_delay.max(delay);
        }
        let sec = s.second(now);
        sec.sent += 1;
        sec.late_start += u64::from(late);
    }

    /// The scheduler has come to a burst's instant.
    pub(crate) fn burst_started(&self) {
        self.lock().bursts_started += 1;
    }

    /// A scheduled request was dropped by a stop before it started.
    pub(crate) fn not_started(&self) {
        self.lock().not_started += 1;
    }

    pub(crate) fn connection_opened(&self) {
        self.lock().connections.opened += 1;
    }

    pub(crate) fn closed_while_idle(&self) {
        self.lock().connections.closed_while_idle += 1;
    }

    pub(crate) fn h2_connection_opened(&self) {
        let c = &mut self.lock().connections;
        c.opened += 1;
        c.h2_opened += 1;
    }

    pub(crate) fn h2_goaway(&self) {
        self.lock().connections.h2_goaways += 1;
    }

    pub(crate) fn h2_requeued_not_sent(&self) {
        self.lock().connections.h2_requeued_not_sent += 1;
    }

    pub(crate) fn h2_resent(&self) {
        self.lock().connections.h2_resent += 1;
    }

    /// A started request has its outcome.
    pub(crate) fn ended(
        &self,
        plan: &Plan,
        started: Instant,
        now: Instant,
        outcome: &Outcome,
        reused: bool,
        burst: Option<u32>,
    ) {
        let kind = outcome.kind();
        let latency_us = u64::try_from(now.saturating_duration_since(started).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // A resent request was answered by a replica all the same.
        let answered = matches!(kind, Kind::Ok | Kind::RefusedResent);
        let (status, replica, origin, marked) = match outcome {
            Outcome::Response(r) => {
                let name = (answered && plan.route == Route::Root).then(|| replica_name(&r.body));
                let origin = if r.marks.replica.is_some() {
                    Origin::Application
                } else {
                    Origin::NoMarker
                };
                let marked = r.marks.replica.as_ref().filter(|_| answered);
                let marked = marked.map(|v| (replica_name(v.as_bytes()), r.marks.in_shutdown));
                (r.status.as_u16(), name, origin, marked)
            }
            Outcome::Failed { .. } => (0, None, Origin::NoMarker, None),
        };

        let mut guard = self.lock();
        let s = &mut *guard;
        s.ended += 1;
        s.outcomes.add(kind, status, origin);
        s.modes[mode_idx(plan.mode)]
            .outcomes
            .add(kind, status, origin);
        let method = method_idx(plan.route.method());
        s.methods[method].outcomes.add(kind, status, origin);
        s.method_modes[method][mode_idx(plan.mode)]
            .outcomes
            .add(kind, status, origin);
        let route = &mut s.routes[route_idx(plan.route)];
        route.outcomes.add(kind, status, origin);
        if let Outcome::Response(r) = outcome {
            route.latency.saturating_record(latency_us);
            s.latency.saturating_record(latency_us);
            // Fresh requests ask for the close themselves; only the server's
            // own decision to end a pooled connection is of interest.
            s.connections.close_responses += u64::from(r.close && plan.mode == Mode::Keepalive);
        }
        if let Some(name) = &replica {
            bump(&mut s.served_by, name);
        }
        if let Some((name, in_shutdown)) = &marked {
            bump(&mut s.answered_by, name);
            if *in_shutdown {
                bump(&mut s.served_in_shutdown, name);
            }
        }
        if kind.is_failure()
            && let Some(b) = burst.and_then(|i| s.bursts.get_mut(i as usize))
        {
            b.failures += 1;
        }
        let sec = s.second(now);
        sec.outcomes.add(kind, status, origin);
        if kind.is_failure() {
            let f = &mut sec.failures;
            *match plan.mode {
                Mode::Keepalive => &mut f.keepalive,
                Mode::Fresh => &mut f.fresh,
                Mode::Http2 => &mut f.http2,
            } += 1;
            *match plan.route.method() {
                Method::Get => &mut f.get,
                Method::Post => &mut f.post,
            } += 1;
        }
        if let Some(name) = &replica {
            bump(&mut sec.served_by, name);
        }
        if kind.is_failure() && s.errors.len() < self.error_cap {
            let at_unix_ms = s.unix_ms(now);
            let message = match outcome {
                Outcome::Failed { message, .. } => message.clone(),
                Outcome::Response(r) => match &r.wrong_echo {
                    Some(wrong) if kind == Kind::WrongEcho => format!("HTTP {}: {wrong}", r.status),
                    _ => status_message(r),
                },
            };
            s.errors.push(ErrorSample {
                at_unix_ms,
                kind,
                status: (kind == Kind::Status).then_some(status),
                route: plan.route,
                mode: plan.mode,
                reused_connection: reused,
                message,
            });
        }
    }

    pub(crate) fn progress(&self, stopping: bool) -> Progress {
        let now_unix_ms = unix_now_ms();
        let now = Instant::now();
        let s = self.lock();
        let elapsed = now.saturating_duration_since(s.start);
        let idx = elapsed.as_secs() as usize;
        let rate = if idx >= 1 {
            s.timeline.get(idx - 1).map_or(0, |b| b.sent) as f64
        } else if elapsed.is_zero() {
            0.0
        } else {
            s.sent as f64 / elapsed.as_secs_f64()
        };
        Progress {
            now_unix_ms,
            elapsed_ms: if s.start_unix_ms == 0 {
                0
            } else {
                millis(elapsed)
            },
            sent: s.sent,
            rate,
            in_flight: s.sent - s.ended,
            ok: s.outcomes.ok,
            failures: s.outcomes.failures(),
            late_start: s.late_start,
            outcomes: s.outcomes.clone(),
            // The long-lived clients keep books of their own.
            streams_open: 0,
            stream_failures: 0,
            stopping,
            done: s.done,
        }
    }

    /// Closes the books.
    pub(crate) fn report(
        &self,
        config: &Config,
        target_addr: String,
        stop_reason: StopReason,
        scheduled: u64,
    ) -> Report {
        let now = Instant::now();
        let mut s = self.lock();
        s.done = true;
        let route = |r: &RouteStats| RouteReport {
            sent: r.sent,
            outcomes: r.outcomes.clone(),
            latency: summary(&r.latency),
        };
        Report {
            version: REPORT_VERSION,
            config: config.clone(),
            target_addr,
            started_unix_ms: s.start_unix_ms,
            elapsed_ms: millis(now.saturating_duration_since(s.start)),
            stop_reason,
            scheduled,
            sent: s.sent,
            not_started: s.not_started,
            late_start: s.late_start,
            max_start_delay_ms: ms(s.max_start_delay),
            bursts: bursts_report(config, &s),
            failures: s.outcomes.failures(),
            outcomes: s.outcomes.clone(),
            connections: s.connections.clone(),
            latency: summary(&s.latency),
            routes: Routes {
                root: route(&s.routes[0]),
                work: route(&s.routes[1]),
                echo: route(&s.routes[2]),
            },
            modes: modes(&s.modes),
            methods: Methods {
                get: method(&s.methods[0], &s.method_modes[0]),
                post: method(&s.methods[1], &s.method_modes[1]),
            },
            served_by: s.served_by.clone(),
            answered_by: s.answered_by.clone(),
            served_in_shutdown: s.served_in_shutdown.clone(),
            timeline: s.timeline.clone(),
            errors: s.errors.clone(),
            // The long-lived clients keep books of their own.
            streams: Streams::default(),
            stream_failures: 0,
        }
    }
}

/// How the burst schedule was kept; `None` without one.
fn bursts_report(config: &Config, s: &Stats) -> Option<BurstsReport> {
    let schedule = config.bursts?;
    let per_burst: Vec<BurstReport> = s
        .bursts
        .iter()
        .take(usize::try_from(s.bursts_started).unwrap_or(usize::MAX))
        .zip(0..)
        .map(|(b, i)| {
            let (delay, spread) = if b.sent == 0 {
                (Duration::ZERO, Duration::ZERO)
            } else {
                (b.min_delay, b.max_delay - b.min_delay)
            };
            BurstReport {
                at_ms: ms(schedule.offset(i)),
                sent: b.sent,
                failures: b.failures,
                start_delay_ms: ms(delay),
                spread_ms: ms(spread),
            }
        })
        .collect();
    let max = |f: fn(&BurstReport) -> f64| per_burst.iter().map(f).fold(0.0, f64::max);
    Some(BurstsReport {
        started: s.bursts_started,
        max_start_delay_ms: max(|b| b.start_delay_ms),
        max_spread_ms: max(|b| b.spread_ms),
        per_burst,
    })
}

fn modes(m: &[ModeReport; 3]) -> Modes {
    Modes {
        keepalive: m[0].clone(),
        fresh: m[1].clone(),
        http2: m[2].clone(),
    }
}

fn method(total: &ModeReport, per_mode: &[ModeReport; 3]) -> MethodReport {
    MethodReport {
        sent: total.sent,
        outcomes: total.outcomes.clone(),
        modes: modes(per_mode),
    }
}

impl Stats {
    /// The timeline entry for `now`, created (with any gap) on first use.
    fn second(&mut self, now: Instant) -> &mut Second {
        let idx = now.saturating_duration_since(self.start).as_secs() as usize;
        while self.timeline.len() <= idx {
            let t_unix_ms = self.start_unix_ms + 1000 * self.timeline.len() as u64;
            self.timeline.push(Second {
                t_unix_ms,
                ..Second::default()
            });
        }
        &mut self.timeline[idx]
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        self.start_unix_ms + millis(now.saturating_duration_since(self.start))
    }
}

fn bump(map: &mut BTreeMap<String, u64>, name: &str) {
    match map.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            map.insert(name.to_owned(), 1);
        }
    }
}

/// The replica name in a `GET /` body or a `lameduck-replica` header;
/// borrowed unless it needs repair.
fn replica_name(body: &[u8]) -> std::borrow::Cow<'_, str> {
    let body = body.trim_ascii();
    let body = &body[..body.len().min(MAX_NAME)];
    if body.is_empty() {
        return "<empty>".into();
    }
    String::from_utf8_lossy(body)
}

fn status_message(r: &crate::outcome::Response) -> String {
    let body = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]);
    let body = body.trim();
    if body.is_empty() {
        format!("HTTP {}", r.status)
    } else {
        format!("HTTP {}: {body}", r.status)
    }
}

/// Milliseconds with microsecond resolution, without binary noise digits.
fn micros_as_ms(us: f64) -> f64 {
    us.round() / 1000.0
}

/// A duration in milliseconds with microsecond resolution.
fn ms(d: Duration) -> f64 {
    micros_as_ms(d.as_micros() as f64)
}

fn summary(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let ms = |us: u64| micros_as_ms(us as f64);
    Latency {
        count: h.len(),
        mean_ms: micros_as_ms(h.mean()),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{StatusCode, Uri};

    use super::*;
    use crate::outcome::{Marks, Response};

    fn plan(route: Route, mode: Mode) -> Plan {
        Plan {
            route,
            mode,
            uri: Uri::from_static("/"),
            body: Bytes::new(),
        }
    }

    fn ok(body: &'static str) -> Outcome {
        Outcome::Response(Response {
            status: StatusCode::OK,
            close: false,
            body: Bytes::from_static(body.as_bytes()),
            resent: false,
            wrong_echo: None,
            marks: Marks::default(),
        })
    }

    fn recorder() -> Recorder {
        Recorder::new(&Config {
            error_samples: 2,
            late_after: Duration::from_millis(10),
            ..Config::new("t:1")
        })
    }

    #[test]
    fn buckets_by_second_and_counts_replicas() {
        let r = recorder();
        let t0 = r.begin();
        let root = plan(Route::Root, Mode::Keepalive);
        r.started(&root, t0, t0, None);
        r.ended(
            &root,
            t0,
            t0 + Duration::from_millis(5),
            &ok("pod-a\n"),
            false,
            None,
        );
        let t2 = t0 + Duration::from_millis(2500);
        r.started(&root, t2, t2, None);
        let closing = Outcome::Response(Response {
            status: StatusCode::OK,
            close: true,
            body: Bytes::from_static(b"pod-b"),
            resent: false,
            wrong_echo: None,
            marks: Marks::default(),
        });
        r.ended(
            &root,
            t2,
            t2 + Duration::from_millis(7),
            &closing,
            true,
            None,
        );
        let rep = r.report(
            &Config::new("t:1"),
            "1.2.3.4:1".into(),
            StopReason::Duration,
            2,
        );
        assert_eq!(rep.timeline.len(), 3);
        assert_eq!(rep.timeline[1].sent, 0);
        assert_eq!(rep.timeline[2].t_unix_ms, rep.started_unix_ms + 2000);
        assert_eq!(
            rep.timeline[2].served_by,
            BTreeMap::from([("pod-b".into(), 1)])
        );
        assert_eq!(
            rep.served_by,
            BTreeMap::from([("pod-a".into(), 1), ("pod-b".into(), 1)])
        );
        assert_eq!(rep.latency.count, 2);
        assert!((rep.latency.max_ms - 7.0).abs() < 0.01, "{:?}", rep.latency);
        assert_eq!(rep.routes.root.sent, 2);
        assert_eq!(rep.connections.close_responses, 1);
        assert_eq!(rep.modes.keepalive.outcomes.ok, 2);
        assert_eq!(rep.sent, rep.outcomes.total());
    }

    #[test]
    fn late_starts_and_error_samples() {
        let r = recorder();
        let t0 = r.begin();
        let work = plan(Route::Work, Mode::Fresh);
        r.started(&work, t0, t0 + Duration::from_millis(5), None);
        r.started(&work, t0, t0 + Duration::from_millis(30), None);
        r.started(&work, t0, t0 + Duration::from_millis(40), None);
        let fail = Outcome::failed(Kind::Reset, "connection reset by peer");
        let status = Outcome::Response(Response {
            status: StatusCode::SERVICE_UNAVAILABLE,
            close: true,
            body: Bytes::from_static(b"draining\n"),
            resent: false,
            wrong_echo: None,
            marks: Marks::default(),
        });
        r.ended(&work, t0, t0, &status, false, None);
        r.ended(&work, t0, t0, &fail, true, None);
        r.ended(&work, t0, t0, &fail, true, None);
        let rep = r.report(&Config::new("t:1"), String::new(), StopReason::Stopped, 3);
        assert_eq!(rep.late_start, 2);
        assert!((rep.max_start_delay_ms - 40.0).abs() < 0.01);
        assert_eq!(rep.failures, 3);
        // Located in their second, by protocol and by method.
        let f = &rep.timeline[0].failures;
        assert_eq!((f.fresh, f.keepalive, f.http2), (3, 0, 0));
        assert_eq!((f.get, f.post), (3, 0));
        assert_eq!(rep.errors.len(), 2, "capped at error_samples");
        assert_eq!(
            rep.errors[0].message,
            "HTTP 503 Service Unavailable: draining"
        );
        assert_eq!(rep.errors[0].status, Some(503));
        assert_eq!(rep.errors[1].kind, Kind::Reset);
        assert!(rep.errors[1].reused_connection);
        assert_eq!(
            rep.connections.close_responses, 0,
            "a fresh request asked for it"
        );
        // Only responses have a latency.
        assert_eq!(rep.latency.count, 1);
        assert_eq!(rep.served_by.len(), 0);
    }

    #[test]
    fn http2_is_a_mode_of_its_own_and_resent_answers_count() {
        let r = recorder();
        let t0 = r.begin();
        let h2 = plan(Route::Root, Mode::Http2);
        let resent = Outcome::Response(Response {
            status: StatusCode::OK,
            close: false,
            body: Bytes::from_static(b"pod-c"),
            resent: true,
            wrong_echo: None,
            marks: Marks::default(),
        });
        for outcome in [ok("pod-c"), resent] {
            r.started(&h2, t0, t0, None);
            r.ended(&h2, t0, t0, &outcome, false, None);
        }
        r.h2_connection_opened();
        r.h2_goaway();
        r.h2_resent();
        let rep = r.report(&Config::new("t:1"), String::new(), StopReason::Stopped, 2);
        assert_eq!(rep.modes.http2.sent, 2);
        assert_eq!(rep.modes.http2.outcomes.ok, 1);
        assert_eq!(rep.modes.http2.outcomes.refused_resent, 1);
        assert_eq!(rep.modes.keepalive.sent + rep.modes.fresh.sent, 0);
        assert_eq!((rep.failures, rep.outcomes.total()), (0, 2));
        assert!(rep.errors.is_empty(), "not a failure");
        assert!(rep.is_clean());
        assert_eq!(rep.served_by, BTreeMap::from([("pod-c".into(), 2)]));
        let c = &rep.connections;
        assert_eq!(
            (c.opened, c.h2_opened, c.h2_goaways, c.h2_resent),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn posts_are_counted_per_method_and_mode_and_a_wrong_echo_fails() {
        let r = recorder();
        let t0 = r.begin();
        let echoed = |wrong: Option<&str>| {
            Outcome::Response(Response {
                status: StatusCode::OK,
                close: false,
                body: Bytes::from_static(b"abc"),
                resent: false,
                wrong_echo: wrong.map(str::to_owned),
                marks: Marks::default(),
            })
        };
        for (route, mode, outcome) in [
            (Route::Echo, Mode::Http2, echoed(None)),
            (
                Route::Echo,
                Mode::Fresh,
                echoed(Some("the echo has 3 of the 9 bytes sent")),
            ),
            (Route::Root, Mode::Http2, ok("pod-a")),
            (Route::Work, Mode::Keepalive, ok("worked")),
        ] {
            let p = plan(route, mode);
            r.started(&p, t0, t0, None);
            r.ended(&p, t0, t0, &outcome, false, None);
        }
        let rep = r.report(&Config::new("t:1"), String::new(), StopReason::Stopped, 4);
        let (get, post) = (&rep.methods.get, &rep.methods.post);
        assert_eq!((get.sent, get.outcomes.ok), (2, 2));
        assert_eq!(
            (post.sent, post.outcomes.ok, post.outcomes.wrong_echo),
            (2, 1, 1)
        );
        assert_eq!(post.modes.http2.outcomes.ok, 1);
        assert_eq!(post.modes.fresh.outcomes.wrong_echo, 1);
        assert_eq!(post.modes.keepalive.sent, 0);
        assert_eq!((get.modes.http2.sent, get.modes.keepalive.sent), (1, 1));
        assert_eq!(rep.routes.echo.sent, 2);
        assert_eq!(rep.failures, 1);
        let f = &rep.timeline[0].failures;
        assert_eq!((f.get, f.post, f.fresh, f.requests()), (0, 1, 1, 1));
        assert_eq!(rep.errors[0].kind, Kind::WrongEcho);
        assert_eq!(rep.errors[0].route, Route::Echo);
        assert_eq!(
            rep.errors[0].message,
            "HTTP 200 OK: the echo has 3 of the 9 bytes sent"
        );
        // An echo names no replica; `GET /` answers do.
        assert_eq!(rep.served_by, BTreeMap::from([("pod-a".into(), 1)]));
        assert_eq!(rep.sent, rep.outcomes.total());
    }

    #[test]
    fn answers_are_counted_per_replica_header_and_in_shutdown() {
        let r = recorder();
        let t0 = r.begin();
        let marked = |status: u16, replica: Option<&'static str>, in_shutdown: bool| {
            Outcome::Response(Response {
                status: StatusCode::from_u16(status).unwrap(),
                close: false,
                body: Bytes::from_static(b"body"),
                resent: false,
                wrong_echo: None,
                marks: Marks {
                    replica: replica.map(http::HeaderValue::from_static),
                    in_shutdown,
                },
            })
        };
        for (route, outcome) in [
            (Route::Work, marked(200, Some("pod-a"), false)),
            (Route::Echo, marked(200, Some("pod-a"), true)),
            (Route::Root, marked(200, Some("pod-b"), true)),
            // Not answered: neither counts.
            (Route::Root, marked(503, Some("pod-b"), true)),
            // Unmarked: counted under served_by (the body) alone.
            (Route::Root, marked(200, None, false)),
        ] {
            let p = plan(route, Mode::Keepalive);
            r.started(&p, t0, t0, None);
            r.ended(&p, t0, t0, &outcome, false, None);
        }
        let rep = r.report(&Config::new("t:1"), String::new(), StopReason::Stopped, 5);
        assert_eq!(
            rep.answered_by,
            BTreeMap::from([("pod-a".into(), 2), ("pod-b".into(), 1)])
        );
        assert_eq!(
            rep.served_in_shutdown,
            BTreeMap::from([("pod-a".into(), 1), ("pod-b".into(), 1)])
        );
        assert_eq!(rep.served_by, BTreeMap::from([("body".into(), 2)]));
        assert_eq!(
            rep.outcomes.status_by_origin.application.get(&503),
            Some(&1)
        );
    }

    #[test]
    fn bursts_are_kept_burst_by_burst() {
        let config = Config {
            bursts: Some(crate::bursts::Bursts {
                count: 3,
                size: 2,
                period_from: Duration::from_millis(500),
                period_to: Duration::from_millis(700),
            }),
            late_after: Duration::from_millis(10),
            ..Config::new("t:1")
        };
        let r = Recorder::new(&config);
        let t0 = r.begin();
        let p = plan(Route::Echo, Mode::Keepalive);
        let us = Duration::from_micros;
        // Burst 0, due at t0: started 1 ms and 4.5 ms late, one fails.
        r.burst_started();
        r.started(&p, t0, t0 + us(4500), Some(0));
        r.started(&p, t0, t0 + us(1000), Some(0));
        r.ended(&p, t0, t0, &ok("x"), false, Some(0));
        let fail = Outcome::failed(Kind::Reset, "connection reset by peer");
        r.ended(&p, t0, t0, &fail, true, Some(0));
        // Burst 1, due at 500 ms: both 30 ms late, at the same instant.
        r.burst_started();
        let due = t0 + Duration::from_millis(500);
        for _ in 0..2 {
            r.started(&p, due, due + Duration::from_millis(30), Some(1));
            r.ended(&p, due, due, &ok("x"), false, Some(1));
        }
        // Burst 2 never came (a stop); an index beyond the schedule is
        // ignored rather than trusted.
        r.started(&p, t0, t0, Some(7));
        r.ended(&p, t0, t0, &ok("x"), false, Some(7));
        let rep = r.report(&config, String::new(), StopReason::Stopped, 5);
        let b = rep.bursts.expect("a burst schedule is reported");
        assert_eq!(b.started, 2);
        assert_eq!(
            b.per_burst,
            [
                BurstReport {
                    at_ms: 0.0,
                    sent: 2,
                    failures: 1,
                    start_delay_ms: 1.0,
                    spread_ms: 3.5,
                },
                BurstReport {
                    at_ms: 500.0,
                    sent: 2,
                    failures: 0,
                    start_delay_ms: 30.0,
                    spread_ms: 0.0,
                },
            ]
        );
        assert_eq!((b.max_start_delay_ms, b.max_spread_ms), (30.0, 3.5));
        // The same starts count in the run's late starts.
        assert_eq!((rep.late_start, rep.max_start_delay_ms), (2, 30.0));
        assert_eq!(rep.failures, 1);
        // A run at a rate has no such section, and writes none.
        let plain = recorder().report(&Config::new("t:1"), String::new(), StopReason::Stopped, 0);
        assert_eq!(plain.bursts, None);
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("bursts").is_none());
    }

    #[test]
    fn progress_counts_in_flight() {
        let r = recorder();
        let t0 = r.begin();
        let p = plan(Route::Root, Mode::Keepalive);
        r.started(&p, t0, t0, None);
        r.started(&p, t0, t0, None);
        r.ended(&p, t0, t0, &ok("x"), false, None);
        let before = unix_now_ms();
        let snap = r.progress(false);
        let after = unix_now_ms();
        assert_eq!(
            (snap.sent, snap.in_flight, snap.ok, snap.failures),
            (2, 1, 1, 0)
        );
        assert!(!snap.done);
        // The clock at the snapshot, not the run's start.
        assert!((before..=after).contains(&snap.now_unix_ms), "{snap:?}");
    }

    #[test]
    fn replica_names() {
        assert_eq!(replica_name(b"  pod-1\r\n"), "pod-1");
        assert_eq!(replica_name(b""), "<empty>");
        assert_eq!(replica_name(&[b'a'; 400]).len(), MAX_NAME);
        assert_eq!(replica_name(b"p\xffq"), "p\u{fffd}q");
    }
}
