//! The measurements. Every loop here is bounded in count and in time, and
//! every address is on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use testkit::Metrics;
use testkit::http::{self, Conn};

use crate::callgrind::{Protocol, Valgrind};
use crate::h2load::H2load;
use crate::loadgen::Loadgen;
use crate::process::{self, Exit, REPLICA, Server};
use crate::results::{
    Callgrind, CallgrindCost, CallgrindRuns, H2Speed, Memory, MetricsRender, Pair, Shutdown,
    SpeedPair, Throughput,
};
use crate::wrk::Wrk;

/// Longest any single socket operation of the harness may wait.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// How long idle connections sit before they are measured: past lameduck's
/// `--idle-grace` (250ms) and past the second after which it parks an idle
/// HTTP/1 connection.
pub const IDLE_SIT: Duration = Duration::from_secs(2);

/// What to run and how much of it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lameduck binary.
    pub lameduck: PathBuf,
    /// The bare hyper binary.
    pub baseline: PathBuf,
    /// The close-only binary: the floor under the idle-connections shutdown.
    pub close_only: PathBuf,
    /// hyper with hyper-util's `GracefulShutdown`: the usual way to do it.
    pub graceful_hyper: PathBuf,
    /// wrk.
    pub wrk: Wrk,
    /// Connection counts for the throughput runs.
    pub connections: Vec<u32>,
    /// A B pairs per connection count.
    pub pairs: usize,
    /// Length of one wrk run.
    pub run: Duration,
    /// Unrecorded run before each connection count's pairs.
    pub warmup: Duration,
    /// Repetitions of the cheap shutdown measurements (idle, in flight).
    pub repeats: usize,
    /// Repetitions of the ones that hold thousands of connections.
    pub heavy_repeats: usize,
    /// Idle keep-alive connections for the shutdown and memory figures.
    pub idle_connections: usize,
    /// Busy keep-alive connections for the shutdown under load.
    pub busy_connections: u32,
    /// `/work` requests in flight at the signal.
    pub in_flight: usize,
    /// Requests the server has served before `/metrics` is timed.
    pub metrics_after: u64,
    /// Timed `/metrics` requests.
    pub metrics_samples: usize,
    /// The load generator.
    pub loadgen: Loadgen,
    /// h2load, its HTTP/2 baseline.
    pub h2load: H2load,
    /// HTTP/2 connections of both, for the load generator's speed.
    pub h2_conns: u32,
    /// Concurrent streams per connection of both.
    pub h2_streams: u32,
    /// Requests per run of either.
    pub h2_requests: u64,
    /// valgrind, for the instruction counts.
    pub valgrind: Valgrind,
    /// Requests of the smaller and the larger callgrind run of each server.
    pub callgrind_requests: (u64, u64),
    /// Where callgrind writes its output.
    pub scratch: PathBuf,
}

/// lameduck's arguments: free loopback ports, JSON logs, default shutdown settings.
fn lameduck_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        // The harness reads /metrics to see the server settle, which does
        // not make it a scraper to wait for: the shutdown measured is the
        // server's own, without the wait for a final scrape.
        "--final-scrape-timeout",
        "0s",
    ];
    args.extend_from_slice(extra);
    args
}

impl Plan {
    fn start_lameduck(&self, extra: &[&str]) -> anyhow::Result<Server> {
        process::start(&self.lameduck, &lameduck_args(extra))
    }

    fn start_baseline(&self) -> anyhow::Result<Server> {
        process::start(&self.baseline, &["127.0.0.1:0"])
    }

    fn start_baseline_h2c(&self) -> anyhow::Result<Server> {
        process::start(&self.baseline, &["--h2c", "127.0.0.1:0"])
    }

    /// loadgen's rate over HTTP/2 at full speed, or why it taught nothing.
    fn loadgen_h2(&self, addr: SocketAddr, requests: u64) -> anyhow::Result<f64> {
        self.loadgen
            .flood_h2(addr, self.h2_conns, self.h2_streams, requests)?
            .learned()
    }

    /// h2load's rate with the same connections and streams.
    fn h2load(&self, addr: SocketAddr, requests: u64) -> anyhow::Result<f64> {
        self.h2load
            .run(addr, self.h2_conns, self.h2_streams, requests)?
            .learned()
    }
}

