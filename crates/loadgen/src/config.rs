//! What a load run does: target, rate or bursts, bounds, request mix and
//! connection modes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bursts::Bursts;
use crate::serde_ms;

/// Largest `ms` the server accepts on `/work`.
pub const MAX_WORK_MS: u64 = 60_000;

/// Default number of pooled HTTP/2 connections, like a few gRPC channels.
pub const DEFAULT_H2_CONNS: usize = 4;

/// Default bound on concurrent streams per HTTP/2 connection.
pub const DEFAULT_H2_STREAMS: usize = 8;

/// Most long-lived clients of one kind (each holds a socket).
pub const MAX_STREAM_CLIENTS: usize = 10_000;

/// Shortest and longest `stream_interval`: the bounds of the server's
/// `/events?interval=`.
pub const STREAM_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

/// Fraction sums within this of 1 count as 1, so that e.g. `0.7 + 0.3`
/// leaves no keep-alive share to rounding.
pub(crate) const MIX_EPSILON: f64 = 1e-9;

/// Highest request rate accepted; beyond it the schedule's arithmetic is
/// meaningless on one machine anyway.
pub const MAX_RATE: f64 = 1_000_000.0;

/// The configuration of one run. It is echoed in the report, durations as
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `host:port` of the server (a Service address in a cluster).
    pub target: String,
    /// Requests per second, started on schedule whatever the response times.
    /// Not used with `bursts`.
    pub rate: f64,
    /// Bursts instead of a rate: all requests of a burst at once, the gaps
    /// between bursts swept across a range. The run ends after the last
    /// burst's requests; `duration` and `max_requests` are then left unset.
    /// (Absent from configurations written before bursts existed: none.)
    #[serde(default)]
    pub bursts: Option<Bursts>,
    /// Stop scheduling after this long.
    #[serde(rename = "duration_ms", with = "serde_ms::opt")]
    pub duration: Option<Duration>,
    /// Stop scheduling after this many requests.
    pub max_requests: Option<u64>,
    /// Requests started or waiting for a keep-alive connection, at most.
    pub max_in_flight: usize,
    /// Whole-request timeout: connect, send, response head and body.
    #[serde(rename = "timeout_ms", with = "serde_ms::ms")]
    pub timeout: Duration,
    /// Fraction of requests that are `GET /work?ms=…` instead of `GET /`.
    pub slow_fraction: f64,
    /// Range of `ms` for slow requests.
    pub slow_ms: MsRange,
    /// Fraction of requests that are `POST /` with a body of a few hundred
    /// bytes, whose echo is checked. Slow and POST requests together are at
    /// most all of them; the rest are `GET /`. (Absent from configurations
    /// written before POSTs existed: 0.)
    #[serde(default)]
    pub post_fraction: f64,
    /// Pooled keep-alive connections (0 when the fresh and HTTP/2 fractions
    /// add up to 1).
    pub keepalive_conns: usize,
    /// Fraction of requests sent on a fresh connection of their own.
    pub fresh_fraction: f64,
    /// Fraction of requests sent over HTTP/2 (cleartext, prior knowledge).
    /// The share left by `fresh_fraction` and this goes over the keep-alive
    /// pool.
    #[serde(default)]
    pub h2_fraction: f64,
    /// Pooled HTTP/2 connections.
    #[serde(default = "default_h2_conns")]
    pub h2_conns: usize,
    /// Concurrent streams per HTTP/2 connection, at most.
    #[serde(default = "default_h2_streams")]
    pub h2_streams: usize,
    /// Long-lived Server-Sent Events clients (`GET /events`).
    #[serde(default)]
    pub sse_clients: usize,
    /// Long-lived WebSocket echo clients (`GET /ws`).
    #[serde(default)]
    pub ws_clients: usize,
    /// The SSE event interval asked of the server, and how often a
    /// WebSocket client sends a message.
    #[serde(
        rename = "stream_interval_ms",
        with = "serde_ms::ms",
        default = "default_stream_interval"
    )]
    pub stream_interval: Duration,
    /// A request that starts later than this after its slot counts as late.
    #[serde(rename = "late_after_ms", with = "serde_ms::ms")]
    pub late_after: Duration,
    /// After the last request is scheduled (or a stop), how long in-flight
    /// requests may take before they are aborted.
    #[serde(rename = "drain_timeout_ms", with = "serde_ms::ms")]
    pub drain_timeout: Duration,
    /// How many failures' error messages the report keeps verbatim.
    pub error_samples: usize,
    /// Seed of the request mix (which request is slow, which is fresh or
    /// HTTP/2).
    pub seed: u64,
}

