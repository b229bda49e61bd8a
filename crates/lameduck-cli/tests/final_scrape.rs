//! The final scrape: once the shutdown has ended, the process waits for
//! every recent scraper of `/metrics` to read the final figures, within
//! `--final-scrape-timeout`, then exits; and `--termination-log`. The real
//! binary, real signals, scrapers on loopback addresses of their own.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use testkit::{Conn, Lameduck, Metrics, PATIENCE, Scrape, ScrapeLoop, refused};
use tokio_tungstenite::tungstenite;

const PHASE: &str = "lameduck_shutdown_phase";
const DURATION: &str = "lameduck_shutdown_duration_seconds";
const CLEAN: &str = r#"lameduck_shutdowns_total{outcome="clean"}"#;
const FORCED: &str = r#"lameduck_shutdowns_total{outcome="forced"}"#;
const WAITING: &str = "waiting for a final scrape";

/// Linux routes all of 127.0.0.0/8 to the loopback interface: two source
/// addresses are two scrapers, as a Prometheus HA pair is.
const FIRST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const SECOND: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The first scrape that read the final figures (phase done or forced).
fn first_final(scrapes: &[Scrape]) -> &Scrape {
    scrapes
        .iter()
        .find(|s| s.metrics.get(PHASE) >= 3.0)
        .unwrap_or_else(|| {
            panic!(
                "no scrape read the final figures; {} scrapes",
                scrapes.len()
            )
        })
}

fn logged(server: &Lameduck, message: &str) -> bool {
    server.logs().iter().any(|e| e["message"] == message)
}

#[test]
fn without_a_scraper_the_process_exits_at_once() {
    // At the default bound, 65 s: an exit within PATIENCE shows it never applied.
    let mut server = Lameduck::start(&["--final-scrape-timeout", "65s"]);
    assert_eq!(
        Conn::connect(server.app).unwrap().get("/").unwrap().status,
        200
    );
    assert_eq!(server.admin_get("/readyz").status, 200);
    let signalled = server.terminate();
    let (status, exited) = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    eprintln!(
        "exited {:?} after SIGTERM",
        exited.duration_since(signalled)
    );
    assert!(!logged(&server, WAITING), "waited without a scraper");
}

#[test]
fn one_scraper_is_waited_for_and_its_next_scrape_reads_the_final_figures() {
    let every = ms(1000);
    let mut server = Lameduck::start(&["--final-scrape-timeout", "30s"]);
    let mut slow = Conn::connect(server.app).unwrap();
    slow.send("/work?ms=500").unwrap();
    let scraper = ScrapeLoop::start(server.admin, FIRST, every);
    assert!(scraper.wait_for_next(PATIENCE));

    server.terminate();
    assert_eq!(slow.recv().unwrap().status, 200);
    let (status, exited) = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    let scrapes = scraper.join();

    let finished = server.wait_log("shutdown finished");
    let last = first_final(&scrapes);
    assert_eq!(last.metrics.get(PHASE), 3.0);
    let duration_ms = finished["duration_ms"].as_f64().unwrap();
    let scraped_ms = last.metrics.get(DURATION) * 1000.0;
    assert!(
        (scraped_ms - duration_ms).abs() < 0.01,
        "scraped {scraped_ms} ms, logged {duration_ms} ms"
    );
    assert!(duration_ms >= 400.0, "{duration_ms}");
    assert_eq!(
        (last.metrics.get(CLEAN), last.metrics.get(FORCED)),
        (1.0, 0.0)
    );
    // Gone right after that scrape: before the scraper's next one.
    let after = exited.saturating_duration_since(last.at);
    assert!(after < every, "exited {after:?} after the final scrape");
    let read = server.wait_log("final scrape read");
    assert_eq!(read["scraped"], "127.0.0.1");
    eprintln!("waited {} ms for the final scrape", read["waited_ms"]);
}

