//! Burst schedules against the fake servers: every request of a burst at
//! once, on every protocol and method of the mix, the run ending by itself
//! after the last burst. (The instants themselves are checked exactly on a
//! paused clock in the scheduler's unit tests; here only what cannot flake
//! on a loaded machine.)

mod support;

use std::time::{Duration, Instant};

use loadgen::{Bursts, Config, LoadGen, MsRange, StopReason};
use support::fake_streams::{Sse, StreamServer, Ws, streams_add_up};
use support::{Behaviour, Seen, TestServer, adds_up, run};

fn bursts(count: u64, size: usize, from_ms: u64, to_ms: u64) -> Bursts {
    Bursts {
        count,
        size,
        period_from: Duration::from_millis(from_ms),
        period_to: Duration::from_millis(to_ms),
    }
}

/// Requests arrived, split where more than `gap` passed between two.
fn groups(arrivals: &[Instant], gap: Duration) -> Vec<Vec<Instant>> {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut groups: Vec<Vec<Instant>> = Vec::new();
    for t in sorted {
        match groups.last_mut() {
            Some(g) if t - *g.last().unwrap() <= gap => g.push(t),
            _ => groups.push(vec![t]),
        }
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_burst_arrives_whole_on_every_protocol_and_method() {
    let server = TestServer::start(Behaviour::Auto("r")).await;
    let schedule = bursts(4, 20, 800, 1000);
    let config = Config {
        bursts: Some(schedule),
        keepalive_conns: 20,
        fresh_fraction: 0.25,
        h2_fraction: 0.25,
        slow_fraction: 0.0,
        post_fraction: 0.3,
        timeout: Duration::from_secs(5),
        ..Config::new(server.target())
    };
    let run = LoadGen::new(config).await.unwrap();
    // The HTTP/2 probe made one request; what follows is the schedule's.
    assert_eq!(Seen::get(&server.seen.requests), 1);
    assert_eq!(Seen::get(&server.seen.h2_requests), 1);
    server.seen.arrivals.lock().unwrap().clear();
    let r = tokio::time::timeout(Duration::from_secs(20), run.run(std::future::pending()))
        .await
        .expect("the run ends by itself")
        .unwrap();
    adds_up(&r);
    assert_eq!(r.stop_reason, StopReason::BurstsDone);
    assert_eq!((r.scheduled, r.sent, r.outcomes.ok), (80, 80, 80));
    assert!(r.is_clean(), "{r:#?}");
    // It waited for the last burst's instant.
    assert_eq!(schedule.span(), Duration::from_millis(2700));
    assert!(r.elapsed_ms >= 2700, "{}", r.elapsed_ms);

    // The server saw exactly what the report says, protocol by protocol and
    // method by method.
    let seen = &server.seen;
    assert_eq!(Seen::get(&seen.requests) - 1, 80);
    assert_eq!(Seen::get(&seen.h2_requests) - 1, r.modes.http2.sent);
    assert_eq!(Seen::get(&seen.close_requests), r.modes.fresh.sent);
    assert_eq!(Seen::get(&seen.posts), r.methods.post.sent);
    for (name, m) in [
        ("keep-alive", &r.modes.keepalive),
        ("fresh", &r.modes.fresh),
        ("http2", &r.modes.http2),
    ] {
        assert!(m.sent > 0, "{name}: {r:#?}");
    }
    let post = &r.methods.post.modes;
    assert!(post.keepalive.sent + post.fresh.sent + post.http2.sent > 0);
    assert!(r.methods.get.sent > 0);

    // Four bursts of twenty arrived, each one whole well before the next
    // (the bursts are 800 ms or more apart).
    let window = Duration::from_millis(400);
    let arrived = groups(&seen.arrivals.lock().unwrap(), window);
    let sizes: Vec<usize> = arrived.iter().map(Vec::len).collect();
    assert_eq!(sizes, [20, 20, 20, 20]);
    for g in &arrived {
        assert!(*g.last().unwrap() - g[0] < window);
    }

    // The report says the same, burst by burst.
    let b = r.bursts.as_ref().expect("bursts reported");
    assert_eq!(b.started, 4);
    let at: Vec<f64> = b.per_burst.iter().map(|b| b.at_ms).collect();
    assert_eq!(at, [0.0, 800.0, 1700.0, 2700.0]);
    assert!(b.per_burst.iter().all(|b| b.sent == 20 && b.failures == 0));
    assert!(b.max_spread_ms < 400.0, "{b:#?}");
    let widest = b.per_burst.iter().map(|b| b.spread_ms).fold(0.0, f64::max);
    assert_eq!(widest, b.max_spread_ms);
}

/// The shape a proxy's pool sees: as many pooled connections as a burst
/// has requests, idle between bursts, all reused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_burst_holds_one_pooled_connection_per_request() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let r = run(Config {
        bursts: Some(bursts(3, 20, 800, 800)),
        keepalive_conns: 20,
        fresh_fraction: 0.0,
        post_fraction: 0.0,
        slow_fraction: 1.0,
        // Long enough that a whole burst is in flight at once, short enough
        // that it is over before the next one.
        slow_ms: MsRange { min: 600, max: 600 },
        timeout: Duration::from_secs(5),
        ..Config::new(server.target())
    })
    .await;
    assert_eq!(r.stop_reason, StopReason::BurstsDone);
    assert_eq!((r.sent, r.outcomes.ok), (60, 60));
    assert_eq!(Seen::get(&server.seen.max_active), 20);
    // Twenty connections, each reused by every burst.
    assert_eq!(Seen::get(&server.seen.connections), 20);
    assert_eq!(r.connections.opened, 20);
    assert_eq!(r.modes.keepalive.sent, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_clients_run_alongside_the_bursts() {
    let server = StreamServer::start(Sse::Forever, Ws::Forever).await;
    let r = run(Config {
        bursts: Some(bursts(3, 5, 300, 400)),
        keepalive_conns: 5,
        slow_fraction: 0.0,
        // The fake answers requests with its name; it echoes nothing.
        post_fraction: 0.0,
        sse_clients: 2,
        ws_clients: 2,
        stream_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        ..Config::new(server.addr.to_string())
    })
    .await;
    streams_add_up(&r);
    assert_eq!(r.stop_reason, StopReason::BurstsDone);
    assert_eq!((r.sent, r.outcomes.ok), (15, 15), "{r:#?}");
    for s in [&r.streams.sse, &r.streams.ws] {
        assert_eq!(
            (s.opened, s.failed, s.closed_by_client),
            (2, 0, 2),
            "{s:#?}"
        );
    }
    assert!(r.streams.sse.events > 0 && r.streams.ws.messages_echoed > 0);
}

#[tokio::test]
async fn a_stop_ends_a_burst_schedule_early() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let started = Instant::now();
    let r = loadgen::run(
        Config {
            bursts: Some(bursts(100, 3, 1500, 1500)),
            keepalive_conns: 3,
            slow_fraction: 0.0,
            ..Config::new(server.target())
        },
        // Halfway between the second burst and the third.
        tokio::time::sleep(Duration::from_millis(2250)),
    )
    .await
    .unwrap();
    adds_up(&r);
    assert_eq!(r.stop_reason, StopReason::Stopped);
    // Bursts at 0 s and 1.5 s, then the stop.
    assert_eq!((r.sent, r.outcomes.ok), (6, 6));
    assert_eq!(r.bursts.as_ref().unwrap().started, 2);
    assert_eq!(r.bursts.unwrap().per_burst.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn nonsense_schedules_are_refused_before_running() {
    for (config, needle) in [
        (
            Config {
                bursts: Some(bursts(10, 100, 940, 1060)),
                ..Config::new("127.0.0.1:1")
            },
            "--keepalive-conns (16) must be at least --burst-size (100)",
        ),
        (
            Config {
                bursts: Some(bursts(0, 1, 10, 10)),
                ..Config::new("127.0.0.1:1")
            },
            "--bursts must be in 1..=10000, got 0",
        ),
        (
            Config {
                bursts: Some(bursts(3, 1, 1060, 940)),
                ..Config::new("127.0.0.1:1")
            },
            "--burst-period FROM..TO needs FROM <= TO",
        ),
        (
            Config {
                bursts: Some(bursts(3, 1, 10, 10)),
                duration: Some(Duration::from_secs(1)),
                ..Config::new("127.0.0.1:1")
            },
            "--bursts cannot be used with --duration",
        ),
    ] {
        let err = loadgen::run(config, std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, loadgen::Error::Config(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}
