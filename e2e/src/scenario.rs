//! The scenario both backends play: the load, the number of rollouts, and
//! how much load must have met each terminating replica.

use std::time::Duration;

use clap::Args;
use loadgen::{Config, MsRange};

use crate::verdict::Bar;

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
    /// Share of requests sent on a fresh connection each.
    #[arg(long, default_value_t = 0.25)]
    pub fresh_fraction: f64,
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
    /// (with a bound, in case nobody stops it).
    pub fn load(&self, target: &str) -> Config {
        Config {
            rate: self.rate,
            duration: Some(Duration::from_secs(900)),
            keepalive_conns: self.keepalive_conns,
            fresh_fraction: self.fresh_fraction,
            slow_fraction: self.slow_fraction,
            slow_ms: self.slow_ms,
            ..Config::new(target)
        }
    }

    /// The same settings as `loadgen` flags, for the in-cluster Job.
    pub fn load_args(&self, target: &str, control: &str) -> Vec<String> {
        let c = self.load(target);
        vec![
            format!("--target={target}"),
            format!("--rate={}", c.rate),
            "--duration=900s".to_owned(),
            format!("--keepalive-conns={}", c.keepalive_conns),
            format!("--fresh-fraction={}", c.fresh_fraction),
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
        vec![
            (
                "load".to_owned(),
                format!(
                    "{}/s, {} pooled connections + {:.0} % fresh, {:.0} % slow ({}-{} ms)",
                    self.rate,
                    self.keepalive_conns,
                    self.fresh_fraction * 100.0,
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
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scenario: Scenario,
    }

    #[test]
    fn defaults_make_a_valid_load_and_job_flags_round_trip() {
        let s = Cli::parse_from(["e2e"]).scenario;
        let config = s.load("127.0.0.1:80");
        config.validate().unwrap();
        assert_eq!(config.rate, 2000.0);
        let args = s.load_args("lameduck:80", "0.0.0.0:9090");
        assert!(args.contains(&"--slow-ms=100-800".to_owned()), "{args:?}");
        assert!(args.contains(&"--rate=2000".to_owned()), "{args:?}");
    }
}