#[test]
fn two_scrapers_from_two_addresses_are_both_waited_for() {
    let mut server = Lameduck::start(&["--final-scrape-timeout", "30s"]);
    let fast = ScrapeLoop::start(server.admin, FIRST, ms(200));
    let slow = ScrapeLoop::start(server.admin, SECOND, ms(1500));
    assert!(fast.wait_for_next(PATIENCE));
    // Signalled just after the slow scraper's scrape: its next comes about
    // 1.5 s later, long after the fast one's.
    assert!(slow.wait_for_next(PATIENCE));
    server.terminate();
    assert_eq!(server.exit_code(), 0);
    for (scraper, what) in [(fast, "127.0.0.1"), (slow, "127.0.0.2")] {
        let scrapes = scraper.join();
        assert_eq!(first_final(&scrapes).metrics.get(PHASE), 3.0, "{what}");
    }
    let waiting = server.wait_log(WAITING);
    assert_eq!(waiting["scrapers"], "127.0.0.1, 127.0.0.2");
    let read = server.wait_log("final scrape read");
    assert_eq!(read["scraped"], "127.0.0.1, 127.0.0.2");
}

#[test]
fn a_scraper_seen_once_is_waited_for_until_the_bound() {
    let mut server = Lameduck::start(&["--final-scrape-timeout", "1500ms"]);
    assert_eq!(server.admin_get("/metrics").status, 200);
    let signalled = server.terminate();
    server.wait_log(WAITING);
    // Meanwhile only the admin listener is up: alive, not ready.
    assert!(refused(server.app), "the application listener is open");
    assert_eq!(server.admin_get("/livez").status, 200);
    assert_eq!(server.admin_get("/readyz").status, 503);
    let (status, exited) = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    let took = exited.duration_since(signalled);
    assert!(took >= ms(1500), "exited {took:?} after SIGTERM");
    let ended = server.wait_log("final scrape wait ended without every scraper");
    assert_eq!(ended["missed"], "127.0.0.1");
}

#[test]
fn a_scraper_that_stopped_is_given_up_after_twice_its_interval() {
    // Bounded at a minute, but a scraper that scraped every 200 ms and then
    // stopped is expected for at most 2 x 200 ms + 1 s after its last scrape.
    let mut server = Lameduck::start(&["--final-scrape-timeout", "60s"]);
    let scraper = ScrapeLoop::start(server.admin, FIRST, ms(200));
    assert!(scraper.wait_for_next(PATIENCE));
    assert!(scraper.wait_for_next(PATIENCE));
    let scrapes = scraper.stop();
    let last = scrapes.last().unwrap().at;
    server.terminate();
    let (status, exited) = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    eprintln!(
        "exited {:?} after the last scrape",
        exited.duration_since(last)
    );
    let ended = server.wait_log("final scrape wait ended without every scraper");
    assert_eq!(ended["missed"], "127.0.0.1");
}

#[test]
fn a_forced_shutdown_shows_phase_4_and_what_it_cut_in_the_final_scrape() {
    let mut server = Lameduck::start(&[
        "--shutdown-timeout",
        "300ms",
        "--stream-drain=false",
        "--final-scrape-timeout",
        "30s",
    ]);
    let mut slow = Conn::connect(server.app).unwrap();
    slow.send("/work?ms=20000").unwrap();
    let stream = TcpStream::connect(server.app).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let (_ws, response) = tungstenite::client(format!("ws://{}/ws", server.app), stream).unwrap();
    assert_eq!(response.status(), 101);
    let scraper = ScrapeLoop::start(server.admin, FIRST, ms(500));
    let busy = |m: &Metrics| {
        m.get("http_server_active_requests") == 1.0 && m.get("lameduck_upgraded_connections") == 1.0
    };
    let deadline = Instant::now() + PATIENCE;
    while !busy(&server.metrics()) {
        assert!(
            Instant::now() < deadline,
            "the request and the WebSocket never showed"
        );
        std::thread::sleep(ms(5));
    }

    server.terminate();
    assert_eq!(server.exit_code(), 1);
    let scrapes = scraper.join();
    let last = first_final(&scrapes);
    for (series, value) in [
        (PHASE, 4.0),
        ("lameduck_shutdown_aborted_requests_total", 1.0),
        ("lameduck_shutdown_aborted_upgraded_connections_total", 1.0),
        (FORCED, 1.0),
        (CLEAN, 0.0),
    ] {
        assert_eq!(last.metrics.get(series), value, "{series}");
    }
    assert!(last.metrics.get(DURATION) >= 0.3);
    server.wait_log("final scrape read");
}

/// A file name of its own under the temporary directory.
fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lameduck-{}-{name}", std::process::id()))
}