/// Both servers must give `GET /` the same answer, or the comparison means nothing.
fn same_answer(lameduck: &Server, baseline: &Server) -> anyhow::Result<()> {
    let a = http::get(lameduck.listen, "/", SOCKET_TIMEOUT)?;
    let b = http::get(baseline.listen, "/", SOCKET_TIMEOUT)?;
    ensure!(a.status == 200, "lameduck answered {}", a.status);
    ensure!(a.status == b.status, "status {} vs {}", a.status, b.status);
    ensure!(a.body == b.body, "bodies differ");
    ensure!(a.body == REPLICA.as_bytes(), "unexpected body");
    ensure!(
        a.header("content-type") == b.header("content-type"),
        "content types differ: {:?} vs {:?}",
        a.header("content-type"),
        b.header("content-type")
    );
    Ok(())
}

/// Throughput and latency of `GET /`, lameduck (A) and bare hyper (B)
/// alternating, then `/metrics` timed on the same lameduck once it has served
/// `metrics_after` requests.
pub fn throughput_and_metrics(
    plan: &Plan,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<(Vec<Throughput>, MetricsRender)> {
    let mut lameduck = plan.start_lameduck(&[])?;
    let baseline = plan.start_baseline()?;
    same_answer(&lameduck, &baseline)?;
    let mut all = Vec::new();
    for &connections in &plan.connections {
        plan.wrk.run(lameduck.listen, connections, plan.warmup)?;
        plan.wrk.run(baseline.listen, connections, plan.warmup)?;
        let mut pairs = Vec::new();
        for i in 0..plan.pairs {
            let a = plan.wrk.run(lameduck.listen, connections, plan.run)?;
            let b = plan.wrk.run(baseline.listen, connections, plan.run)?;
            log(&format!(
                "  {connections} connections, pair {}: lameduck {:.0} req/s, bare hyper {:.0} req/s, ratio {:.3}",
                i + 1,
                a.rps(),
                b.rps(),
                a.rps() / b.rps()
            ));
            pairs.push(Pair {
                lameduck: a,
                baseline: b,
            });
        }
        all.push(Throughput { connections, pairs });
    }
    drop(baseline);
    let metrics = metrics_render(plan, &lameduck, log)?;
    let exit = lameduck.terminate()?;
    ensure!(
        exit.status.success(),
        "lameduck exited with {}",
        exit.status
    );
    Ok((all, metrics))
}

/// The load generator's HTTP/2 speed: loadgen alone (A) and h2load (B)
/// alternating against the bare hyper server speaking h2c, each sending
/// `h2_requests` requests as fast as it can on the same connections and
/// streams, after one unrecorded run each of a tenth of that. A run that
/// taught nothing is recorded as such, and makes the figure unknown.
pub fn h2_speed(plan: &Plan, log: &mut dyn FnMut(&str)) -> anyhow::Result<H2Speed> {
    let server = plan.start_baseline_h2c()?;
    let addr = server.listen;
    let warmup = (plan.h2_requests / 10).max(1);
    let _ = plan.loadgen_h2(addr, warmup);
    let _ = plan.h2load(addr, warmup);
    let mut speed = H2Speed {
        conns: plan.h2_conns,
        streams: plan.h2_streams,
        requests: plan.h2_requests,
        ..H2Speed::default()
    };
    for i in 1..=plan.pairs {
        let a = plan.loadgen_h2(addr, plan.h2_requests);
        let b = plan.h2load(addr, plan.h2_requests);
        match (a, b) {
            (Ok(loadgen), Ok(h2load)) => {
                log(&format!(
                    "  pair {i}: loadgen {loadgen:.0} req/s, h2load {h2load:.0} req/s, ratio {:.3}",
                    loadgen / h2load
                ));
                speed.pairs.push(SpeedPair { loadgen, h2load });
            }
            (a, b) => {
                for error in [a.err(), b.err()].into_iter().flatten() {
                    let line = format!("pair {i}: {error:#}");
                    log(&format!("  {line}"));
                    speed.unknown.push(line);
                }
            }
        }
    }
    Ok(speed)
}

/// Instructions per `GET /` under callgrind, lameduck (with the throughput
/// runs' options) and the bare hyper server, over HTTP/1.1 and h2c: each
/// server runs twice per protocol, serving the smaller then the larger
/// number of requests one at a time on one connection (h2load, `-c 1 -m 1`),
/// and exits on SIGTERM. A run that fails, or gets an answer other than a
/// 2xx, makes its protocol's figures unknown.
pub fn instructions(plan: &Plan, log: &mut dyn FnMut(&str)) -> anyhow::Result<Callgrind> {
    let (small, big) = plan.callgrind_requests;
    let mut callgrind = Callgrind {
        valgrind: plan.valgrind.version(),
        small,
        big,
        costs: Vec::new(),
    };
    for protocol in Protocol::ALL {
        let mut unknown = Vec::new();
        let cost = CallgrindCost {
            protocol: protocol.name(),
            lameduck: callgrind_runs(plan, protocol, true, log, &mut unknown),
            baseline: callgrind_runs(plan, protocol, false, log, &mut unknown),
            unknown,
        };
        match (cost.lameduck(), cost.baseline(), cost.ratio()) {
            (Some(a), Some(b), Some(ratio)) => log(&format!(
                "  {}: lameduck {a:.0}, bare hyper {b:.0} instructions per request, ratio {ratio:.3}",
                protocol.name()
            )),
            _ => log(&format!("  {}: unknown", protocol.name())),
        }
        callgrind.costs.push(cost);
    }
    Ok(callgrind)
}

/// One server's smaller and larger run; a run that fails leaves its slot
/// empty and says why in `unknown`.
fn callgrind_runs(
    plan: &Plan,
    protocol: Protocol,
    lameduck: bool,
    log: &mut dyn FnMut(&str),
    unknown: &mut Vec<String>,
) -> CallgrindRuns {
    let server = if lameduck { "lameduck" } else { "bare hyper" };
    let mut run = |requests| match callgrind_run(plan, protocol, lameduck, requests) {
        Ok(ir) => {
            let name = protocol.name();
            log(&format!(
                "  {name}, {server}, {requests} requests: {ir} instructions"
            ));
            Some((requests, ir))
        }
        Err(error) => {
            let line = format!(
                "{}, {server}, {requests} requests: {error:#}",
                protocol.name()
            );
            log(&format!("  {line}"));
            unknown.push(line);
            None
        }
    };
    let (small, big) = plan.callgrind_requests;
    CallgrindRuns {
        small: run(small),
        big: run(big),
    }
}

/// One server under callgrind serving `requests`; its instruction total.
fn callgrind_run(
    plan: &Plan,
    protocol: Protocol,
    lameduck: bool,
    requests: u64,
) -> anyhow::Result<u64> {
    let server = if lameduck { "lameduck" } else { "bare-hyper" };
    let out = plan.scratch.join(format!(
        "callgrind-{server}-{}-{requests}.out",
        protocol.slug()
    ));
    let _ = std::fs::remove_file(&out);
    let server = if lameduck {
        plan.valgrind
            .start(&out, &plan.lameduck, &lameduck_args(&[]))?
    } else {
        let args: &[&str] = match protocol {
            Protocol::Http1 => &["127.0.0.1:0"],
            Protocol::H2c => &["--h2c", "127.0.0.1:0"],
        };
        plan.valgrind.start(&out, &plan.baseline, args)?
    };
    server.drive(&plan.h2load, protocol, requests)?;
    server.finish(lameduck)
}

fn requests_served(server: &Server) -> anyhow::Result<f64> {
    Ok(scrape(server)?.sum("http_server_request_duration_seconds_count"))
}

fn scrape(server: &Server) -> anyhow::Result<Metrics> {
    let response = http::get(server.admin()?, "/metrics", SOCKET_TIMEOUT)?;
    ensure!(
        response.status == 200,
        "/metrics answered {}",
        response.status
    );
    Ok(Metrics(String::from_utf8(response.body)?))
}

/// Tops the server up to `plan.metrics_after` requests with wrk, adds one
/// request of each other kind the demo answers (so that every label
/// combination it can produce has a series), then times `/metrics` against
/// `/livez` on one keep-alive admin connection.
fn metrics_render(
    plan: &Plan,
    server: &Server,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<MetricsRender> {
    let target = plan.metrics_after as f64;
    for _ in 0..10 {
        let served = requests_served(server)?;
        if served >= target {
            break;
        }
        // At a conservative 20k req/s, capped: the loop is bounded either way.
        let seconds = ((target - served) / 20_000.0).ceil().clamp(1.0, 30.0);
        log(&format!(
            "  topping up: {served:.0} requests served, running wrk for {seconds:.0} s"
        ));
        plan.wrk
            .run(server.listen, 64, Duration::from_secs_f64(seconds))?;
    }
    let mut app = Conn::connect_timeout(server.listen, SOCKET_TIMEOUT)?;
    for (method, path) in [
        ("HEAD", "/"),
        ("GET", "/nope"),
        ("POST", "/"),
        ("DELETE", "/work"),
        ("GET", "/work?ms=x"),
        ("GET", "/work?ms=0"),
    ] {
        app.call(method, path)
            .with_context(|| format!("{method} {path}"))?;
    }
    let served = requests_served(server)?;
    ensure!(
        served >= target,
        "only {served} requests served before timing /metrics"
    );
    let mut admin = Conn::connect_timeout(server.admin()?, SOCKET_TIMEOUT)?;
    let body = admin.get("/metrics")?.body;
    for _ in 0..20 {
        admin.get("/metrics")?;
        admin.get("/livez")?;
    }
    let mut metrics_us = Vec::with_capacity(plan.metrics_samples);
    let mut livez_us = Vec::with_capacity(plan.metrics_samples);
    for _ in 0..plan.metrics_samples {
        let t = Instant::now();
        let response = admin.get("/metrics")?;
        metrics_us.push(t.elapsed().as_secs_f64() * 1e6);
        ensure!(
            response.status == 200,
            "/metrics answered {}",
            response.status
        );
        let t = Instant::now();
        admin.get("/livez")?;
        livez_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let text = Metrics(String::from_utf8_lossy(&body).into_owned());
    Ok(MetricsRender {
        requests: served,
        body_bytes: body.len(),
        series: text.series_count(),
        metrics_us,
        livez_us,
    })
}

/// Opens `n` keep-alive connections to `addr`, each having had one `GET /`
/// answered, and keeps them open without reading: the kernel holds what
/// arrives, so the harness takes no CPU from the server while they sit.
fn open_idle(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Conn>> {
    // Batches stay well inside the listen backlog.
    const BATCH: usize = 200;
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let start = clients.len();
        let batch = BATCH.min(n - start);
        for _ in 0..batch {
            let mut client = Conn::connect_timeout(addr, SOCKET_TIMEOUT)
                .with_context(|| format!("connection {} of {n}", clients.len() + 1))?;
            client.send("/")?;
            clients.push(client);
        }
        for client in &mut clients[start..] {
            let response = client.recv()?;
            ensure!(response.status == 200, "GET / answered {}", response.status);
            ensure!(
                !response.says_close(),
                "the server closed a keep-alive connection"
            );
        }
    }
    Ok(clients)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn expect_graceful(exit: &Exit) -> anyhow::Result<()> {
    ensure!(
        exit.status.success(),
        "lameduck exited with {} (forced shutdown?)",
        exit.status
    );
    Ok(())
}

/// Waits (bounded) until the gauge `series` on the admin listener reaches `want`.
fn wait_for_gauge(server: &Server, series: &str, want: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + process::PATIENCE;
    loop {
        let value = scrape(server)?.value(series).unwrap_or(0.0);
        if value >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{series} stayed at {value}, wanted {want}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Shutdown latencies, and lameduck's memory while idle and with the idle
/// connections open: one scenario after the other.
pub fn shutdown_and_memory(
    plan: &Plan,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<(Shutdown, Memory)> {
    let mut shutdown = Shutdown::default();
    let mut memory = Memory::default();
    idle_shutdown(plan, &mut shutdown, &mut memory, log)?;
    idle_connections_shutdown(plan, &mut shutdown, &mut memory, log)?;
    busy_connections_shutdown(plan, &mut shutdown, log)?;
    in_flight_shutdown(plan, &mut shutdown, log)?;
    close_only_shutdown(plan, &mut shutdown, &mut memory, log)?;
    graceful_hyper_shutdown(plan, &mut shutdown, log)?;
    baseline_memory(plan, &mut memory)?;
    Ok((shutdown, memory))
}

/// Idle: nothing connected (one request answered beforehand, its connection
/// closed), so memory is measured in the same state.
fn idle_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    memory: &mut Memory,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for _ in 0..plan.repeats {
        let mut server = plan.start_lameduck(&[])?;
        http::get(server.listen, "/", SOCKET_TIMEOUT)?;
        thread::sleep(Duration::from_millis(200));
        memory
            .lameduck_idle
            .push(process::rss_bytes(&server)? as f64);
        let exit = server.terminate()?;
        expect_graceful(&exit)?;
        shutdown.idle_ms.push(millis(exit.after_signal));
    }
    log(&format!("  idle: {:?} ms", rounded(&shutdown.idle_ms)));
    Ok(())
}

/// Idle keep-alive connections. With the default --idle-grace (250ms) a
/// connection idle for longer than the grace is closed as soon as Closing
/// starts; the harness lets them sit first, as idle pooled connections do.
/// The --idle-grace 0s runs are for comparison. The idle timeout (65 minutes
/// by default) closes none of them while the last are still being opened.
fn idle_connections_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    memory: &mut Memory,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for (grace, samples) in [
        (None, &mut shutdown.idle_conns_ms),
        (Some("0s"), &mut shutdown.idle_conns_zero_grace_ms),
    ] {
        for _ in 0..plan.heavy_repeats {
            let mut extra = vec![];
            if let Some(grace) = grace {
                extra.extend(["--idle-grace", grace]);
            }
            let mut server = plan.start_lameduck(&extra)?;
            let clients = open_idle(server.listen, plan.idle_connections)?;
            wait_for_gauge(
                &server,
                "http_server_open_connections",
                plan.idle_connections as f64,
            )?;
            thread::sleep(IDLE_SIT);
            if grace.is_none() {
                memory
                    .lameduck_conns
                    .push(process::rss_bytes(&server)? as f64);
            }
            let exit = server.terminate()?;
            expect_graceful(&exit)?;
            samples.push(millis(exit.after_signal));
            drop(clients);
        }
    }
    log(&format!(
        "  {} idle connections: {:?} ms (idle grace 0s: {:?} ms)",
        plan.idle_connections,
        rounded(&shutdown.idle_conns_ms),
        rounded(&shutdown.idle_conns_zero_grace_ms)
    ));
    Ok(())
}

/// Busy keep-alive connections: wrk keeps every one of them busy; each gets
/// its current response with `Connection: close`.
fn busy_connections_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for _ in 0..plan.heavy_repeats {
        let mut server = plan.start_lameduck(&[])?;
        let mut load = plan.wrk.spawn(
            server.listen,
            plan.busy_connections,
            Duration::from_secs(30),
        )?;
        let ready = wait_for_gauge(
            &server,
            "http_server_open_connections",
            f64::from(plan.busy_connections),
        );
        let result = ready.and_then(|()| {
            thread::sleep(Duration::from_millis(500));
            Ok(server.terminate()?)
        });
        let _ = load.kill();
        let _ = load.wait();
        let exit = result?;
        expect_graceful(&exit)?;
        shutdown.busy_conns_ms.push(millis(exit.after_signal));
        if let Some(completed) = server
            .logs()
            .message("shutdown finished")
            .and_then(|e| e["completed"].as_u64())
        {
            shutdown.busy_completed.push(completed);
        }
    }
    log(&format!(
        "  {} busy connections: {:?} ms",
        plan.busy_connections,
        rounded(&shutdown.busy_conns_ms)
    ));
    Ok(())
}

/// Requests in flight at the signal: exit time minus the last response.
fn in_flight_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for _ in 0..plan.repeats {
        let (after_last, total) = in_flight(plan)?;
        shutdown.in_flight_after_last_ms.push(after_last);
        shutdown.in_flight_total_ms.push(total);
    }
    log(&format!(
        "  {} in flight, exit after last response: {:?} ms",
        plan.in_flight,
        rounded(&shutdown.in_flight_after_last_ms)
    ));
    Ok(())
}

/// The floor: a tokio server that only holds the sockets and closes them.
fn close_only_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    memory: &mut Memory,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for _ in 0..plan.heavy_repeats {
        let (rss, ms) = baseline_idle_shutdown(plan, &plan.close_only)?;
        memory.close_only_conns.push(rss);
        shutdown.close_only_ms.push(ms);
    }
    log(&format!(
        "  close-only baseline, {} idle connections: {:?} ms",
        plan.idle_connections,
        rounded(&shutdown.close_only_ms)
    ));
    Ok(())
}

/// The usual graceful shutdown of a hyper server, same connections.
fn graceful_hyper_shutdown(
    plan: &Plan,
    shutdown: &mut Shutdown,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    for _ in 0..plan.heavy_repeats {
        let (_, ms) = baseline_idle_shutdown(plan, &plan.graceful_hyper)?;
        shutdown.graceful_hyper_ms.push(ms);
    }
    log(&format!(
        "  hyper-util graceful shutdown, {} idle connections: {:?} ms",
        plan.idle_connections,
        rounded(&shutdown.graceful_hyper_ms)
    ));
    Ok(())
}

/// The baseline's memory in the same two states as lameduck's.
fn baseline_memory(plan: &Plan, memory: &mut Memory) -> anyhow::Result<()> {
    for _ in 0..plan.heavy_repeats {
        let server = plan.start_baseline()?;
        http::get(server.listen, "/", SOCKET_TIMEOUT)?;
        thread::sleep(Duration::from_millis(200));
        memory
            .baseline_idle
            .push(process::rss_bytes(&server)? as f64);
        let clients = open_idle(server.listen, plan.idle_connections)?;
        thread::sleep(IDLE_SIT);
        memory
            .baseline_conns
            .push(process::rss_bytes(&server)? as f64);
        drop(server);
        drop(clients);
    }
    Ok(())
}

/// One shutdown of the baseline server `binary` holding the idle
/// connections: its RSS while it holds them, then SIGTERM to exit in ms.
fn baseline_idle_shutdown(plan: &Plan, binary: &Path) -> anyhow::Result<(f64, f64)> {
    let mut server = process::start(binary, &[])?;
    let clients = open_idle(server.listen, plan.idle_connections)?;
    thread::sleep(IDLE_SIT);
    let rss = process::rss_bytes(&server)? as f64;
    let exit = server.terminate()?;
    ensure!(
        exit.status.success(),
        "{} exited with {}",
        binary.display(),
        exit.status
    );
    drop(clients);
    Ok((rss, millis(exit.after_signal)))
}

/// One in-flight run: returns (exit − last response, exit − signal) in ms.
fn in_flight(plan: &Plan) -> anyhow::Result<(f64, f64)> {
    let mut server = plan.start_lameduck(&[])?;
    let mut clients = Vec::with_capacity(plan.in_flight);
    for i in 0..plan.in_flight {
        let mut client = Conn::connect_timeout(server.listen, SOCKET_TIMEOUT)?;
        // Staggered, so that the responses end over 200 ms, not all at once.
        client.send(&format!("/work?ms={}", 300 + 2 * i))?;
        clients.push(client);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            thread::spawn(move || {
                let response = client.recv();
                (Instant::now(), response)
            })
        })
        .collect();
    wait_for_gauge(
        &server,
        "http_server_active_requests",
        plan.in_flight as f64,
    )?;
    let exit = server.terminate()?;
    expect_graceful(&exit)?;
    let mut last = None;
    for reader in readers {
        let (at, response) = reader.join().expect("reader thread");
        let response = response.context("an in-flight request failed")?;
        ensure!(response.status == 200, "/work answered {}", response.status);
        ensure!(
            response.says_close(),
            "a response during shutdown kept its connection"
        );
        last = last.max(Some(at));
    }
    let last = last.context("no requests")?;
    let after_last = if exit.at >= last {
        millis(exit.at - last)
    } else {
        // The reaping was seen before the reader thread woke: the exit
        // followed the response by less than the harness can resolve.
        -millis(last - exit.at)
    };
    Ok((after_last, millis(exit.after_signal)))
}

fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|v| (v * 100.0).round() / 100.0).collect()
}
