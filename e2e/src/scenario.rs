//! The scenario both backends play: the load (its rate, and its mix of
//! HTTP/1.1 keep-alive, fresh HTTP/1.1 connections and HTTP/2), the number of
//! rollouts, and how much load must have met each terminating replica.

use std::time::Duration;

use clap::Args;
use loadgen::{Bursts, Config, MsRange, PeriodRange};

use crate::verdict::Bar;

/// The load runs until it is stopped; this bounds it in case nobody does.
const LOAD_BOUND: Duration = Duration::from_secs(900);

/// The load and the rollouts, as flags of every run.
#[derive(Debug, Clone, Args)]
pub struct Scenario {
    /// Rolling restarts of the Deployment, one after the other.
    #[arg(long, default_value_t = 2)]
    pub rollouts: u32,
    /// Requests per second, started on schedule whatever the responses do.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Pooled keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub keepalive_conns: usize,
    /// Share of requests sent over HTTP/1.1 on a fresh connection each. What
    /// this and --h2-fraction leave goes over the keep-alive pool.
    #[arg(long, default_value_t = 0.25)]
    pub fresh_fraction: f64,
    /// Share of requests sent over HTTP/2 (h2c), as streams on a few pooled
    /// connections.
    #[arg(long, default_value_t = 0.25)]
    pub h2_fraction: f64,
    /// Pooled HTTP/2 connections, like a client's gRPC channels: long-lived,
    /// pinned to one replica until it sends GOAWAY.
    #[arg(long, default_value_t = 4)]
    pub h2_conns: usize,
    /// Concurrent streams per HTTP/2 connection, at most.
    #[arg(long, default_value_t = 8)]
    pub h2_streams: usize,
    /// Long-lived Server-Sent Events clients (`GET /events`), reconnecting
    /// whenever their server ends the stream.
    #[arg(long, default_value_t = 8)]
    pub sse_clients: usize,
    /// Long-lived WebSocket echo clients (`GET /ws`), one message each per
    /// --stream-interval.
    #[arg(long, default_value_t = 8)]
    pub ws_clients: usize,
    /// The SSE event interval and the WebSocket message interval.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub stream_interval: Duration,
    /// Share of requests that are slow `GET /work?ms=…`.
    #[arg(long, default_value_t = 0.05)]
    pub slow_fraction: f64,
    /// Slow requests take between these many milliseconds (`MIN-MAX`).
    #[arg(long, default_value = "100-800")]
    pub slow_ms: MsRange,
    /// Share of requests that are `POST /` with a body the server echoes:
    /// no proxy retries one, so a failure it hid from a `GET` shows here.
    #[arg(long, default_value_t = 0.2)]
    pub post_fraction: f64,
    /// Bursts instead of a rate (the steady-state shape, with --rollouts 0):
    /// this many bursts of --burst-size requests started at once, the gap
    /// between bursts swept by --burst-period.
    #[arg(long, requires_all = ["burst_size", "burst_period"])]
    pub bursts: Option<u64>,
    /// Requests per burst.
    #[arg(long, requires = "bursts")]
    pub burst_size: Option<usize>,
    /// The gap between bursts, from the first to the last, e.g. 235ms..265ms.
    #[arg(long, requires = "bursts", value_name = "FROM..TO")]
    pub burst_period: Option<PeriodRange>,
    /// Load before the first rollout.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Share of --rate the load must have kept up while each old replica
    /// terminated, so that an idle load cannot pass.
    #[arg(long, default_value_t = 0.5)]
    pub min_load_fraction: f64,
}

impl Scenario {
    /// The load generator's settings against `target`; it runs until stopped
    /// (with a bound, in case nobody stops it). Both backends start it from
    /// these: the local one in-process, the cluster one through
    /// [`Scenario::load_args`].
    pub fn load(&self, target: &str) -> Config {
        let bursts = self.bursts();
        Config {
            rate: self.rate,
            // A burst schedule ends by itself.
            duration: bursts.is_none().then_some(LOAD_BOUND),
            bursts,
            keepalive_conns: self.keepalive_conns,
            fresh_fraction: self.fresh_fraction,
            h2_fraction: self.h2_fraction,
            h2_conns: self.h2_conns,
            h2_streams: self.h2_streams,
            slow_fraction: self.slow_fraction,
            slow_ms: self.slow_ms,
            post_fraction: self.post_fraction,
            sse_clients: self.sse_clients,
            ws_clients: self.ws_clients,
            stream_interval: self.stream_interval,
            ..Config::new(target)
        }
    }

    /// The burst schedule, when the load is one.
    pub fn bursts(&self) -> Option<Bursts> {
        let (count, size, period) = (self.bursts?, self.burst_size?, self.burst_period?);
        Some(Bursts {
            count,
            size,
            period_from: period.from,
            period_to: period.to,
        })
    }

    /// The same settings as `loadgen` flags, for the in-cluster Job,
    /// generated from [`Scenario::load`], plus the Job's control endpoint,
    /// progress lines and the report on stderr (one stream keeps a long
    /// report whole in a container log; see `loadgen --report-on-stderr`).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))] // for the cluster Job
    pub fn load_args(&self, target: &str, control: &str) -> Vec<String> {
        let mut args = self.load(target).to_args();
        args.push(format!("--control-listen={control}"));
        args.push("--progress".to_owned());
        args.push("--report-on-stderr".to_owned());
        args
    }

    /// The thresholds; `direct` when the load reaches the replicas through
    /// kube-proxy, not through a proxy that fences terminating endpoints.
    pub fn bar(&self, direct: bool) -> Bar {
        Bar {
            min_rate_while_terminating: self.rate * self.min_load_fraction,
            answers_after_sigterm: direct,
        }
    }

