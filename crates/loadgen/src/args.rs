//! A configuration as the binary's command line, for whoever starts
//! `loadgen` elsewhere (a Kubernetes Job, a benchmark): generated from
//! [`Config`], so a renamed or added setting cannot be forgotten there. The
//! binary's tests parse it back.

use std::time::Duration;

use crate::config::Config;

impl Config {
    /// Every setting as a `--flag=value`, whatever the binary's defaults;
    /// `loadgen` parses them back to this configuration exactly.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--target={}", self.target),
            format!("--rate={}", self.rate),
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
        ];
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
    }
}
