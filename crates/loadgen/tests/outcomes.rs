//! Every outcome kind, against a server that produces it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use loadgen::{Config, Kind, MsRange, Report};
use support::{Behaviour, Seen, TestServer, refused_addr, run};

/// A short bounded run; half the requests on fresh connections.
fn config(target: String, requests: u64) -> Config {
    Config {
        rate: 200.0,
        max_requests: Some(requests),
        timeout: Duration::from_secs(5),
        keepalive_conns: 2,
        fresh_fraction: 0.5,
        slow_fraction: 0.0,
        ..Config::new(target)
    }
}

fn only_kind(report: &Report, kind: Kind) {
    let n = report.sent;
    assert!(n > 0);
    assert!(
        report.errors.iter().all(|e| e.kind == kind),
        "{:#?}",
        report.errors
    );
    assert_eq!(report.failures, n, "{:#?}", report.outcomes);
    assert_eq!(report.outcomes.ok, 0);
    assert!(!report.is_clean());
}

#[tokio::test]
async fn ok_responses_are_counted_per_replica_route_and_mode() {
    let server = TestServer::start(Behaviour::Ok("replica-a")).await;
    let report = run(Config {
        slow_fraction: 0.3,
        slow_ms: MsRange { min: 1, max: 5 },
        ..config(server.target(), 60)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.outcomes.ok, 60);
    let root = report.routes.root.sent;
    let echo = report.routes.echo.sent;
    assert_eq!(root + report.routes.work.sent + echo, 60);
    assert!(root > 0 && report.routes.work.sent > 0 && echo > 0);
    assert_eq!(report.methods.post.sent, echo);
    assert_eq!(report.methods.get.sent, 60 - echo);
    assert_eq!(Seen::get(&server.seen.posts), echo);
    assert_eq!(
        report.served_by,
        BTreeMap::from([("replica-a".into(), root)])
    );
    assert_eq!(report.latency.count, 60);
    assert!(report.latency.p50_ms > 0.0 && report.latency.max_ms >= report.latency.p99_ms);
    assert!(report.routes.work.latency.p50_ms >= 1.0);
    // Fresh requests ask the server to close; keep-alive ones do not.
    assert_eq!(
        Seen::get(&server.seen.close_requests),
        report.modes.fresh.sent
    );
    assert!(report.modes.fresh.sent > 0 && report.modes.keepalive.sent > 0);
    // The server closed no pooled connection; fresh ones asked for it.
    assert_eq!(report.connections.close_responses, 0);
    assert_eq!(Seen::get(&server.seen.requests), 60);
    let timeline_ok: u64 = report.timeline.iter().map(|s| s.outcomes.ok).sum();
    assert_eq!(timeline_ok, 60);
}

#[tokio::test]
async fn posts_go_over_every_protocol_and_their_echo_is_checked() {
    let server = TestServer::start(Behaviour::Auto("replica-p")).await;
    let n = 400;
    let report = run(Config {
        rate: 400.0,
        post_fraction: 0.5,
        fresh_fraction: 0.25,
        h2_fraction: 0.25,
        h2_conns: 2,
        ..config(server.target(), n)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    let post = &report.methods.post;
    assert_eq!(post.outcomes.ok, post.sent);
    for (name, mode) in [
        ("keep-alive", &post.modes.keepalive),
        ("fresh", &post.modes.fresh),
        ("HTTP/2", &post.modes.http2),
    ] {
        assert!(
            mode.sent > 0 && mode.outcomes.ok == mode.sent,
            "{name}: {post:#?}"
        );
    }
    // Each protocol's GETs and POSTs add up to its total.
    let get = &report.methods.get;
    assert_eq!(
        get.modes.http2.sent + post.modes.http2.sent,
        report.modes.http2.sent
    );
    assert_eq!(get.sent + post.sent, n);
    // Bodies of a few hundred bytes reached the server, and came back.
    let posts = Seen::get(&server.seen.posts);
    assert_eq!(posts, post.sent);
    let bytes = Seen::get(&server.seen.post_bytes);
    assert!(
        (loadgen::MIN_POST_BODY as u64 * posts..=loadgen::MAX_POST_BODY as u64 * posts)
            .contains(&bytes),
        "{bytes} bytes in {posts} bodies"
    );
    // GET / answers name the replica; echoes do not.
    assert_eq!(
        report.served_by.get("replica-p"),
        Some(&report.routes.root.sent)
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_echo_is_a_failure_of_its_own() {
    let server = TestServer::start(Behaviour::NoEcho("replica-n")).await;
    let report = run(Config {
        post_fraction: 0.5,
        h2_fraction: 0.25,
        ..config(server.target(), 80)
    })
    .await;
    let post = &report.methods.post;
    assert!(post.sent > 0);
    assert_eq!(report.outcomes.wrong_echo, post.sent, "{report:#?}");
    assert_eq!(report.failures, post.sent);
    assert_eq!(report.methods.get.outcomes.ok, report.methods.get.sent);
    assert!(post.modes.http2.outcomes.wrong_echo > 0, "{post:#?}");
    let e = &report.errors[0];
    assert_eq!((e.kind, e.route), (Kind::WrongEcho, loadgen::Route::Echo));
    assert!(
        e.message
            .starts_with("HTTP 200 OK: the echo differs from the ")
            && e.message.ends_with(" bytes sent at byte 0"),
        "{}",
        e.message
    );
    assert!(!report.is_clean());
}

#[tokio::test]
async fn keepalive_connections_are_reused() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let report = run(Config {
        fresh_fraction: 0.0,
        ..config(server.target(), 40)
    })
    .await;
    assert!(report.is_clean());
    assert!(report.connections.opened <= 2, "{:?}", report.connections);
    assert_eq!(
        Seen::get(&server.seen.connections),
        report.connections.opened
    );
}

#[tokio::test]
async fn other_statuses_are_failures_counted_per_code() {
    let server = TestServer::start(Behaviour::Status(503)).await;
    let report = run(config(server.target(), 20)).await;
    only_kind(&report, Kind::Status);
    assert_eq!(report.outcomes.status, BTreeMap::from([(503, 20)]));
    assert_eq!(report.errors[0].status, Some(503));
    assert_eq!(
        report.errors[0].message,
        "HTTP 503 Service Unavailable: unavailable"
    );
    // A failed `GET /` names no replica.
    assert!(report.served_by.is_empty());
}

#[tokio::test]
async fn error_statuses_are_told_apart_by_who_answered_them() {
    // A server that does not mark its answers: every error status has no
    // marker, as a proxy's would.
    let plain = TestServer::start(Behaviour::Status(502)).await;
    let report = run(config(plain.target(), 20)).await;
    let by_origin = &report.outcomes.status_by_origin;
    assert_eq!(by_origin.no_marker, BTreeMap::from([(502, 20)]));
    assert!(by_origin.application.is_empty());
    // The application's own answer says so, on every protocol and method.
    let app = TestServer::start(Behaviour::StatusMarked(503, "pod-a")).await;
    let report = run(Config {
        post_fraction: 0.5,
        h2_fraction: 0.25,
        ..config(app.target(), 80)
    })
    .await;
    let by_origin = &report.outcomes.status_by_origin;
    assert_eq!(by_origin.application, BTreeMap::from([(503, 80)]));
    assert!(by_origin.no_marker.is_empty());
    for (name, method) in [("get", &report.methods.get), ("post", &report.methods.post)] {
        for (mode, m) in [
            ("keep-alive", &method.modes.keepalive),
            ("fresh", &method.modes.fresh),
            ("http2", &method.modes.http2),
        ] {
            assert!(m.sent > 0, "{name} {mode}");
            assert_eq!(
                m.outcomes.status_by_origin.application.get(&503),
                Some(&m.sent),
                "{name} {mode}"
            );
        }
    }
    assert_eq!(
        report.modes.http2.outcomes.status_by_origin.total(),
        report.modes.http2.sent
    );
}

#[tokio::test]
async fn answers_are_counted_per_replica_by_their_header() {
    let cfg = |target| Config {
        slow_fraction: 0.2,
        slow_ms: MsRange { min: 1, max: 2 },
        h2_fraction: 0.25,
        ..config(target, 60)
    };
    let serving = TestServer::start(Behaviour::Marked("pod-s", None)).await;
    let report = run(cfg(serving.target())).await;
    assert!(report.is_clean(), "{report:#?}");
    // Every route and protocol, not only GET /.
    assert_eq!(report.answered_by, BTreeMap::from([("pod-s".into(), 60)]));
    assert!(report.served_in_shutdown.is_empty());
    assert_eq!(
        report.served_by.get("pod-s"),
        Some(&report.routes.root.sent)
    );

    let draining = TestServer::start(Behaviour::Marked("pod-d", Some("draining"))).await;
    let report = run(cfg(draining.target())).await;
    assert_eq!(report.answered_by, BTreeMap::from([("pod-d".into(), 60)]));
    assert_eq!(report.served_in_shutdown, report.answered_by);

    // A target that marks nothing still runs; it names no replica here.
    let plain = TestServer::start(Behaviour::Auto("pod-p")).await;
    let report = run(cfg(plain.target())).await;
    assert!(report.is_clean(), "{report:#?}");
    assert!(report.answered_by.is_empty() && report.served_in_shutdown.is_empty());
}

#[tokio::test]
async fn reset_connections_are_failures() {
    let server = TestServer::start(Behaviour::ResetOnRequest).await;
    let report = run(config(server.target(), 20)).await;
    only_kind(&report, Kind::Reset);
    assert_eq!(report.outcomes.reset, 20);
    assert!(report.modes.keepalive.outcomes.reset > 0);
    assert!(report.modes.fresh.outcomes.reset > 0);
}

#[tokio::test]
async fn close_before_response_is_a_reset_on_pooled_connections_too() {
    let server = TestServer::start(Behaviour::CloseOnRequest).await;
    let report = run(Config {
        fresh_fraction: 0.0,
        ..config(server.target(), 10)
    })
    .await;
    only_kind(&report, Kind::Reset);
    assert!(
        report.errors[0]
            .message
            .contains("closed before message completed"),
        "{}",
        report.errors[0].message
    );
}

#[tokio::test]
async fn refused_connects_are_counted() {
    let addr = refused_addr().await;
    let report = run(config(addr.to_string(), 20)).await;
    only_kind(&report, Kind::ConnectRefused);
    assert_eq!(report.outcomes.connect_refused, 20);
    assert_eq!(report.connections.opened, 0);
    assert!(report.errors[0].message.starts_with("connect: "));
}

#[tokio::test]
async fn unanswered_requests_time_out() {
    let server = TestServer::start(Behaviour::Silent).await;
    let started = std::time::Instant::now();
    let report = run(Config {
        timeout: Duration::from_millis(200),
        ..config(server.target(), 6)
    })
    .await;
    only_kind(&report, Kind::Timeout);
    assert_eq!(report.outcomes.timeout, 6);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        report.errors[0]
            .message
            .contains("waiting for the response head"),
        "{}",
        report.errors[0].message
    );
}

#[tokio::test]
async fn connection_close_means_reconnect_not_failure() {
    let server = TestServer::start(Behaviour::CloseEach("r")).await;
    let report = run(Config {
        keepalive_conns: 1,
        fresh_fraction: 0.0,
        ..config(server.target(), 20)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.outcomes.ok, 20);
    assert_eq!(report.connections.close_responses, 20);
    assert_eq!(report.connections.opened, 20);
    // Replaced because the response said so, not found closed later.
    assert_eq!(report.connections.closed_while_idle, 0);
    assert_eq!(Seen::get(&server.seen.connections), 20);
}

#[tokio::test]
async fn idle_connection_closed_by_server_is_replaced_before_use() {
    // The server closes right after each answer; the next request is 50 ms
    // later, so the close is seen before anything is sent on it.
    let server = TestServer::start(Behaviour::AnswerThenClose).await;
    let report = run(Config {
        // It answers `ok` to anything, and leaves a body unread.
        post_fraction: 0.0,
        rate: 20.0,
        keepalive_conns: 1,
        fresh_fraction: 0.0,
        ..config(server.target(), 8)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.connections.closed_while_idle, 7);
    assert_eq!(report.connections.opened, 8);
}