    /// Settings for the summary.
    pub fn settings(&self) -> Vec<(String, String)> {
        let keepalive = self.load("-").keepalive_fraction();
        let schedule = match self.bursts() {
            Some(b) => format!(
                "{} bursts of {} requests at once, {:?} to {:?} apart",
                b.count, b.size, b.period_from, b.period_to
            ),
            None => format!("{}/s", self.rate),
        };
        vec![
            (
                "load".to_owned(),
                format!(
                    "{schedule}: {:.0} % HTTP/1.1 keep-alive ({} pooled connections), {:.0} % HTTP/1.1 on a fresh connection each, {:.0} % HTTP/2 ({} connections x {} streams); {:.0} % slow ({}-{} ms), {:.0} % POST",
                    keepalive * 100.0,
                    self.keepalive_conns,
                    self.fresh_fraction * 100.0,
                    self.h2_fraction * 100.0,
                    self.h2_conns,
                    self.h2_streams,
                    self.slow_fraction * 100.0,
                    self.slow_ms.min,
                    self.slow_ms.max,
                    self.post_fraction * 100.0
                ),
            ),
            (
                "long-lived clients".to_owned(),
                format!(
                    "{} SSE, {} WebSocket (an event or a message every {})",
                    self.sse_clients,
                    self.ws_clients,
                    humantime::format_duration(self.stream_interval)
                ),
            ),
            ("rolling restarts".to_owned(), self.rollouts.to_string()),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scenario: Scenario,
    }

    fn defaults() -> Scenario {
        Cli::parse_from(["e2e"]).scenario
    }

    #[test]
    fn defaults_make_a_valid_load_and_job_flags_round_trip() {
        let s = defaults();
        let config = s.load("127.0.0.1:80");
        config.validate().unwrap();
        assert_eq!(config.rate, 2000.0);
        assert_eq!((config.sse_clients, config.ws_clients), (8, 8));
        let args = s.load_args("lameduck:80", "0.0.0.0:9090");
        assert!(args.contains(&"--slow-ms=100-800".to_owned()), "{args:?}");
        assert!(args.contains(&"--rate=2000".to_owned()), "{args:?}");
        assert!(args.contains(&"--duration=900000ms".to_owned()), "{args:?}");
    }

    #[test]
    fn the_default_mix_is_half_keepalive_a_quarter_fresh_a_quarter_http2() {
        let s = defaults();
        let config = s.load("127.0.0.1:80");
        assert_eq!(config.keepalive_fraction(), 0.5);
        assert_eq!(config.fresh_fraction, 0.25);
        assert_eq!(config.h2_fraction, 0.25);
        assert_eq!((config.h2_conns, config.h2_streams), (4, 8));
        assert_flags(
            &s.load_args("lameduck:80", "0.0.0.0:9090"),
            DEFAULT_MIX_FLAGS,
        );
        let parsed = Cli::parse_from([
            "e2e",
            "--fresh-fraction=0.1",
            "--h2-fraction=0.6",
            "--h2-conns=2",
            "--h2-streams=16",
        ])
        .scenario;
        assert_flags(
            &parsed.load_args("lameduck:80", "0.0.0.0:9090"),
            &[
                "--fresh-fraction=0.1",
                "--h2-fraction=0.6",
                "--h2-conns=2",
                "--h2-streams=16",
            ],
        );
    }

    /// The protocol mix's flags for the default scenario.
    pub(crate) const DEFAULT_MIX_FLAGS: &[&str] = &[
        "--fresh-fraction=0.25",
        "--h2-fraction=0.25",
        "--h2-conns=4",
        "--h2-streams=8",
    ];

    /// Asserts that every flag of `flags` is among `args`.
    pub(crate) fn assert_flags(args: &[String], flags: &[&str]) {
        for flag in flags {
            assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
        }
    }

    /// The Job runs the load the local backend runs in-process: its flags
    /// are the configuration's own (loadgen's tests parse them back), plus
    /// the Job's control endpoint, progress lines and report on stderr.
    #[test]
    fn job_flags_are_the_load_s_own() {
        let s = Cli::parse_from(["e2e", "--h2-conns=3", "--sse-clients=2"]).scenario;
        let args = s.load_args("lameduck:80", "0.0.0.0:9090");
        let own = s.load("lameduck:80").to_args();
        assert_eq!(args[..own.len()], own[..]);
        assert_eq!(
            args[own.len()..],
            [
                "--control-listen=0.0.0.0:9090",
                "--progress",
                "--report-on-stderr"
            ]
        );
        assert_flags(
            &args,
            &["--h2-conns=3", "--sse-clients=2", "--ws-clients=8"],
        );
    }

    /// The steady-state shape reaches the Job as the load generator's own
    /// burst flags, without a duration.
    #[test]
    fn a_burst_schedule_reaches_the_job() {
        let s = Cli::parse_from([
            "e2e",
            "--rollouts=0",
            "--bursts=120",
            "--burst-size=100",
            "--burst-period=235ms..265ms",
            "--post-fraction=1",
            "--slow-fraction=0",
            "--keepalive-conns=100",
        ])
        .scenario;
        let config = s.load("traefik:80");
        config.validate().unwrap();
        assert_eq!(config.duration, None);
        let b = config.bursts.unwrap();
        assert_eq!((b.count, b.size), (120, 100));
        assert_eq!(b.period_to, Duration::from_millis(265));
        let args = s.load_args("traefik:80", "0.0.0.0:9090");
        assert_flags(
            &args,
            &["--bursts=120", "--burst-size=100", "--post-fraction=1"],
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--duration")),
            "{args:?}"
        );
    }
}
