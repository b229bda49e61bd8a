//! A configuration as the binary's command line, for whoever starts
//! `loadgen` elsewhere (a Kubernetes Job, a benchmark): generated from
//! [`Config`], so a renamed or added setting cannot be forgotten there. The
//! binary's tests parse it back.

use std::time::Duration;

use crate::config::Config;

impl Config {
    /// Every setting as a `--flag=value`, whatever the binary's defaults;
    /// `loadgen` parses them back to this configuration exactly. With
    /// `bursts`, `rate` is not used and not written (the binary refuses
    /// `--rate` with `--bursts`): it parses back as the default rate.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![format!("--target={}", self.target)];
        match &self.bursts {
            None => args.push(format!("--rate={}", self.rate)),
            Some(b) => args.extend([
                format!("--bursts={}", b.count),
                format!("--burst-size={}", b.size),
                format!(
                    "--burst-period={}..{}",
                    duration(b.period_from),
                    duration(b.period_to)
                ),
            ]),
        }
        args.extend([
            format!("--max-in-flight={}", self.max_in_flight),
            format!("--timeout={}", duration(self.timeout)),
            format!("--slow-fraction={}", self.slow_fraction),
            format!("--slow-ms={}", self.slow_ms),
            format!("--post-fraction={}", self.post_fraction),
            format!("--keepalive-conns={}", self.keepalive_conns),
            format!("--fresh-fraction={}", self.fresh_fraction),
            format!("--h2-fraction={}", self.h2_fraction),
            format!("--h2-conns={}", self.h2_conns),
            format!("--h2-streams={}", self.h2_streams),
            format!("--sse-clients={}", self.sse_clients),
            format!("--ws-clients={}", self.ws_clients),
            format!("--stream-interval={}", duration(self.stream_interval)),
            format!("--late-after={}", duration(self.late_after)),
            format!("--drain-timeout={}", duration(self.drain_timeout)),
            format!("--error-samples={}", self.error_samples),
            format!("--seed={}", self.seed),
        ]);
        if let Some(d) = self.duration {
            args.push(format!("--duration={}", duration(d)));
        }
        if let Some(n) = self.max_requests {
            args.push(format!("--max-requests={n}"));
        }
        args
    }
}

/// A duration the way the command line reads it, exactly: whole
/// milliseconds when it is some, nanoseconds otherwise.
fn duration(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact() {
        assert_eq!(duration(Duration::from_secs(900)), "900000ms");
        assert_eq!(duration(Duration::from_micros(1500)), "1500000ns");
        assert_eq!(duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn optional_bounds_only_when_set() {
        let c = Config::new("h:1");
        let args = c.to_args();
        assert!(!args.iter().any(|a| a.starts_with("--duration")));
        assert!(!args.iter().any(|a| a.starts_with("--max-requests")));
        assert!(!args.iter().any(|a| a.starts_with("--burst")));
        assert!(args.contains(&"--rate=100".to_owned()));
    }

    #[test]
    fn bursts_instead_of_the_rate() {
        let c = Config {
            bursts: Some(crate::Bursts {
                count: 120,
                size: 100,
                period_from: Duration::from_millis(940),
                period_to: Duration::from_micros(1_060_500),
            }),
            ..Config::new("h:1")
        };
        let args = c.to_args();
        for want in [
            "--bursts=120",
            "--burst-size=100",
            "--burst-period=940ms..1060500000ns",
        ] {
            assert!(args.contains(&want.to_owned()), "{want}: {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--rate")), "{args:?}");
    }
}
