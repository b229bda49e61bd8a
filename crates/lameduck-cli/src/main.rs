//! The `lameduck` binary: the demo application behind lameduck's shutdown.
//!
//! Exit codes: 0 after a graceful shutdown (and for `sleep`, a passing
//! `probe`, `--help`); 1 after a forced shutdown, a failed `probe`, or a
//! runtime error such as an address in use; 2 for bad command-line input.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use lameduck::{Listeners, Server, signals};
use lameduck_cli::cli::{Cli, Command, EXIT_USAGE, ServeArgs};
use lameduck_cli::demo::Demo;
use lameduck_cli::{probe, telemetry, termination};
use tokio::net::TcpListener;

/// jemalloc returns the buffers an idle connection let go of to the kernel;
/// the C allocator keeps them, between allocations that live on.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match Cli::parse_or_exit().into_command() {
        Command::Serve(args) => serve(&args),
        Command::Sleep { duration } => {
            std::thread::sleep(duration);
            ExitCode::SUCCESS
        }
        Command::Probe { url, timeout } => probe(&url, timeout),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    if let Err(error) = telemetry::init(args.log_format) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Before binding: a signal during startup then starts a shutdown instead of killing us.
    let (shutdown, force) =
        signals::shutdown_signals().context("cannot install signal handlers")?;
    let listeners = Listeners {
        app: bind(args.listen, "--listen").await?,
        admin: bind(args.admin_listen, "--admin-listen").await?,
    };
    let server = Server::new(args.config()).force_on(force);
    let demo = Demo::from_env()
        .with_drain(server.drain())
        .with_stream_drain(args.stream_drain);
    tracing::info!(
        replica = %String::from_utf8_lossy(demo.name()),
        drain_delay = %humantime::format_duration(args.drain_delay),
        shutdown_timeout = %humantime::format_duration(args.shutdown_timeout),
        idle_grace = %humantime::format_duration(args.idle_grace),
        header_read_timeout = %humantime::format_duration(args.header_read_timeout),
        idle_timeout = %humantime::format_duration(args.idle_timeout),
        final_scrape_timeout = %humantime::format_duration(args.final_scrape_timeout),
        stream_drain = args.stream_drain,
        "starting"
    );
    let report = server.serve(listeners, demo, shutdown).await?;
    if let Some(path) = &args.termination_log
        && let Err(error) = termination::write(path, &report)
    {
        // The summary is a convenience; the exit code says what matters.
        tracing::warn!(%error, path = %path.display(), "cannot write the termination log");
    }
    Ok(if report.is_forced() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .map(|runtime| runtime.block_on(probe::probe(url, timeout)));
    match result {
        Ok(Ok(status)) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            // The whole chain on one line: hyper's top error ("client error
            // (Connect)") alone does not say what went wrong.
            eprintln!("probe {url}: {:#}", anyhow::Error::from(error));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("probe {url}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
