//! `/metrics` through the phases of a real shutdown.

use std::thread;
use std::time::Duration;

use testkit::{Conn, Lameduck, PATIENCE};

const ACTIVE: &str = "http_server_active_requests";
const OPEN: &str = "http_server_open_connections";
const PHASE: &str = "lameduck_shutdown_phase";
const DURATION: &str = "lameduck_shutdown_duration_seconds";
const ABORTED: &str = "lameduck_shutdown_aborted_requests_total";

#[test]
fn metrics_follow_every_phase() {
    let mut server = Lameduck::start(&["--drain-delay", "1s"]);

    let serving = server.metrics();
    for (series, value) in [
        (ACTIVE, 0.0),
        (OPEN, 0.0),
        (PHASE, 0.0),
        (DURATION, 0.0),
        (ABORTED, 0.0),
    ] {
        assert_eq!(serving.get(series), value, "{series}");
    }
    assert!(serving.get("process_resident_memory_bytes") > 0.0);
    assert!(serving.value("process_cpu_seconds_total").is_some());

    let mut idle = Conn::connect(server.app).unwrap();
    idle.get("/").unwrap();
    idle.get("/work?ms=abc").unwrap();
    let mut slow = Conn::connect(server.app).unwrap();
    slow.send("/work?ms=2500").unwrap();
    server.wait_for_metric(ACTIVE, 1.0);

    let busy = server.metrics();
    assert_eq!(busy.get(OPEN), 2.0);
    assert_eq!(busy.get(PHASE), 0.0);
    let ok = r#"http_server_request_duration_seconds_count{code="200",method="GET"}"#;
    let bad = r#"http_server_request_duration_seconds_count{code="400",method="GET"}"#;
    assert_eq!(busy.get(ok), 1.0);
    assert_eq!(busy.get(bad), 1.0);
    assert_eq!(
        busy.get(
            r#"http_server_request_duration_seconds_bucket{code="200",method="GET",le="+Inf"}"#
        ),
        1.0
    );

    server.terminate();
    let draining = server.metrics();
    assert_eq!(draining.get(PHASE), 1.0);
    assert_eq!(draining.get(ACTIVE), 1.0);
    let first = draining.get(DURATION);
    assert!(first > 0.0);
    thread::sleep(Duration::from_millis(200));
    let later = server.metrics().get(DURATION);
    assert!(
        later >= first + 0.15,
        "duration does not grow live: {first} then {later}"
    );

    server.wait_log_phase("closing");
    let closing = server.metrics();
    assert_eq!(closing.get(PHASE), 2.0);
    assert_eq!(closing.get(ACTIVE), 1.0);
    // The idle keep-alive connection closes as closing starts; the slow one stays.
    server.wait_for_metric(OPEN, 1.0);
    assert!(idle.closed_within(PATIENCE));

    assert_eq!(slow.recv().unwrap().status, 200);
    assert_eq!(server.exit_code(), 0);
}