#[test]
fn the_termination_log_summarises_the_shutdown_on_one_line() {
    let path = temp_path("termination-log");
    let _ = std::fs::remove_file(&path);
    let mut server = Lameduck::start(&[
        "--termination-log",
        path.to_str().unwrap(),
        "--final-scrape-timeout",
        "30s",
    ]);
    let mut slow = Conn::connect(server.app).unwrap();
    slow.send("/work?ms=300").unwrap();
    let scraper = ScrapeLoop::start(server.admin, FIRST, ms(300));
    assert!(scraper.wait_for_next(PATIENCE));
    let before = SystemTime::now();
    server.terminate();
    let after = SystemTime::now();
    assert_eq!(slow.recv().unwrap().status, 200);
    assert_eq!(server.exit_code(), 0);
    scraper.join();

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let summary: Value = serde_json::from_str(&text).unwrap();
    let unix_ms = |t: SystemTime| {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        u64::try_from(since.as_millis()).unwrap()
    };
    let signal = summary["signal_unix_ms"].as_u64().unwrap();
    assert!(
        (unix_ms(before)..=unix_ms(after)).contains(&signal),
        "{summary}"
    );
    let finished = server.wait_log("shutdown finished");
    let logged_ms = finished["duration_ms"].as_f64().unwrap();
    let duration_ms = summary["duration_ms"].as_u64().unwrap();
    assert!((duration_ms as f64 - logged_ms).abs() < 1.0, "{summary}");
    assert_eq!(summary["outcome"], "clean");
    assert_eq!(summary["completed"], 1);
    assert_eq!(summary["aborted"], 0);
    assert_eq!(summary["aborted_upgraded"], 0);
    assert_eq!(
        summary["scrapers"],
        serde_json::json!([{ "address": "127.0.0.1", "scraped": true }])
    );
    let read = server.wait_log("final scrape read");
    let waited = read["waited_ms"].as_f64().unwrap();
    let linger = summary["linger_ms"].as_u64().unwrap();
    assert!((linger as f64 - waited).abs() < 1.0, "{summary}");
}

#[test]
fn a_termination_log_that_cannot_be_written_is_logged_not_fatal() {
    let path = temp_path("no-such-directory").join("termination-log");
    let mut server = Lameduck::start(&["--termination-log", path.to_str().unwrap()]);
    // No scrape: the summary is written at once.
    server.terminate();
    assert_eq!(server.exit_code(), 0);
    let warning = server.wait_log("cannot write the termination log");
    assert_eq!(warning["level"], "WARN");
}

/// What the wait for the final scrape costs a terminating process, with one
/// scraper at a few intervals, signalled at evenly spread points of the
/// scrape cycle. Prints figures; run it with
/// `cargo test -p lameduck-cli --test final_scrape -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, about a minute and a half"]
fn measure_what_the_final_scrape_costs() {
    const RUNS: u32 = 10;
    for every in [None, Some(ms(500)), Some(ms(2000))] {
        let (mut waits, mut exits) = (Vec::new(), Vec::new());
        for run in 0..RUNS {
            let mut server = Lameduck::start(&["--final-scrape-timeout", "65s"]);
            let scraper = every.map(|every| {
                let scraper = ScrapeLoop::start(server.admin, FIRST, every);
                assert!(scraper.wait_for_next(PATIENCE));
                assert!(scraper.wait_for_next(PATIENCE));
                // Signalled at run/RUNS of the way to the next scrape.
                std::thread::sleep(every * run / RUNS);
                scraper
            });
            let signalled = server.terminate();
            let (status, exited) = server.wait_exit();
            assert_eq!(status.code(), Some(0));
            if let Some(scraper) = scraper {
                first_final(&scraper.join());
                waits.push(
                    server.wait_log("final scrape read")["waited_ms"]
                        .as_f64()
                        .unwrap(),
                );
            } else {
                waits.push(0.0);
            }
            exits.push(exited.duration_since(signalled).as_secs_f64() * 1000.0);
        }
        let stats = |v: &[f64]| {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(0.0, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            format!("min {min:.0} / mean {mean:.0} / max {max:.0} ms")
        };
        let label = every.map_or("no scraper".to_owned(), |e| format!("scraped every {e:?}"));
        eprintln!(
            "{label}, {RUNS} runs: waited for the final scrape {}; SIGTERM to exit {}",
            stats(&waits),
            stats(&exits)
        );
    }
}
