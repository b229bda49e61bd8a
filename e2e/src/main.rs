//! The rollout suite: rolls a Deployment of lameduck under load (HTTP/1.1 on
//! pooled keep-alive connections and on a fresh connection each, and HTTP/2
//! streams on pooled connections) and counts every failed request, per
//! protocol. Two backends play the same scenario and apply the
//! same assertions: `cluster` (a real cluster: kind, the local one of
//! `scripts/just cluster-up`, or any other) and `local` (no cluster: real
//! processes, a kube-proxy-like Service proxy, a real Prometheus).
//!
//! Exit codes: 0 when the run showed what it was expected to show (no
//! failure on any protocol, or failures, HTTP/2 ones among them, for a
//! negative control), 1 when not, 2 for bad flags.

// A binary crate: `pub` marks what the modules share with each other.
#![allow(unreachable_pub)]

mod clock;
#[cfg(feature = "cluster")]
mod cluster;
mod driver;
mod http;
mod local;
mod progress;
mod promql;
mod recorded;
mod report;
mod scenario;
mod timeline;
mod verdict;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "e2e",
    about = "Roll lameduck under load and count every failed request"
)]
struct Cli {
    #[command(subcommand)]
    backend: Backend,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once, at start
enum Backend {
    /// No cluster: replicas are local processes behind a loopback Service proxy.
    Local(local::LocalArgs),
    /// Any cluster reached through a kubeconfig context (kind, the local
    /// cluster, your own): the chart installed with Helm, load from a Job.
    #[cfg(feature = "cluster")]
    Cluster(cluster::ClusterArgs),
    /// Not in this build: rebuild with `--features cluster`.
    #[cfg(not(feature = "cluster"))]
    Cluster {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (out, record) = match cli.backend {
        Backend::Local(args) => {
            let out = args.out.clone();
            (out, runtime.block_on(local::run(args)))
        }
        #[cfg(feature = "cluster")]
        Backend::Cluster(args) => {
            let out = args.out.clone();
            (out, runtime.block_on(cluster::run(args)))
        }
        #[cfg(not(feature = "cluster"))]
        Backend::Cluster { .. } => {
            eprintln!(
                "error: this e2e binary was built without the cluster backend; build it with `cargo build -p e2e --features cluster`"
            );
            return ExitCode::from(2);
        }
    };
    let record = match record {
        Ok(record) => record,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report::summary(&record));
    match report::write(&record, &out) {
        Ok((json, svg)) => println!("  wrote {} and {}", json.display(), svg.display()),
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    if record.verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