impl Config {
    /// A configuration with defaults and no bound; set `duration` or
    /// `max_requests` (or `bursts`) before running.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            rate: 100.0,
            bursts: None,
            duration: None,
            max_requests: None,
            max_in_flight: 512,
            timeout: Duration::from_secs(10),
            slow_fraction: 0.2,
            slow_ms: MsRange { min: 50, max: 500 },
            post_fraction: 0.2,
            keepalive_conns: 16,
            fresh_fraction: 0.25,
            h2_fraction: 0.0,
            h2_conns: DEFAULT_H2_CONNS,
            h2_streams: DEFAULT_H2_STREAMS,
            sse_clients: 0,
            ws_clients: 0,
            stream_interval: default_stream_interval(),
            late_after: Duration::from_millis(20),
            drain_timeout: Duration::from_secs(15),
            error_samples: 20,
            seed: 1,
        }
    }

    /// The share of requests that go over the HTTP/1.1 keep-alive pool: what
    /// the fresh and HTTP/2 fractions leave (0 when they add up to 1).
    pub fn keepalive_fraction(&self) -> f64 {
        let rest = 1.0 - self.fresh_fraction - self.h2_fraction;
        if rest < MIX_EPSILON { 0.0 } else { rest }
    }

    /// Checks that the run is bounded and every value is in range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError(msg));
        if self.target.is_empty() {
            return bad("target must be host:port".into());
        }
        match &self.bursts {
            None => {
                if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
                    return bad(format!(
                        "rate must be in (0, {MAX_RATE}], got {}",
                        self.rate
                    ));
                }
                if self.duration.is_none() && self.max_requests.is_none() {
                    return bad(
                        "set a duration or a maximum number of requests (or both), or bursts"
                            .into(),
                    );
                }
            }
            Some(bursts) => {
                bursts.check().map_err(ConfigError)?;
                if self.duration.is_some() || self.max_requests.is_some() {
                    return bad(
                        "--bursts cannot be used with --duration or --max-requests: \
                         the run ends after the last burst"
                            .into(),
                    );
                }
            }
        }
        if self.max_requests == Some(0) || self.duration == Some(Duration::ZERO) {
            return bad("duration and max requests must be positive".into());
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            return bad(format!("max in-flight must be in 1..={MAX_IN_FLIGHT}"));
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive".into());
        }
        for (name, f) in [
            ("slow fraction", self.slow_fraction),
            ("POST fraction", self.post_fraction),
            ("fresh fraction", self.fresh_fraction),
            ("HTTP/2 fraction", self.h2_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return bad(format!("{name} must be in [0, 1], got {f}"));
            }
        }
        if self.slow_ms.min > self.slow_ms.max || self.slow_ms.max > MAX_WORK_MS {
            return bad(format!(
                "slow ms range must satisfy min <= max <= {MAX_WORK_MS}, got {}",
                self.slow_ms
            ));
        }
        if self.slow_fraction + self.post_fraction > 1.0 + MIX_EPSILON {
            return bad(format!(
                "slow fraction + POST fraction must be at most 1 (the rest is GET /), got {} + {}",
                self.slow_fraction, self.post_fraction
            ));
        }
        if self.fresh_fraction + self.h2_fraction > 1.0 + MIX_EPSILON {
            return bad(format!(
                "fresh fraction + HTTP/2 fraction must be at most 1 (the rest is keep-alive), \
                 got {} + {}",
                self.fresh_fraction, self.h2_fraction
            ));
        }
        if self.keepalive_conns == 0 && self.keepalive_fraction() > 0.0 {
            return bad(format!(
                "keep-alive requests (a share of {}) need at least one keep-alive connection \
                 (or make the fresh and HTTP/2 fractions add up to 1)",
                self.keepalive_fraction()
            ));
        }
        if self.h2_streams == 0 {
            return bad("HTTP/2 streams per connection must be at least 1".into());
        }
        if self.h2_conns == 0 && self.h2_fraction > 0.0 {
            return bad("HTTP/2 requests need at least one HTTP/2 connection".into());
        }
        if self.sse_clients > MAX_STREAM_CLIENTS || self.ws_clients > MAX_STREAM_CLIENTS {
            return bad(format!(
                "SSE and WebSocket clients must be at most {MAX_STREAM_CLIENTS} each"
            ));
        }
        if !STREAM_INTERVAL_RANGE.contains(&self.stream_interval) {
            return bad(format!(
                "stream interval must be between 10ms and 60s, got {:?}",
                self.stream_interval
            ));
        }
        if let Some(bursts) = &self.bursts {
            self.check_burst_size(bursts.size)?;
        }
        // One task per stream slot: more than the in-flight bound is useless.
        if self
            .h2_conns
            .checked_mul(self.h2_streams)
            .is_none_or(|n| n > MAX_IN_FLIGHT)
        {
            return bad(format!(
                "HTTP/2 connections x streams must be at most {MAX_IN_FLIGHT}"
            ));
        }
        Ok(())
    }

    /// A burst starts all its requests at once: the in-flight bound must let
    /// them, and each of its keep-alive requests needs a pooled connection.
    /// (Its HTTP/2 requests share the pooled connections' streams; beyond
    /// `h2_conns × h2_streams` they wait for one.)
    fn check_burst_size(&self, size: usize) -> Result<(), ConfigError> {
        if size > self.max_in_flight {
            return Err(ConfigError(format!(
                "--burst-size ({size}) must be at most --max-in-flight ({})",
                self.max_in_flight
            )));
        }
        if self.keepalive_fraction() > 0.0 && self.keepalive_conns < size {
            return Err(ConfigError(format!(
                "--keepalive-conns ({}) must be at least --burst-size ({size}) when the mix \
                 sends keep-alive requests (a share of {}): each request of a burst needs a \
                 pooled connection of its own",
                self.keepalive_conns,
                self.keepalive_fraction()
            )));
        }
        Ok(())
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Highest in-flight bound accepted (it must fit a semaphore's `u32`).
pub const MAX_IN_FLIGHT: usize = 1_000_000;

/// An inclusive range of milliseconds, written `N` or `MIN-MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsRange {
    /// Lower bound, inclusive.
    pub min: u64,
    /// Upper bound, inclusive.
    pub max: u64,
}

impl fmt::Display for MsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl FromStr for MsRange {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| ConfigError(format!("not a millisecond range (N or MIN-MAX): {s:?}")))
        };
        let range = match s.split_once('-') {
            Some((a, b)) => Self {
                min: num(a)?,
                max: num(b)?,
            },
            None => {
                let n = num(s)?;
                Self { min: n, max: n }
            }
        };
        if range.min > range.max {
            return Err(ConfigError(format!("range {s:?} has min > max")));
        }
        Ok(range)
    }
}

