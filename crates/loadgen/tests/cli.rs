//! The `loadgen` binary as the e2e backends run it, and the report format.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loadgen::{Progress, Report, StopReason};
use support::{Behaviour, TestServer, http};

fn loadgen(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Forwards the child's stderr lines; the report stays on stdout.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn control_addr(lines: &mpsc::Receiver<String>) -> SocketAddr {
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the control address is announced");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["control_listen"].as_str().unwrap().parse().unwrap()
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

fn report(out: &Output) -> Report {
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_a_report_after_max_requests() {
    let server = TestServer::start(Behaviour::Ok("replica-x")).await;
    let child = loadgen(&[
        "--target",
        &server.target(),
        "--rate",
        "300",
        "--max-requests",
        "45",
        "--slow-ms",
        "1-3",
    ])
    .spawn()
    .unwrap();
    let out = finish(child).await;
    let r = report(&out);
    assert_eq!(r.stop_reason, StopReason::MaxRequests);
    assert_eq!((r.sent, r.outcomes.ok), (45, 45));
    assert!(r.is_clean());
    assert_eq!(r.config.rate, 300.0);
    assert_eq!(r.served_by["replica-x"], r.routes.root.sent);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loadgen: 45 sent"), "{stderr}");
    // A fifth are POSTs by default.
    let post = r.methods.post.sent;
    assert!(post > 0, "{r:#?}");
    assert!(
        stderr.contains(&format!(
            ", POST {post} sent {post} ok 0 failed (0 wrong echo)"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_stop_ends_the_run_and_progress_lines_appear() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let mut child = loadgen(&[
        "--target",
        &server.target(),
        "--duration",
        "1m",
        "--control-listen",
        "127.0.0.1:0",
        "--progress",
    ])
    .spawn()
    .unwrap();
    let lines = stderr_lines(&mut child);
    let addr = control_addr(&lines);
    let line = lines.recv_timeout(Duration::from_secs(5)).unwrap();
    let progress: Progress = serde_json::from_str(&line).unwrap();
    assert!(progress.sent > 0, "{progress:?}");
    assert_eq!(http(addr, "POST", "/stop").await.0, 202);
    let r = report(&finish(child).await);
    assert_eq!(r.stop_reason, StopReason::Stopped);
    assert!(r.is_clean(), "{r:#?}");
    assert!(r.elapsed_ms < 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_with_a_report() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let mut child = loadgen(&[
        "--target",
        &server.target(),
        "--duration",
        "1m",
        "--control-listen",
        "127.0.0.1:0",
        "--slow-fraction",
        "1",
        "--post-fraction",
        "0",
        "--slow-ms",
        "300",
    ])
    .spawn()
    .unwrap();
    let lines = stderr_lines(&mut child);
    control_addr(&lines);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let r = report(&finish(child).await);
    assert_eq!(r.stop_reason, StopReason::Stopped);
    // The 300 ms requests in flight at the signal finished.
    assert!(r.sent > 0 && r.outcomes.ok == r.sent, "{:#?}", r.outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_report_to_a_file_when_asked() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let path = std::env::temp_dir().join(format!("loadgen-report-{}.json", std::process::id()));
    let child = loadgen(&[
        "--target",
        &server.target(),
        "--max-requests",
        "5",
        "--pretty",
        "--report",
        path.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let out = finish(child).await;
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(text.lines().count() > 10, "pretty-printed");
    let r: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(r.outcomes.ok, 5);
}

/// The in-cluster Job's way: one stream, the report last, whole, after the
/// progress lines and the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_stderr_comes_last_on_the_one_stream() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let child = loadgen(&[
        "--target",
        &server.target(),
        "--max-requests",
        "300",
        "--rate",
        "200",
        "--progress",
        "--report-on-stderr",
    ])
    .spawn()
    .unwrap();
    let out = finish(child).await;
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let last = lines.last().expect("stderr has lines");
    let r: Report = serde_json::from_str(last).unwrap();
    assert_eq!(r.outcomes.ok, 300);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .any(|l| l.starts_with("loadgen: 300 sent")),
        "the summary comes before the report: {stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\"in_flight\"")),
        "progress lines: {stderr}"
    );
    assert_eq!(Report::find_in_log(&stderr), Some(r));
}

#[test]
fn invalid_flags_exit_2_naming_the_problem() {
    for (args, needle) in [
        (&["--target", "h:1"][..], "--duration"),
        (
            &[
                "--target",
                "h:1",
                "--duration",
                "1s",
                "--fresh-fraction",
                "2",
            ][..],
            "fresh fraction",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--keepalive-conns",
                "0",
            ][..],
            "keep-alive",
        ),
        (
            &["--target", "h:1", "--duration", "5 parsecs"][..],
            "--duration",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--h2-streams",
                "0",
            ][..],
            "HTTP/2 streams per connection must be at least 1",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--fresh-fraction",
                "0.6",
                "--h2-fraction",
                "0.6",
            ][..],
            "fresh fraction + HTTP/2 fraction must be at most 1",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--slow-fraction",
                "1",
            ][..],
            "slow fraction + POST fraction must be at most 1 (the rest is GET /), got 1 + 0.2",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--post-fraction",
                "1.5",
            ][..],
            "POST fraction must be in [0, 1], got 1.5",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--h2-fraction",
                "0.5",
                "--h2-conns",
                "0",
            ][..],
            "at least one HTTP/2 connection",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--http2",
                "--h2-fraction",
                "0.5",
            ][..],
            "it cannot be used with --h2-fraction",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--ws-clients",
                "1",
                "--stream-interval",
                "5ms",
            ][..],
            "stream interval must be between 10ms and 60s",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--sse-clients",
                "many",
            ][..],
            "--sse-clients",
        ),
        (
            &[
                "--target",
                "h:1",
                "--max-requests",
                "1",
                "--report",
                "r.json",
                "--report-on-stderr",
            ][..],
            "--report-on-stderr",
        ),
        (
            &[
                "--target=h:1",
                "--bursts=120",
                "--burst-size=100",
                "--burst-period=940ms..1060ms",
            ][..],
            "--keepalive-conns (16) must be at least --burst-size (100) when the mix sends \
             keep-alive requests (a share of 0.75)",
        ),
        (
            &[
                "--target=h:1",
                "--bursts=0",
                "--burst-size=1",
                "--burst-period=1s",
            ][..],
            "--bursts must be in 1..=10000, got 0",
        ),
        (
            &[
                "--target=h:1",
                "--bursts=2",
                "--burst-size=0",
                "--burst-period=1s",
            ][..],
            "--burst-size must be in 1..=10000, got 0",
        ),
        (
            &[
                "--target=h:1",
                "--bursts=2",
                "--burst-size=1",
                "--burst-period=1060ms..940ms",
            ][..],
            "--burst-period FROM..TO needs FROM <= TO, got 1.06s..940ms",
        ),
        (
            &[
                "--target=h:1",
                "--bursts=2",
                "--burst-size=1",
                "--burst-period=1s..",
            ][..],
            "--burst-period <FROM..TO>",
        ),
        (
            &[
                "--target=h:1",
                "--rate=50",
                "--bursts=2",
                "--burst-size=1",
                "--burst-period=1s",
            ][..],
            "'--rate <RATE>' cannot be used with '--bursts <BURSTS>'",
        ),
        (&["--target=h:1", "--bursts=2"][..], "--burst-size"),
    ] {
        let out = loadgen(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_end_the_run_by_themselves() {
    let server = TestServer::start(Behaviour::Auto("replica-b")).await;
    let out = finish(
        loadgen(&[
            "--target",
            &server.target(),
            "--bursts",
            "3",
            "--burst-size",
            "5",
            "--burst-period",
            "100ms..200ms",
            "--keepalive-conns",
            "5",
            "--h2-fraction",
            "0.25",
            "--slow-ms",
            "1-3",
        ])
        .spawn()
        .unwrap(),
    )
    .await;
    let r = report(&out);
    assert_eq!(r.stop_reason, StopReason::BurstsDone);
    assert_eq!((r.sent, r.outcomes.ok), (15, 15));
    assert!(r.is_clean(), "{r:#?}");
    let b = r.bursts.as_ref().unwrap();
    assert_eq!(b.started, 3);
    let schedule = r.config.bursts.unwrap();
    assert_eq!((schedule.count, schedule.size), (3, 5));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stop_reason"], "bursts_done");
    assert_eq!(json["version"], 5);
    assert_eq!(
        json["config"]["bursts"],
        serde_json::json!({ "count": 3, "size": 5, "period_from_ms": 100, "period_to_ms": 200 })
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            ", bursts 3 of 3 x 5 (largest spread {} ms, latest first start {} ms)",
            b.max_spread_ms, b.max_start_delay_ms
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_runs_report_per_protocol() {
    let server = TestServer::start(Behaviour::Auto("replica-2")).await;
    let out = finish(
        loadgen(&[
            "--target",
            &server.target(),
            "--rate",
            "400",
            "--max-requests",
            "200",
            "--slow-ms",
            "1-3",
            "--http2",
        ])
        .spawn()
        .unwrap(),
    )
    .await;
    let r = report(&out);
    assert!(r.is_clean(), "{r:#?}");
    assert_eq!((r.modes.http2.sent, r.modes.http2.outcomes.ok), (200, 200));
    assert_eq!(r.config.h2_fraction, 1.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused and resent 0"), "{stderr}");
    assert!(!stderr.contains('['), "one protocol, no split: {stderr}");

    // A mix shows the split per protocol on the summary line.
    let out = finish(
        loadgen(&[
            "--target",
            &server.target(),
            "--rate",
            "400",
            "--max-requests",
            "200",
            "--fresh-fraction",
            "0.25",
            "--h2-fraction",
            "0.25",
        ])
        .spawn()
        .unwrap(),
    )
    .await;
    let r = report(&out);
    assert!(r.is_clean(), "{r:#?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("loadgen: ")).unwrap();
    let split = format!(
        "[keep-alive {k} sent {k} ok 0 failed; fresh {f} sent {f} ok 0 failed; \
         http2 {h} sent {h} ok 0 failed]",
        k = r.modes.keepalive.sent,
        f = r.modes.fresh.sent,
        h = r.modes.http2.sent,
    );
    assert!(line.ends_with(&split), "{line}");
}

#[test]
fn http2_from_the_environment() {
    // Off: the fractions may be set.
    let out = loadgen(&["--target", "h:1", "--max-requests", "1", "--seed", "x"])
        .env("LOADGEN_HTTP2", "false")
        .env("LOADGEN_FRESH_FRACTION", "0.5")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'x' for '--seed"), "{stderr}");
    // On: a fraction from the environment conflicts as a flag would.
    let out = loadgen(&["--target", "h:1", "--max-requests", "1"])
        .env("LOADGEN_HTTP2", "true")
        .env("LOADGEN_FRESH_FRACTION", "0.5")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot be used with --fresh-fraction"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_against_an_http1_only_server_exits_2_with_one_line() {
    let server = TestServer::start(Behaviour::Ok("r")).await;
    let out = finish(
        loadgen(&[
            "--target",
            &server.target(),
            "--max-requests",
            "5",
            "--http2",
        ])
        .spawn()
        .unwrap(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "target {} does not speak h2c (HTTP/2 with prior knowledge): ",
            server.target()
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_round_trips_and_is_found_in_interleaved_logs() {
    let server = TestServer::start(Behaviour::Status(502)).await;
    let r = loadgen::run(
        loadgen::Config {
            max_requests: Some(30),
            rate: 300.0,
            slow_fraction: 0.5,
            slow_ms: loadgen::MsRange { min: 1, max: 2 },
            ..loadgen::Config::new(server.target())
        },
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(r.outcomes.status[&502], 30);
    let line = r.to_json_line();
    assert!(!line.contains('\n'));
    let back: Report = serde_json::from_str(&line).unwrap();
    assert_eq!(back, r);

    let log = format!(
        "2025-01-01T00:00:00Z WARN something\n{{\"elapsed_ms\":1}}\n{line}\n{{\"control_listen\":\"x\"}}\n"
    );
    assert_eq!(Report::find_in_log(&log), Some(r));
    assert_eq!(Report::find_in_log("no report here\n{}"), None);
}
