//! How long a connection may wait for a request: `--idle-timeout` while
//! nothing of it has arrived, `--header-read-timeout` from the first byte of
//! its headers. The real binary, raw HTTP/1.1 on loopback.

use std::thread;
use std::time::{Duration, Instant};

use testkit::{Conn, Lameduck, PATIENCE};

/// Longer than the idle time after which an HTTP/1 connection is parked
/// (hyper lets go of it and the connection waits with its socket alone).
const PARKED: Duration = Duration::from_millis(1300);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sleeps until `at` (at once if it has passed).
fn sleep_until(at: Instant) {
    thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn an_idle_connection_outlives_the_header_read_timeout() {
    let server = Lameduck::start(&["--header-read-timeout", "200ms", "--idle-timeout", "30s"]);
    // A new connection that has sent nothing yet is idle, not slow: a pool
    // may have opened it ahead of need.
    let mut fresh = Conn::connect(server.app).unwrap();
    thread::sleep(ms(600));
    assert_eq!(fresh.get("/").unwrap().status, 200);
    // Idle between requests, three times the header read timeout, then past
    // the second after which the connection is parked.
    let mut pooled = Conn::connect(server.app).unwrap();
    assert_eq!(pooled.get("/").unwrap().status, 200);
    for idle in [ms(600), PARKED] {
        thread::sleep(idle);
        let response = pooled
            .get("/")
            .unwrap_or_else(|e| panic!("after {idle:?} idle: {e}"));
        assert_eq!(response.status, 200);
        assert!(!response.says_close(), "{response:?}");
    }
    // A request that outlasts the header read timeout is not waiting for headers.
    let mut slow = Conn::connect(server.app).unwrap();
    assert_eq!(slow.get("/work?ms=800").unwrap().status, 200);
    assert_eq!(slow.get("/").unwrap().status, 200);
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout() {
    // 500ms: closed while hyper still holds the connection; 2s: once parked.
    for (idle_timeout, idle) in [("500ms", ms(500)), ("2s", ms(2000))] {
        let server = Lameduck::start(&["--idle-timeout", idle_timeout]);
        let opened = Instant::now();
        let mut silent = Conn::connect(server.app).unwrap();
        let mut used = Conn::connect(server.app).unwrap();
        let sent = Instant::now();
        assert_eq!(used.get("/").unwrap().status, 200);
        // Not before the idle timeout: the server counts from the response's
        // end, which came after `sent`.
        for (conn, since, what) in [(&mut silent, opened, "new"), (&mut used, sent, "used")] {
            let early = (since + idle).saturating_duration_since(Instant::now());
            if early > ms(100) {
                assert!(
                    !conn.closed_within(early - ms(50)),
                    "{idle_timeout}: {what} connection closed early"
                );
            }
            assert!(
                conn.closed_within(PATIENCE),
                "{idle_timeout}: {what} never closed"
            );
            let after = since.elapsed();
            assert!(
                after >= idle,
                "{idle_timeout}: {what} closed after {after:?}"
            );
        }
        // The server itself is unharmed.
        assert_eq!(
            Conn::connect(server.app).unwrap().get("/").unwrap().status,
            200
        );
    }
}

#[test]
fn the_idle_timeout_never_cuts_a_request_that_has_begun_to_arrive() {
    // The race a proxy's pool runs into: the next request starts just before
    // the server's idle deadline. Its first bytes lift the idle timeout, and
    // the header read timeout (10 s) counts from them.
    let server = Lameduck::start(&["--idle-timeout", "3s"]);
    let mut hot = Conn::connect(server.app).unwrap();
    let mut parked = Conn::connect(server.app).unwrap();
    let start = Instant::now();
    for conn in [&mut hot, &mut parked] {
        assert_eq!(conn.get("/").unwrap().status, 200);
    }
    sleep_until(start + ms(200));
    hot.send_raw(b"GET / HTTP/1.1\r\n").unwrap();
    sleep_until(start + PARKED);
    parked.send_raw(b"GET / HTTP/1.1\r\n").unwrap();
    // Well past both idle deadlines (3 s after each response).
    sleep_until(start + ms(4500));
    for (conn, what) in [(&mut hot, "held by hyper"), (&mut parked, "parked")] {
        conn.send_raw(b"Host: t\r\n\r\n").unwrap();
        let response = conn
            .recv()
            .unwrap_or_else(|e| panic!("{what}: the request was cut: {e}"));
        assert_eq!(response.status, 200, "{what}");
    }
}

#[test]
fn headers_that_trickle_in_slower_than_the_header_read_timeout_are_closed() {
    let server = Lameduck::start(&["--header-read-timeout", "500ms", "--idle-timeout", "60s"]);
    for (idle, what) in [(ms(0), "new"), (PARKED, "parked")] {
        let mut conn = Conn::connect(server.app).unwrap();
        if !idle.is_zero() {
            assert_eq!(conn.get("/").unwrap().status, 200);
            thread::sleep(idle);
        }
        let first_byte = Instant::now();
        conn.send_raw(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
        // A byte every 100 ms, for up to 5 s: ten times the timeout.
        let closed = (0..50).any(|_| conn.closed_within(ms(100)) || conn.send_raw(b"a").is_err());
        assert!(closed, "{what}: trickling headers were never cut");
        let after = first_byte.elapsed();
        assert!(
            after >= ms(500),
            "{what}: closed {after:?} after the first byte"
        );
    }
    assert_eq!(
        Conn::connect(server.app).unwrap().get("/").unwrap().status,
        200
    );
}
