//! The scenario both backends play: the load (its rate, and its mix of
//! HTTP/1.1 keep-alive, fresh HTTP/1.1 connections and HTTP/2), the number of
//! rollouts, and how much load must have met each terminating replica.

use std::time::Duration;

use clap::Args;
use loadgen::{Config, MsRange};

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
    /// Share of requests that are slow `GET /work?ms=…`.
    #[arg(long, default_value_t = 0.05)]
    pub slow_fraction: f64,
    /// Slow requests take between these many milliseconds (`MIN-MAX`).
    #[arg(long, default_value = "100-800")]
    pub slow_ms: MsRange,
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
        Config {
            rate: self.rate,
            duration: Some(LOAD_BOUND),
            keepalive_conns: self.keepalive_conns,
            fresh_fraction: self.fresh_fraction,
            h2_fraction: self.h2_fraction,
            h2_conns: self.h2_conns,
            h2_streams: self.h2_streams,
            slow_fraction: self.slow_fraction,
            slow_ms: self.slow_ms,
            ..Config::new(target)
        }
    }

    /// The same settings as `loadgen` flags, for the in-cluster Job: every
    /// setting of [`Scenario::load`], whatever loadgen's own defaults are.
    pub fn load_args(&self, target: &str, control: &str) -> Vec<String> {
        let c = self.load(target);
        vec![
            format!("--target={target}"),
            format!("--rate={}", c.rate),
            format!("--duration={}", humantime::format_duration(LOAD_BOUND)),
            format!("--keepalive-conns={}", c.keepalive_conns),
            format!("--fresh-fraction={}", c.fresh_fraction),
            format!("--h2-fraction={}", c.h2_fraction),
            format!("--h2-conns={}", c.h2_conns),
            format!("--h2-streams={}", c.h2_streams),
            format!("--slow-fraction={}", c.slow_fraction),
            format!("--slow-ms={}-{}", c.slow_ms.min, c.slow_ms.max),
            format!("--control-listen={control}"),
            "--progress".to_owned(),
        ]
    }

    pub fn bar(&self) -> Bar {
        Bar {
            min_rate_while_terminating: self.rate * self.min_load_fraction,
        }
    }

    /// Settings for the summary.
    pub fn settings(&self) -> Vec<(String, String)> {
        let keepalive = self.load("-").keepalive_fraction();
        vec![
            (
                "load".to_owned(),
                format!(
                    "{}/s: {:.0} % HTTP/1.1 keep-alive ({} pooled connections), {:.0} % HTTP/1.1 on a fresh connection each, {:.0} % HTTP/2 ({} connections x {} streams); {:.0} % slow ({}-{} ms)",
                    self.rate,
                    keepalive * 100.0,
                    self.keepalive_conns,
                    self.fresh_fraction * 100.0,
                    self.h2_fraction * 100.0,
                    self.h2_conns,
                    self.h2_streams,
                    self.slow_fraction * 100.0,
                    self.slow_ms.min,
                    self.slow_ms.max
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
        let args = s.load_args("lameduck:80", "0.0.0.0:9090");
        assert!(args.contains(&"--slow-ms=100-800".to_owned()), "{args:?}");
        assert!(args.contains(&"--rate=2000".to_owned()), "{args:?}");
        assert!(args.contains(&"--duration=15m".to_owned()), "{args:?}");
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

    /// The Job must run the load the local backend runs in-process: every
    /// setting in which the scenario's `Config` differs from loadgen's
    /// defaults is passed as a flag.
    #[test]
    fn job_flags_carry_every_setting_of_the_load() {
        let s = Cli::parse_from(["e2e", "--h2-conns=3", "--h2-streams=5"]).scenario;
        let load = serde_json::to_value(s.load("lameduck:80")).unwrap();
        let defaults = serde_json::to_value(Config::new("lameduck:80")).unwrap();
        let args = s.load_args("lameduck:80", "0.0.0.0:9090");
        for (field, value) in load.as_object().unwrap() {
            if defaults[field] == *value {
                continue;
            }
            // `duration_ms` is `--duration`, `slow_ms` is `--slow-ms`.
            let flags = [field.as_str(), field.trim_end_matches("_ms")]
                .map(|name| format!("--{}=", name.replace('_', "-")));
            assert!(
                args.iter()
                    .any(|a| flags.iter().any(|flag| a.starts_with(flag))),
                "{field} = {value} is not passed to the Job: {args:?}"
            );
        }
    }
}
