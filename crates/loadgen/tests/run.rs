//! Schedule, bounds, stopping and the control endpoint.

mod support;

use std::time::{Duration, Instant};

use loadgen::{Config, ControlServer, LoadGen, MsRange, Progress, Report, StopReason};
use support::{Behaviour, Seen, TestServer, http};

fn config(target: String) -> Config {
    Config {
        rate: 100.0,
        keepalive_conns: 4,
        fresh_fraction: 0.25,
        slow_fraction: 0.0,
        timeout: Duration::from_secs(5),
        ..Config::new(target)
    }
}

fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(now.unwrap().as_millis()).unwrap()
}

fn consistent(report: &Report) {
    assert_eq!(report.sent, report.outcomes.total());
    assert_eq!(report.scheduled, report.sent + report.not_started);
    let sent: u64 = report.timeline.iter().map(|s| s.sent).sum();
    assert_eq!(sent, report.sent);
}

#[tokio::test]
async fn rate_is_held_for_the_duration() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let started = Instant::now();
    let report = loadgen::run(
        Config {
            rate: 400.0,
            duration: Some(Duration::from_secs(1)),
            ..config(server.target())
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    consistent(&report);
    assert_eq!(report.stop_reason, StopReason::Duration);
    // Slot n is due at n / rate: exactly 400 fall within one second.
    assert_eq!(report.scheduled, 400);
    assert_eq!(report.outcomes.ok, 400, "{:#?}", report.outcomes);
    assert!(
        (Duration::from_millis(950)..Duration::from_millis(1600)).contains(&took),
        "took {took:?}"
    );
    // Started on schedule: nearly all in the first second, spread over it.
    let first = report.timeline[0].sent;
    assert!(first >= 360, "first second sent {first}");
    assert!(
        report.max_start_delay_ms < 500.0,
        "{}",
        report.max_start_delay_ms
    );
}

#[tokio::test]
async fn in_flight_bound_delays_but_never_drops() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let report = loadgen::run(
        Config {
            rate: 200.0,
            max_requests: Some(12),
            max_in_flight: 2,
            slow_fraction: 1.0,
            post_fraction: 0.0,
            slow_ms: MsRange { min: 50, max: 50 },
            keepalive_conns: 0,
            fresh_fraction: 1.0,
            late_after: Duration::from_millis(20),
            ..config(server.target())
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    consistent(&report);
    assert_eq!(report.outcomes.ok, 12);
    assert_eq!(Seen::get(&server.seen.max_active), 2);
    // Two at a time, 50 ms each: most requests start well after their slot.
    assert!(report.late_start >= 8, "late {}", report.late_start);
    assert!(report.max_start_delay_ms >= 200.0);
    let late_in_timeline: u64 = report.timeline.iter().map(|s| s.late_start).sum();
    assert_eq!(late_in_timeline, report.late_start);
}

#[tokio::test]
async fn stop_future_ends_the_run_and_in_flight_requests_finish() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let started = Instant::now();
    let report = loadgen::run(
        Config {
            duration: Some(Duration::from_secs(60)),
            slow_fraction: 1.0,
            post_fraction: 0.0,
            slow_ms: MsRange { min: 300, max: 300 },
            keepalive_conns: 64,
            ..config(server.target())
        },
        tokio::time::sleep(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    consistent(&report);
    assert_eq!(report.stop_reason, StopReason::Stopped);
    // About 20 requests were started, all still in flight at the stop.
    assert!((10..=30).contains(&report.sent), "sent {}", report.sent);
    assert_eq!(report.outcomes.ok, report.sent, "{:#?}", report.outcomes);
    assert!(report.is_clean());
    assert!(
        took >= Duration::from_millis(450),
        "waited for them: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn drain_timeout_aborts_and_reports_what_was_cut_off() {
    let server = TestServer::start(Behaviour::Silent).await;
    let started = Instant::now();
    let report = loadgen::run(
        Config {
            duration: Some(Duration::from_secs(60)),
            timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_millis(200),
            ..config(server.target())
        },
        tokio::time::sleep(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    consistent(&report);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.sent > 0);
    assert_eq!(report.outcomes.aborted, report.sent);
    assert_eq!(report.failures, 0, "aborts are not server failures");
    assert!(!report.is_clean(), "but the run is not clean either");
}

#[tokio::test]
async fn requests_queued_at_a_stop_still_run_until_the_drain_ends() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let started = Instant::now();
    let report = loadgen::run(
        Config {
            rate: 200.0,
            duration: Some(Duration::from_secs(60)),
            slow_fraction: 1.0,
            post_fraction: 0.0,
            slow_ms: MsRange { min: 300, max: 300 },
            keepalive_conns: 1,
            fresh_fraction: 0.0,
            drain_timeout: Duration::from_millis(700),
            ..config(server.target())
        },
        tokio::time::sleep(Duration::from_millis(150)),
    )
    .await
    .unwrap();
    consistent(&report);
    // One connection, 300 ms a request: about 30 queued by the stop, one
    // running; the drain lets two or three more run, then cuts off the one
    // in flight and leaves the rest unstarted.
    assert!(
        (28..=34).contains(&report.scheduled),
        "{}",
        report.scheduled
    );
    assert!(
        (2..=4).contains(&report.outcomes.ok),
        "{:#?}",
        report.outcomes
    );
    assert_eq!(report.outcomes.aborted, 1);
    assert_eq!(report.failures, 0);
    assert_eq!(report.sent, report.outcomes.ok + 1);
    assert!(report.not_started >= 20, "{}", report.not_started);
    assert!(!report.is_clean());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn control_endpoint_reports_progress_and_stops() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let run = LoadGen::new(Config {
        duration: Some(Duration::from_secs(60)),
        ..config(server.target())
    })
    .await
    .unwrap();
    let control = ControlServer::bind("127.0.0.1:0".parse().unwrap(), run.handle())
        .await
        .unwrap();
    let addr = control.local_addr();
    let running = tokio::spawn(run.run(std::future::pending()));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let asked = unix_ms();
    let (status, body) = http(addr, "GET", "/progress").await;
    let answered = unix_ms();
    assert_eq!(status, 200);
    let progress: Progress = serde_json::from_str(&body).unwrap();
    // The load generator's clock, read while the request was in flight.
    assert!(
        (asked..=answered).contains(&progress.now_unix_ms),
        "{asked} {progress:?} {answered}"
    );
    assert!(progress.sent >= 100, "{progress:?}");
    assert!((50.0..=150.0).contains(&progress.rate), "{progress:?}");
    assert!(!progress.stopping && !progress.done);

    assert_eq!(http(addr, "GET", "/stop").await.0, 405);
    assert_eq!(http(addr, "GET", "/nope").await.0, 404);
    let (status, body) = http(addr, "POST", "/stop").await;
    assert_eq!((status, body.as_str()), (202, r#"{"stopping":true}"#));

    let report = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    consistent(&report);
    assert_eq!(report.stop_reason, StopReason::Stopped);
    assert!(report.is_clean(), "{report:#?}");
    let (_, body) = http(addr, "GET", "/progress").await;
    let progress: Progress = serde_json::from_str(&body).unwrap();
    assert!(progress.stopping && progress.done);
    assert_eq!(progress.sent, report.sent);
}

#[tokio::test]
async fn bad_configurations_are_refused_before_running() {
    let err = loadgen::run(Config::new("127.0.0.1:1"), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, loadgen::Error::Config(_)), "{err}");
    let err = loadgen::run(
        Config {
            max_requests: Some(1),
            ..Config::new("127.0.0.1")
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, loadgen::Error::Resolve { .. }), "{err}");
}

#[tokio::test]
async fn host_names_resolve_preferring_ipv4() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let run = LoadGen::new(Config {
        max_requests: Some(3),
        ..config(format!("localhost:{}", server.addr.port()))
    })
    .await
    .unwrap();
    assert_eq!(run.target_addr(), server.addr);
    let report = run.run(std::future::pending()).await.unwrap();
    assert_eq!(report.outcomes.ok, 3);
    assert_eq!(report.target_addr, server.addr.to_string());
}
