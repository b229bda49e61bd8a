//! The command line and the demo routes: exit codes, one-line errors.

use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{Conn, Lameduck, run};

fn stderr_line(stderr: &str) -> &str {
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    stderr.trim_end()
}

#[test]
fn bad_flag_values_exit_2_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (&["--drain-delay", "abc"][..], "--drain-delay"),
        (
            &["serve", "--shutdown-timeout", "-1s"][..],
            "--shutdown-timeout",
        ),
        (&["--idle-grace", "2 fortnights"][..], "--idle-grace"),
        (
            &["--header-read-timeout", "0s"][..],
            "--header-read-timeout",
        ),
        (&["--idle-timeout", "0s"][..], "--idle-timeout"),
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--max-connections", "many"][..], "--max-connections"),
        (&["--listen", "localhost"][..], "--listen"),
        (&["--admin-listen", "1.2.3.4"][..], "--admin-listen"),
        (&["--log-format", "xml"][..], "--log-format"),
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["sleep", "soon"][..], "soon"),
        (&["sleep"][..], "<DURATION>"),
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        let line = stderr_line(&stderr);
        assert!(line.contains(flag), "{args:?}: {line}");
        assert!(line.starts_with("error: "), "{line}");
    }
}

#[test]
fn bad_environment_values_name_the_flag_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .env("LAMEDUCK_DRAIN_DELAY", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr_line(&stderr).contains("--drain-delay"), "{stderr}");
}

#[test]
fn environment_sets_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("LAMEDUCK_LOG_FORMAT", "json")
        .env("LAMEDUCK_DRAIN_DELAY", "1500ms")
        // An invalid limit proves the variable is read before anything starts.
        .env("LAMEDUCK_MAX_CONNECTIONS", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--max-connections"));
}

#[test]
fn invalid_rust_log_exits_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .env("RUST_LOG", "lameduck=loud")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr_line(&stderr).contains("RUST_LOG"), "{stderr}");
}

#[test]
fn busy_port_exits_1_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for (flag, other) in [
        ("--listen", "--admin-listen"),
        ("--admin-listen", "--listen"),
    ] {
        let (code, stderr) = run(&[flag, &addr, other, "127.0.0.1:0"]);
        assert_eq!(code, 1, "{stderr}");
        let line = stderr_line(&stderr);
        assert!(line.contains(&addr) && line.contains(flag), "{line}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .arg(flag)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        assert!(!output.stdout.is_empty());
    }
}

#[test]
fn sleep_sleeps_then_exits_0() {
    let started = Instant::now();
    let (code, stderr) = run(&["sleep", "300ms"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn demo_routes() {
    let server = Lameduck::start(&[]);
    let mut conn = Conn::connect(server.app).unwrap();
    let root = conn.get("/").unwrap();
    assert_eq!(
        (root.status, root.body.as_slice()),
        (200, &b"test-replica"[..])
    );
    assert_eq!(
        root.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(root.header("lameduck-replica"), Some("test-replica"));
    assert_eq!(root.header("lameduck-phase"), None);
    for (path, status) in [
        ("/work?ms=0", 200),
        ("/work?ms=5", 200),
        ("/work", 200),
        ("/work?ms=abc", 400),
        ("/work?ms=60001", 400),
        ("/work?ms=-5", 400),
        ("/nope", 404),
        ("/work/", 404),
    ] {
        assert_eq!(conn.get(path).unwrap().status, status, "{path}");
    }
    for (method, path, allow) in [
        ("PUT", "/", "GET, HEAD, POST"),
        ("POST", "/work", "GET, HEAD"),
    ] {
        conn.send_raw(
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let refused = conn.recv().unwrap();
        assert_eq!(refused.status, 405, "{method} {path}");
        assert_eq!(refused.header("allow"), Some(allow), "{method} {path}");
    }
    assert_eq!(server.admin_get("/nope").status, 404);
}

#[test]
fn post_echoes_bodies_up_to_64_kib() {
    let server = Lameduck::start(&[]);
    let mut conn = Conn::connect(server.app).unwrap();
    // A whole body, then one in chunks, on the same connection.
    let body: Vec<u8> = (0..=255u8).cycle().take(65_536).collect();
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    conn.send_raw(&request).unwrap();
    let echoed = conn.recv().unwrap();
    assert_eq!(echoed.status, 200);
    assert_eq!(
        echoed.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(echoed.body == body, "the same {} bytes", body.len());
    conn.send_raw(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        .unwrap();
    let chunked = conn.recv().unwrap();
    assert_eq!(
        (chunked.status, chunked.body.as_slice()),
        (200, &b"abcde"[..])
    );
    // Announced too long: refused before a byte of it is read.
    let mut conn = Conn::connect(server.app).unwrap();
    conn.send_raw(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n")
        .unwrap();
    assert_eq!(conn.recv().unwrap().status, 413);
    // A body that stops short: the server gives up on it when the client
    // goes, and goes on serving.
    let mut short = Conn::connect(server.app).unwrap();
    short
        .send_raw(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly this")
        .unwrap();
    drop(short);
    let mut conn = Conn::connect(server.app).unwrap();
    assert_eq!(conn.get("/").unwrap().status, 200);
}

#[test]
fn probe_exits_0_on_2xx_and_1_otherwise() {
    let server = Lameduck::start(&[]);
    let ok = format!("http://{}/", server.app);
    let missing = format!("http://{}/nope", server.app);
    let readyz = format!("http://{}/readyz", server.admin);
    assert_eq!(run(&["probe", &ok]).0, 0);
    assert_eq!(run(&["probe", &readyz]).0, 0);
    let (code, stderr) = run(&["probe", &missing]);
    assert_eq!(code, 1);
    assert!(stderr_line(&stderr).contains("404"), "{stderr}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (code, stderr) = run(&["probe", "--timeout", "2s", &nobody]);
    assert_eq!(code, 1);
    // The cause, not only hyper's "client error (Connect)".
    assert!(stderr_line(&stderr).contains("refused"), "{stderr}");
    let (code, stderr) = run(&["probe", "ftp://example/"]);
    assert_eq!(code, 1);
    assert!(stderr_line(&stderr).contains("invalid URL"), "{stderr}");
}
