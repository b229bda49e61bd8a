//! HTTP/2: runs against hyper's h2c server, and the classification of failed
//! streams (RFC 9113 §8.7) against a server that writes frames by hand.

mod support;

use std::time::Duration;

use loadgen::{Config, Kind, MsRange, Report};
use support::fake_h2::{Act, FakeH2, GoAwayAfter, INTERNAL_ERROR, REFUSED_STREAM};
use support::{Behaviour, Seen, TestServer, adds_up, refused_addr, run};

/// HTTP/2 only, on one connection unless said otherwise.
fn h2_config(target: String, requests: u64) -> Config {
    Config {
        rate: 50.0,
        max_requests: Some(requests),
        timeout: Duration::from_secs(5),
        fresh_fraction: 0.0,
        h2_fraction: 1.0,
        h2_conns: 1,
        h2_streams: 8,
        slow_fraction: 0.0,
        // The frame-by-frame server answers HEADERS alone; it echoes no body.
        post_fraction: 0.0,
        ..Config::new(target)
    }
}

fn messages(r: &Report) -> Vec<&str> {
    r.errors.iter().map(|e| e.message.as_str()).collect()
}

#[tokio::test]
async fn all_requests_over_h2c_are_ok_and_accounted() {
    let server = TestServer::start(Behaviour::H2c("replica-h2")).await;
    let report = run(Config {
        rate: 400.0,
        slow_fraction: 0.3,
        slow_ms: MsRange { min: 1, max: 20 },
        h2_conns: 4,
        ..h2_config(server.target(), 300)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.outcomes.ok, 300);
    assert_eq!(report.modes.http2.sent, 300);
    assert_eq!(report.modes.http2.outcomes.ok, 300);
    assert_eq!(report.modes.keepalive.sent + report.modes.fresh.sent, 0);
    assert!(report.routes.work.sent > 0 && report.routes.root.sent > 0);
    assert_eq!(
        report.served_by.get("replica-h2"),
        Some(&report.routes.root.sent)
    );
    // Pooled: four connections, whatever the number of requests; the probe's
    // connection and request come on top.
    let c = &report.connections;
    assert_eq!((c.opened, c.h2_opened), (4, 4), "{c:?}");
    assert_eq!(Seen::get(&server.seen.connections), 5);
    assert_eq!(Seen::get(&server.seen.h2_requests), 301);
    assert_eq!(
        (c.h2_goaways, c.h2_requeued_not_sent, c.h2_resent),
        (0, 0, 0)
    );
    // At most 4 x 8 streams at a time.
    assert!(Seen::get(&server.seen.max_active) <= 32);
}

#[tokio::test]
async fn a_mixed_run_gives_each_protocol_its_share() {
    let server = TestServer::start(Behaviour::Auto("both")).await;
    let n = 800;
    let report = run(Config {
        rate: 800.0,
        keepalive_conns: 4,
        fresh_fraction: 0.25,
        h2_fraction: 0.25,
        h2_conns: 2,
        ..h2_config(server.target(), n)
    })
    .await;
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.outcomes.ok, n);
    let m = &report.modes;
    for (mode, share) in [(&m.keepalive, 0.5), (&m.fresh, 0.25), (&m.http2, 0.25)] {
        let got = mode.sent as f64 / n as f64;
        assert!((got - share).abs() < 0.06, "{share}: {got} ({m:#?})");
        assert_eq!(mode.outcomes.ok, mode.sent);
    }
    assert_eq!(Seen::get(&server.seen.h2_requests), m.http2.sent + 1);
    // Only fresh requests ask for Connection: close.
    assert_eq!(Seen::get(&server.seen.close_requests), m.fresh.sent);
    assert_eq!(report.connections.h2_opened, 2);
}