fn default_stream_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_h2_conns() -> usize {
    DEFAULT_H2_CONNS
}

fn default_h2_streams() -> usize {
    DEFAULT_H2_STREAMS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded() -> Config {
        Config {
            max_requests: Some(10),
            ..Config::new("127.0.0.1:1")
        }
    }

    #[test]
    fn defaults_need_a_bound() {
        assert!(Config::new("x:1").validate().is_err());
        assert_eq!(bounded().validate(), Ok(()));
        let by_time = Config {
            duration: Some(Duration::from_secs(1)),
            ..Config::new("x:1")
        };
        assert_eq!(by_time.validate(), Ok(()));
    }

    #[test]
    fn rejects_out_of_range_values() {
        let cases = [
            Config {
                rate: 0.0,
                ..bounded()
            },
            Config {
                rate: f64::NAN,
                ..bounded()
            },
            Config {
                max_in_flight: 0,
                ..bounded()
            },
            Config {
                timeout: Duration::ZERO,
                ..bounded()
            },
            Config {
                slow_fraction: 1.5,
                ..bounded()
            },
            Config {
                fresh_fraction: -0.1,
                ..bounded()
            },
            Config {
                slow_ms: MsRange { min: 5, max: 1 },
                ..bounded()
            },
            Config {
                slow_ms: MsRange {
                    min: 0,
                    max: MAX_WORK_MS + 1,
                },
                ..bounded()
            },
            Config {
                keepalive_conns: 0,
                fresh_fraction: 0.5,
                ..bounded()
            },
            Config {
                max_requests: Some(0),
                ..bounded()
            },
            Config {
                h2_fraction: 1.5,
                ..bounded()
            },
            Config {
                fresh_fraction: 0.6,
                h2_fraction: 0.6,
                ..bounded()
            },
            Config {
                post_fraction: -0.5,
                ..bounded()
            },
            Config {
                slow_fraction: 0.5,
                post_fraction: 0.6,
                ..bounded()
            },
            Config {
                h2_streams: 0,
                ..bounded()
            },
            Config {
                h2_fraction: 0.5,
                h2_conns: 0,
                ..bounded()
            },
            Config {
                keepalive_conns: 0,
                fresh_fraction: 0.25,
                h2_fraction: 0.5,
                ..bounded()
            },
            Config {
                h2_conns: usize::MAX,
                h2_streams: 2,
                ..bounded()
            },
            Config {
                target: String::new(),
                ..bounded()
            },
            Config {
                ws_clients: MAX_STREAM_CLIENTS + 1,
                ..bounded()
            },
            Config {
                stream_interval: Duration::from_millis(9),
                ..bounded()
            },
            Config {
                stream_interval: Duration::from_secs(61),
                ..bounded()
            },
        ];
        for c in cases {
            assert!(c.validate().is_err(), "accepted {c:?}");
        }
        let all_fresh = Config {
            keepalive_conns: 0,
            fresh_fraction: 1.0,
            ..bounded()
        };
        assert_eq!(all_fresh.validate(), Ok(()));
    }

    fn with_bursts(size: usize) -> Config {
        Config {
            bursts: Some(Bursts {
                count: 120,
                size,
                period_from: Duration::from_millis(940),
                period_to: Duration::from_millis(1060),
            }),
            post_fraction: 1.0,
            slow_fraction: 0.0,
            keepalive_conns: size,
            ..Config::new("x:1")
        }
    }

    #[test]
    fn bursts_bound_the_run_and_need_a_connection_per_keepalive_request() {
        assert_eq!(with_bursts(100).validate(), Ok(()));
        // The rate is not used, whatever it is.
        let no_rate = Config {
            rate: f64::NAN,
            ..with_bursts(100)
        };
        assert_eq!(no_rate.validate(), Ok(()));
        // Fresh and HTTP/2 requests need no pooled HTTP/1.1 connection, so a
        // mix without keep-alive does not ask for them.
        let fresh_and_h2 = Config {
            keepalive_conns: 0,
            fresh_fraction: 0.5,
            h2_fraction: 0.5,
            ..with_bursts(100)
        };
        assert_eq!(fresh_and_h2.validate(), Ok(()));
        let err = |c: Config| c.validate().unwrap_err().0;
        for (c, needle) in [
            (
                Config {
                    keepalive_conns: 99,
                    ..with_bursts(100)
                },
                "--keepalive-conns (99) must be at least --burst-size (100) when the mix sends \
                 keep-alive requests (a share of 0.75)",
            ),
            (
                Config {
                    max_in_flight: 50,
                    ..with_bursts(100)
                },
                "--burst-size (100) must be at most --max-in-flight (50)",
            ),
            (
                Config {
                    duration: Some(Duration::from_secs(1)),
                    ..with_bursts(1)
                },
                "--bursts cannot be used with --duration or --max-requests",
            ),
            (
                Config {
                    max_requests: Some(5),
                    ..with_bursts(1)
                },
                "--bursts cannot be used with --duration or --max-requests",
            ),
            (with_bursts(0), "--burst-size must be in 1..=10000, got 0"),
        ] {
            let msg = err(c);
            assert!(msg.contains(needle), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn the_mix_adds_up_to_one() {
        let quarters = Config {
            fresh_fraction: 0.25,
            h2_fraction: 0.25,
            ..bounded()
        };
        assert_eq!(quarters.validate(), Ok(()));
        assert_eq!(quarters.keepalive_fraction(), 0.5);
        // Fractions that add up to 1 up to rounding leave no keep-alive
        // share, so no keep-alive connection is needed.
        for (fresh, h2) in [(0.7, 0.3), (0.1, 0.9), (0.0, 1.0), (1.0, 0.0), (0.9, 0.1)] {
            let c = Config {
                keepalive_conns: 0,
                fresh_fraction: fresh,
                h2_fraction: h2,
                ..bounded()
            };
            assert_eq!(c.keepalive_fraction(), 0.0, "{fresh} + {h2}");
            assert_eq!(c.validate(), Ok(()), "{fresh} + {h2}");
        }
        // HTTP/2 connections are only needed for HTTP/2 requests.
        let no_h2 = Config {
            h2_conns: 0,
            ..bounded()
        };
        assert_eq!(no_h2.validate(), Ok(()));
    }

    #[test]
    fn older_configs_without_http2_or_stream_fields_still_parse() {
        let mut v = serde_json::to_value(bounded()).unwrap();
        let obj = v.as_object_mut().unwrap();
        for field in [
            "bursts",
            "post_fraction",
            "h2_fraction",
            "h2_conns",
            "h2_streams",
            "sse_clients",
            "ws_clients",
            "stream_interval_ms",
        ] {
            obj.remove(field).unwrap();
        }
        let back: Config = serde_json::from_value(v).unwrap();
        // They sent no POST.
        assert_eq!(
            back,
            Config {
                post_fraction: 0.0,
                ..bounded()
            }
        );
    }

    #[test]
    fn parses_ms_ranges() {
        assert_eq!("7".parse(), Ok(MsRange { min: 7, max: 7 }));
        assert_eq!("10-250".parse(), Ok(MsRange { min: 10, max: 250 }));
        assert_eq!(" 1 - 2 ".parse(), Ok(MsRange { min: 1, max: 2 }));
        assert!("5-1".parse::<MsRange>().is_err());
        assert!("a-1".parse::<MsRange>().is_err());
        assert!("-1".parse::<MsRange>().is_err());
        assert_eq!(MsRange { min: 1, max: 9 }.to_string(), "1-9");
    }

    #[test]
    fn echoes_durations_as_milliseconds() {
        let c = Config {
            duration: Some(Duration::from_millis(1500)),
            ..bounded()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["duration_ms"], 1500);
        assert_eq!(v["timeout_ms"], 10_000);
        assert_eq!(v["slow_ms"]["max"], 500);
        let back: Config = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }
}
