//! `lameduck-bench`: runs every benchmark in one go, writes BENCHMARKS.md and
//! prints each figure next to its goal. With `--check` it exits 1 when a
//! figure misses its goal by more than the spread it measured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lameduck_bench::callgrind::Valgrind;
use lameduck_bench::h2load::H2load;
use lameduck_bench::loadgen::Loadgen;
use lameduck_bench::machine::{self, Machine};
use lameduck_bench::measure::{self, Plan};
use lameduck_bench::report;
use lameduck_bench::results::{Results, Setup};
use lameduck_bench::wrk::Wrk;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Benchmarks lameduck against a bare hyper server and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "lameduck-bench")]
struct Args {
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Exit 1 when a figure misses its goal by more than its spread.
    #[arg(long)]
    check: bool,
    /// A B pairs of runs per connection count, and of loadgen and h2load.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=100))]
    pairs: u16,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    run: u64,
    /// Seconds of unrecorded warm-up per server and connection count.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60))]
    warmup: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    wrk_threads: u32,
    /// Repetitions of the idle and in-flight shutdowns.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=100))]
    repeats: u16,
    /// Repetitions of the measurements that hold thousands of connections.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    heavy_repeats: u16,
    /// Idle keep-alive connections to hold (lameduck serves at most 10000 by default).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    idle_connections: u32,
    /// Requests lameduck serves before `/metrics` is timed.
    #[arg(long, default_value_t = 1_000_000)]
    metrics_after: u64,
    /// The lameduck binary; default: next to this one.
    #[arg(long)]
    lameduck: Option<PathBuf>,
    /// The bare hyper binary; default: next to this one.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// The load generator's binary; default: next to this one.
    #[arg(long)]
    loadgen: Option<PathBuf>,
    /// The h2load binary (nghttp2-client).
    #[arg(long, default_value = "h2load")]
    h2load: PathBuf,
    /// HTTP/2 connections of loadgen and h2load, for the load generator's speed.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    h2_conns: u32,
    /// Concurrent streams per HTTP/2 connection (bare hyper takes 200).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=200))]
    h2_streams: u32,
    /// Requests per HTTP/2 run of either.
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1_000..=10_000_000))]
    h2_requests: u64,
    /// The valgrind binary, for the instructions per request.
    #[arg(long, default_value = "valgrind")]
    valgrind: PathBuf,
    /// Requests of the smaller callgrind run of each server; the larger
    /// serves three times as many.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    callgrind_requests: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("lameduck-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first (cargo build --release -p lameduck-cli -p lameduck-bench -p loadgen)",
            path.display()
        );
    }
    Ok(path)
}

/// Raises the open-file limit for the harness and the servers it starts
/// (they inherit it): each side holds one descriptor per idle connection.
fn raise_file_limit(connections: u64) -> anyhow::Result<()> {
    let want = connections + 1024;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok(());
    }
    // Raising the hard limit works as root; otherwise stay within it.
    let hard = if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        want
    } else {
        hard
    };
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    if hard < want {
        bail!(
            "the open-file limit is {hard}, {connections} connections need {want}: raise `ulimit -Hn`"
        );
    }
    Ok(())
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    raise_file_limit(u64::from(args.idle_connections))?;
    let scratch = std::env::temp_dir().join(format!("lameduck-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = measure_all(args, &scratch, started);
    let _ = std::fs::remove_dir_all(&scratch);
    let results = result?;

    let figures = report::figures(&results);
    std::fs::write(&args.out, report::markdown(&results))
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("\n{}", report::console(&figures));
    println!("wrote {}", args.out.display());
    if let Some([one, five, _]) = results.load_after {
        println!("load average at the end: {one:.2} (1 min), {five:.2} (5 min)");
    }
    if !args.check {
        return Ok(true);
    }
    let failures = report::failures(&figures);
    for failure in &failures {
        eprintln!("bench-check: {failure}");
    }
    if failures.is_empty() {
        println!("bench-check: every figure meets its goal or misses it by less than its spread");
    }
    Ok(failures.is_empty())
}

fn measure_all(args: &Args, scratch: &Path, started: Instant) -> anyhow::Result<Results> {
    let wrk = Wrk::new(&args.wrk, scratch, args.wrk_threads)?;
    let h2load = H2load::new(&args.h2load);
    let machine = Machine::describe(wrk.version(), h2load.version());
    let plan = Plan {
        lameduck: args
            .lameduck
            .clone()
            .map_or_else(|| sibling("lameduck"), Ok)?,
        baseline: args
            .baseline
            .clone()
            .map_or_else(|| sibling("bare-hyper"), Ok)?,
        close_only: sibling("close-only")?,
        graceful_hyper: sibling("graceful-hyper")?,
        wrk,
        connections: vec![10, 256],
        pairs: usize::from(args.pairs),
        run: Duration::from_secs(args.run),
        warmup: Duration::from_secs(args.warmup),
        repeats: usize::from(args.repeats),
        heavy_repeats: usize::from(args.heavy_repeats),
        idle_connections: args.idle_connections as usize,
        busy_connections: 1000,
        in_flight: 100,
        metrics_after: args.metrics_after,
        metrics_samples: 200,
        loadgen: Loadgen::new(
            &args
                .loadgen
                .clone()
                .map_or_else(|| sibling("loadgen"), Ok)?,
        ),
        h2load,
        h2_conns: args.h2_conns,
        h2_streams: args.h2_streams,
        h2_requests: args.h2_requests,
        valgrind: Valgrind::new(&args.valgrind),
        callgrind_requests: (args.callgrind_requests, 3 * args.callgrind_requests),
        scratch: scratch.to_owned(),
    };
    let load_before = machine::load_average();
    let mut log = |line: &str| println!("{line}");
    println!(
        "lameduck-bench on {} ({} cores), load average {:?}",
        machine.cpu, machine.cores, load_before
    );
    println!("throughput (wrk, lameduck vs bare hyper, A B A B):");
    let (throughput, metrics) = measure::throughput_and_metrics(&plan, &mut log)?;
    println!("shutdown and memory:");
    let (shutdown, memory) = measure::shutdown_and_memory(&plan, &mut log)?;
    println!(
        "load generator, HTTP/2 at full speed (loadgen alone vs h2load, {} connections x {} streams, {} requests a run, A B A B):",
        plan.h2_conns, plan.h2_streams, plan.h2_requests
    );
    let h2_speed = measure::h2_speed(&plan, &mut log)?;
    println!(
        "instructions per `GET /` under callgrind ({} and {} requests, one at a time):",
        plan.callgrind_requests.0, plan.callgrind_requests.1
    );
    let callgrind = measure::instructions(&plan, &mut log)?;
    Ok(Results {
        machine,
        setup: Setup {
            run_seconds: plan.run.as_secs_f64(),
            warmup_seconds: plan.warmup.as_secs_f64(),
            wrk_threads: plan.wrk.threads,
            idle_connections: plan.idle_connections,
            busy_connections: plan.busy_connections,
            in_flight: plan.in_flight,
            metrics_after: plan.metrics_after,
        },
        load_before,
        load_after: machine::load_average(),
        seconds: started.elapsed().as_secs_f64(),
        throughput,
        shutdown,
        memory,
        metrics,
        h2_speed,
        callgrind,
    })
}