#[tokio::test]
async fn goaway_below_streams_in_flight_resends_them_on_a_new_connection() {
    // Stream 1 is answered; once streams 3 and 5 have arrived, GOAWAY says
    // only stream 1 was processed and the connection closes.
    let server = FakeH2::start(
        |conn, stream| match (conn, stream) {
            (1, 3 | 5) => Act::Hold,
            _ => Act::Answer,
        },
        Some(GoAwayAfter {
            conn: 1,
            after: &[3, 5],
            last_stream_id: 1,
        }),
    )
    .await;
    let report = run(h2_config(server.target(), 3)).await;
    assert_eq!(report.outcomes.ok, 1, "{report:#?}");
    assert_eq!(report.outcomes.refused_resent, 2, "{report:#?}");
    assert_eq!(report.failures, 0, "{:?}", messages(&report));
    assert_eq!(report.modes.http2.outcomes.refused_resent, 2);
    assert!(report.is_clean(), "resent, not failed");
    let c = &report.connections;
    assert_eq!((c.h2_goaways, c.h2_resent, c.h2_opened), (1, 2, 2), "{c:?}");
    // The two resends went out on the second connection.
    let requests = server.run_requests();
    assert_eq!(&requests[..3], &[(1, 1), (1, 3), (1, 5)]);
    let mut resends: Vec<_> = requests[3..].to_vec();
    resends.sort_unstable();
    assert_eq!(resends, [(2, 1), (2, 3)]);
}

#[tokio::test]
async fn refused_stream_is_resent() {
    let server = FakeH2::start(
        |conn, stream| match (conn, stream) {
            (1, 1) => Act::Reset(REFUSED_STREAM),
            _ => Act::AnswerWith("replica-f"),
        },
        None,
    )
    .await;
    let report = run(h2_config(server.target(), 3)).await;
    assert_eq!(report.outcomes.refused_resent, 1, "{report:#?}");
    assert_eq!(report.outcomes.ok, 2);
    assert_eq!(report.failures, 0);
    assert_eq!(report.connections.h2_resent, 1);
    // The connection was not going away: the resend went out on it.
    assert_eq!(report.connections.h2_opened, 1);
    assert_eq!(report.served_by.get("replica-f"), Some(&3));
    assert_eq!(server.run_requests().len(), 4);
}

#[tokio::test]
async fn a_reset_with_another_code_is_a_failure() {
    let server = FakeH2::start(
        |conn, stream| match (conn, stream) {
            (1, 1) => Act::Reset(INTERNAL_ERROR),
            _ => Act::Answer,
        },
        None,
    )
    .await;
    let report = run(h2_config(server.target(), 3)).await;
    assert_eq!(report.outcomes.reset, 1, "{report:#?}");
    assert_eq!(report.outcomes.ok, 2);
    assert_eq!(report.outcomes.refused_resent, 0);
    assert_eq!(report.connections.h2_resent, 0);
    let e = &report.errors[0];
    assert_eq!((e.kind, e.mode), (Kind::Reset, loadgen::Mode::Http2));
    assert!(
        e.message
            .starts_with("stream 1 reset by the server with INTERNAL_ERROR: "),
        "{}",
        e.message
    );
    assert_eq!(server.run_requests().len(), 3, "not resent");
}

#[tokio::test]
async fn a_stream_covered_by_goaway_and_cut_by_the_close_failed() {
    // GOAWAY(5) says stream 5 was being processed; the close then ends it.
    let server = FakeH2::start(
        |conn, stream| match (conn, stream) {
            (1, 5) => Act::Hold,
            _ => Act::Answer,
        },
        Some(GoAwayAfter {
            conn: 1,
            after: &[5],
            last_stream_id: 5,
        }),
    )
    .await;
    let report = run(h2_config(server.target(), 3)).await;
    assert_eq!(report.outcomes.ok, 2, "{report:#?}");
    assert_eq!(report.outcomes.reset, 1, "{report:#?}");
    assert_eq!(report.outcomes.refused_resent, 0);
    assert_eq!(report.connections.h2_resent, 0);
    assert_eq!(report.connections.h2_goaways, 1);
    let msg = &report.errors[0].message;
    assert!(
        msg.starts_with(
            "stream 5 ended by the connection's end although GOAWAY's last-stream-id 5 covers it: "
        ),
        "{msg}"
    );
    assert!(report.errors[0].reused_connection);
    assert_eq!(
        server.run_requests(),
        [(1, 1), (1, 3), (1, 5)],
        "not resent"
    );
}

#[tokio::test]
async fn a_resend_refused_again_failed() {
    let server = FakeH2::start(
        |conn, _| {
            if conn == 0 {
                Act::Answer
            } else {
                Act::Reset(REFUSED_STREAM)
            }
        },
        None,
    )
    .await;
    let report = run(h2_config(server.target(), 2)).await;
    assert_eq!(report.outcomes.reset, 2, "{report:#?}");
    assert_eq!(report.outcomes.refused_resent, 0);
    assert_eq!(report.connections.h2_resent, 2);
    for msg in messages(&report) {
        let again = "refused unprocessed: RST_STREAM with REFUSED_STREAM, \
                     again after being resent once (first: stream ";
        assert!(msg.contains(again), "{msg}");
    }
    // Each request went out twice, never a third time.
    assert_eq!(server.run_requests().len(), 4);
}

#[tokio::test]
async fn unanswered_streams_time_out_naming_the_stream() {
    let server = FakeH2::start(
        |conn, _| if conn == 0 { Act::Answer } else { Act::Hold },
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let report = run(Config {
        rate: 200.0,
        timeout: Duration::from_millis(200),
        ..h2_config(server.target(), 4)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.outcomes.timeout, 4, "{report:#?}");
    for msg in messages(&report) {
        assert!(
            msg.contains("(timed out while waiting for the response head of stream "),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn each_request_gets_its_whole_timeout() {
    // One lane: its timer was first armed when it started, before the first
    // request; the held sixth request (stream 11, 250 ms in) must still get
    // its full 300 ms.
    let server = FakeH2::start(
        |conn, stream| match (conn, stream) {
            (1, 11) => Act::Hold,
            _ => Act::Answer,
        },
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let report = run(Config {
        rate: 20.0,
        timeout: Duration::from_millis(300),
        h2_streams: 1,
        ..h2_config(server.target(), 6)
    })
    .await;
    let took = started.elapsed();
    assert_eq!(
        (report.outcomes.ok, report.outcomes.timeout),
        (5, 1),
        "{report:#?}"
    );
    assert!(
        took >= Duration::from_millis(540),
        "timed out early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        report.errors[0].message.contains("of stream 11"),
        "{:?}",
        messages(&report)
    );
}

#[tokio::test]
async fn the_drain_aborts_streams_still_in_flight() {
    let server = FakeH2::start(
        |conn, _| if conn == 0 { Act::Answer } else { Act::Hold },
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        loadgen::run(
            Config {
                duration: Some(Duration::from_secs(60)),
                max_requests: None,
                timeout: Duration::from_secs(30),
                drain_timeout: Duration::from_millis(200),
                ..h2_config(server.target(), 1)
            },
            tokio::time::sleep(Duration::from_millis(150)),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    adds_up(&report);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.sent > 0);
    assert_eq!(report.outcomes.aborted, report.sent, "{report:#?}");
    assert_eq!(report.failures, 0);
}

#[tokio::test]
async fn refused_connects_count_as_for_http1() {
    let addr = refused_addr().await;
    // The probe cannot connect either: a warning, not an error.
    let report = run(h2_config(addr.to_string(), 5)).await;
    assert_eq!(report.outcomes.connect_refused, 5, "{report:#?}");
    assert_eq!(report.connections.opened, 0);
    assert!(report.errors[0].message.starts_with("connect: "));
}

#[tokio::test]
async fn an_http1_only_server_is_not_h2c() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let err = loadgen::run(h2_config(server.target(), 1), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, loadgen::Error::NotH2c { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "target {} does not speak h2c (HTTP/2 with prior knowledge): ",
            server.target()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    // Nothing beyond the probe was sent.
    assert_eq!(Seen::get(&server.seen.connections), 1);
}
