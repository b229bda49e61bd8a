//! Command-line flags; every flag also reads `LOADGEN_<FLAG>`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use humantime::Duration;
use loadgen::{Bursts, Config, MsRange, PeriodRange};

fn defaults() -> Config {
    Config::new("")
}

/// Open-loop HTTP/1.1 and HTTP/2 load generator: sends GET /, GET
/// /work?ms=N and POST / (whose echo it checks) at a fixed rate, or in
/// bursts, and classifies every request's outcome; prints a JSON report.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Args {
    /// Server address, host:port (e.g. a Service: lameduck.default.svc:80).
    #[arg(long, env = "LOADGEN_TARGET")]
    pub(crate) target: String,

    /// Requests per second, started on schedule whatever the response times.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = defaults().rate)]
    pub(crate) rate: f64,

    /// Bursts instead of a rate: this many bursts of --burst-size requests,
    /// all of a burst started at once, the gap between bursts swept by
    /// --burst-period; the run ends after the last burst's requests. Not
    /// with --rate, --duration or --max-requests.
    #[arg(
        long,
        env = "LOADGEN_BURSTS",
        requires_all = ["burst_size", "burst_period"],
        conflicts_with_all = ["rate", "duration", "max_requests"]
    )]
    pub(crate) bursts: Option<u64>,

    /// Requests per burst, all started at the burst's instant (each
    /// keep-alive one on a pooled connection of its own).
    #[arg(long, env = "LOADGEN_BURST_SIZE", requires = "bursts")]
    pub(crate) burst_size: Option<usize>,

    /// The gap between one burst and the next, going linearly from FROM
    /// (the first gap) to TO (the last), e.g. 940ms..1060ms; one duration
    /// for a constant gap.
    #[arg(
        long,
        env = "LOADGEN_BURST_PERIOD",
        requires = "bursts",
        value_name = "FROM..TO"
    )]
    pub(crate) burst_period: Option<PeriodRange>,

    /// Stop scheduling after this long (e.g. 30s, 5m). At least one of
    /// --duration and --max-requests is required, unless --bursts is given.
    #[arg(
        long,
        env = "LOADGEN_DURATION",
        required_unless_present_any = ["max_requests", "bursts"]
    )]
    pub(crate) duration: Option<Duration>,

    /// Stop scheduling after this many requests.
    #[arg(long, env = "LOADGEN_MAX_REQUESTS")]
    pub(crate) max_requests: Option<u64>,

    /// Requests in flight (started or waiting for a keep-alive connection) at most.
    #[arg(long, env = "LOADGEN_MAX_IN_FLIGHT", default_value_t = defaults().max_in_flight)]
    pub(crate) max_in_flight: usize,

    /// Whole-request timeout: connect, send, response head and body.
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value_t = defaults().timeout.into())]
    pub(crate) timeout: Duration,

    /// Fraction of requests that are GET /work?ms=N instead of GET /.
    #[arg(long, env = "LOADGEN_SLOW_FRACTION", default_value_t = defaults().slow_fraction)]
    pub(crate) slow_fraction: f64,

    /// Milliseconds of slow requests: N or MIN-MAX (uniform).
    #[arg(long, env = "LOADGEN_SLOW_MS", default_value_t = defaults().slow_ms)]
    pub(crate) slow_ms: MsRange,

    /// Fraction of requests that are POST / with a body of a few hundred
    /// bytes, whose echo is checked. The slow and POST fractions add up to
    /// at most 1; the rest is GET /.
    #[arg(long, env = "LOADGEN_POST_FRACTION", default_value_t = defaults().post_fraction)]
    pub(crate) post_fraction: f64,

    /// Pooled keep-alive connections, each reused until the server closes it
    /// or answers with Connection: close.
    #[arg(long, env = "LOADGEN_KEEPALIVE_CONNS", default_value_t = defaults().keepalive_conns)]
    pub(crate) keepalive_conns: usize,

    /// Fraction of requests sent on a fresh connection of their own.
    #[arg(long, env = "LOADGEN_FRESH_FRACTION", default_value_t = defaults().fresh_fraction)]
    pub(crate) fresh_fraction: f64,

    /// Fraction of requests sent over HTTP/2 (h2c, prior knowledge). The
    /// fresh and HTTP/2 fractions add up to at most 1; the rest is keep-alive.
    #[arg(long, env = "LOADGEN_H2_FRACTION", default_value_t = defaults().h2_fraction)]
    pub(crate) h2_fraction: f64,

    /// Every request over HTTP/2: --h2-fraction 1 --fresh-fraction 0 (and
    /// neither may be set).
    #[arg(long, env = "LOADGEN_HTTP2")]
    pub(crate) http2: bool,

    /// Pooled HTTP/2 connections.
    #[arg(long, env = "LOADGEN_H2_CONNS", default_value_t = defaults().h2_conns)]
    pub(crate) h2_conns: usize,

    /// Concurrent streams per HTTP/2 connection, at most.
    #[arg(long, env = "LOADGEN_H2_STREAMS", default_value_t = defaults().h2_streams)]
    pub(crate) h2_streams: usize,

    /// Long-lived Server-Sent Events clients: each reads GET /events and
    /// reconnects when the server ends the stream cleanly.
    #[arg(long, env = "LOADGEN_SSE_CLIENTS", default_value_t = defaults().sse_clients)]
    pub(crate) sse_clients: usize,

    /// Long-lived WebSocket clients: each sends a message to GET /ws every
    /// --stream-interval, expects its echo, and reconnects when the server
    /// closes with 1000 or 1001.
    #[arg(long, env = "LOADGEN_WS_CLIENTS", default_value_t = defaults().ws_clients)]
    pub(crate) ws_clients: usize,

    /// The SSE event interval asked of the server, and the WebSocket
    /// clients' message interval (10ms to 60s).
    #[arg(long, env = "LOADGEN_STREAM_INTERVAL", default_value_t = defaults().stream_interval.into())]
    pub(crate) stream_interval: Duration,

    /// A request starting later than this after its slot counts as late.
    #[arg(long, env = "LOADGEN_LATE_AFTER", default_value_t = defaults().late_after.into())]
    pub(crate) late_after: Duration,

    /// After scheduling ends (or a stop), how long in-flight requests may
    /// take before they are aborted and counted as such.
    #[arg(long, env = "LOADGEN_DRAIN_TIMEOUT", default_value_t = defaults().drain_timeout.into())]
    pub(crate) drain_timeout: Duration,

    /// Failures whose error message the report keeps verbatim.
    #[arg(long, env = "LOADGEN_ERROR_SAMPLES", default_value_t = defaults().error_samples)]
    pub(crate) error_samples: usize,

    /// Seed of the request mix.
    #[arg(long, env = "LOADGEN_SEED", default_value_t = defaults().seed)]
    pub(crate) seed: u64,

    /// Write the report to this file instead of stdout.
    #[arg(long, env = "LOADGEN_REPORT")]
    pub(crate) report: Option<PathBuf>,

    /// Write the report to stderr, after the summary, in one write that
    /// nothing else interleaves with: with everything on one stream, a
    /// container log keeps the report's pieces together and in order.
    #[arg(long, env = "LOADGEN_REPORT_ON_STDERR", conflicts_with = "report")]
    pub(crate) report_on_stderr: bool,

    /// Indent the report (default: one line of JSON).
    #[arg(long, env = "LOADGEN_PRETTY")]
    pub(crate) pretty: bool,

    /// Print a JSON progress line on stderr every second.
    #[arg(long, env = "LOADGEN_PROGRESS")]
    pub(crate) progress: bool,

    /// Serve GET /progress and POST /stop on this address (port 0: any free
    /// port; the address is printed on stderr as {"control_listen": ...}).
    #[arg(long, env = "LOADGEN_CONTROL_LISTEN")]
    pub(crate) control_listen: Option<SocketAddr>,
}

impl Args {
    /// Parses the command line and environment, or exits as clap does.
    pub(crate) fn from_env() -> Self {
        Self::try_from_iter(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name).
    pub(crate) fn try_from_iter<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let args = Self::from_arg_matches(&matches)?;
        // Checked here rather than with clap's `conflicts_with`, which would
        // also count `LOADGEN_HTTP2=false` as given.
        if args.http2 {
            for (id, flag) in [
                ("fresh_fraction", "--fresh-fraction"),
                ("h2_fraction", "--h2-fraction"),
            ] {
                if matches.value_source(id) != Some(ValueSource::DefaultValue) {
                    let msg = format!(
                        "--http2 sets the fresh and HTTP/2 fractions; \
                         it cannot be used with {flag}"
                    );
                    return Err(Self::command().error(ErrorKind::ArgumentConflict, msg));
                }
            }
        }
        Ok(args)
    }

    pub(crate) fn config(&self) -> Config {
        Config {
            target: self.target.clone(),
            rate: self.rate,
            // clap makes the three come together.
            bursts: self.bursts.map(|count| {
                let period = self.burst_period.unwrap_or(PeriodRange {
                    from: std::time::Duration::ZERO,
                    to: std::time::Duration::ZERO,
                });
                Bursts {
                    count,
                    size: self.burst_size.unwrap_or(0),
                    period_from: period.from,
                    period_to: period.to,
                }
            }),
            duration: self.duration.map(Into::into),
            max_requests: self.max_requests,
            max_in_flight: self.max_in_flight,
            timeout: self.timeout.into(),
            slow_fraction: self.slow_fraction,
            slow_ms: self.slow_ms,
            post_fraction: self.post_fraction,
            keepalive_conns: self.keepalive_conns,
            fresh_fraction: if self.http2 { 0.0 } else { self.fresh_fraction },
            h2_fraction: if self.http2 { 1.0 } else { self.h2_fraction },
            h2_conns: self.h2_conns,
            h2_streams: self.h2_streams,
            sse_clients: self.sse_clients,
            ws_clients: self.ws_clients,
            stream_interval: self.stream_interval.into(),
            late_after: self.late_after.into(),
            drain_timeout: self.drain_timeout.into(),
            error_samples: self.error_samples,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_from_iter(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_library() {
        let args = parse(&["--target", "svc:80", "--max-requests", "5"]).unwrap();
        let want = Config {
            max_requests: Some(5),
            ..Config::new("svc:80")
        };
        assert_eq!(args.config(), want);
    }

    #[test]
    fn parses_every_flag() {
        let args = parse(&[
            "--target=h:1",
            "--rate=2500",
            "--duration=1m",
            "--max-in-flight=64",
            "--timeout=750ms",
            "--slow-fraction=0.5",
            "--slow-ms=10-20",
            "--post-fraction=0.3",
            "--keepalive-conns=4",
            "--fresh-fraction=0.5",
            "--h2-fraction=0.25",
            "--h2-conns=3",
            "--h2-streams=16",
            "--sse-clients=2",
            "--ws-clients=3",
            "--stream-interval=250ms",
            "--late-after=5ms",
            "--drain-timeout=2s",
            "--error-samples=3",
            "--seed=9",
            "--report=/tmp/r.json",
            "--pretty",
            "--progress",
            "--control-listen=127.0.0.1:0",
        ])
        .unwrap();
        let c = args.config();
        assert_eq!(c.rate, 2500.0);
        assert_eq!(c.duration, Some(Duration::from_secs(60)));
        assert_eq!(c.timeout, Duration::from_millis(750));
        assert_eq!(c.slow_ms, MsRange { min: 10, max: 20 });
        assert_eq!(c.post_fraction, 0.3);
        assert_eq!((c.keepalive_conns, c.fresh_fraction), (4, 0.5));
        assert_eq!((c.h2_fraction, c.h2_conns, c.h2_streams), (0.25, 3, 16));
        assert_eq!((c.sse_clients, c.ws_clients), (2, 3));
        assert_eq!(c.stream_interval, Duration::from_millis(250));
        assert_eq!(c.drain_timeout, Duration::from_secs(2));
        assert!(args.pretty && args.progress);
        assert_eq!(args.control_listen, Some("127.0.0.1:0".parse().unwrap()));
        c.validate().unwrap();
    }

    #[test]
    fn http2_means_every_request_over_http2() {
        let args = parse(&["--target=h:1", "--max-requests=1", "--http2"]).unwrap();
        let c = args.config();
        assert_eq!((c.h2_fraction, c.fresh_fraction), (1.0, 0.0));
        assert_eq!(c.keepalive_fraction(), 0.0);
        c.validate().unwrap();
        // It says what the two fractions are; setting them too is an error.
        for other in ["--h2-fraction=0.5", "--fresh-fraction=0"] {
            let err = parse(&["--target=h:1", "--max-requests=1", "--http2", other]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{other}"
            );
        }
    }

    /// What `Config::to_args` writes, this parser reads back to the same
    /// configuration: the Kubernetes Job and the benchmarks start loadgen
    /// with it.
    #[test]
    fn generated_arguments_round_trip() {
        let everything = Config {
            rate: 1234.5,
            duration: Some(Duration::from_millis(1500)),
            max_requests: Some(77),
            max_in_flight: 33,
            timeout: Duration::from_micros(2500),
            slow_fraction: 0.1,
            slow_ms: MsRange { min: 3, max: 9 },
            post_fraction: 0.35,
            keepalive_conns: 5,
            fresh_fraction: 1.0 / 3.0,
            h2_fraction: 0.2,
            h2_conns: 2,
            h2_streams: 7,
            sse_clients: 4,
            ws_clients: 6,
            stream_interval: Duration::from_millis(40),
            late_after: Duration::from_millis(3),
            drain_timeout: Duration::from_secs(4),
            error_samples: 2,
            seed: 99,
            ..Config::new("svc.ns:8080")
        };
        let configs = [
            everything,
            Config {
                max_requests: Some(1),
                ..Config::new("h:1")
            },
            Config {
                duration: Some(Duration::from_secs(900)),
                fresh_fraction: 0.0,
                h2_fraction: 1.0,
                keepalive_conns: 0,
                ..Config::new("[::1]:80")
            },
            Config {
                bursts: Some(Bursts {
                    count: 120,
                    size: 100,
                    period_from: Duration::from_millis(940),
                    period_to: Duration::from_micros(1_060_250),
                }),
                keepalive_conns: 100,
                post_fraction: 1.0,
                slow_fraction: 0.0,
                sse_clients: 2,
                ..Config::new("traefik.traefik:80")
            },
            Config {
                bursts: Some(Bursts {
                    count: 1,
                    size: 3,
                    period_from: Duration::from_secs(10),
                    period_to: Duration::from_secs(10),
                }),
                ..Config::new("h:1")
            },
        ];
        for config in configs {
            let args = config.to_args();
            let parsed = Args::try_from_iter(std::iter::once("loadgen".to_owned()).chain(args))
                .unwrap_or_else(|e| panic!("{config:?}: {e}"));
            assert_eq!(parsed.config(), config);
        }
    }

    #[test]
    fn parses_a_burst_schedule() {
        let args = parse(&[
            "--target=h:1",
            "--bursts=120",
            "--burst-size=100",
            "--burst-period=940ms..1s 60ms",
            "--keepalive-conns=100",
        ])
        .unwrap();
        let c = args.config();
        assert_eq!(
            c.bursts,
            Some(Bursts {
                count: 120,
                size: 100,
                period_from: Duration::from_millis(940),
                period_to: Duration::from_millis(1060),
            })
        );
        assert_eq!((c.duration, c.max_requests), (None, None));
        c.validate().unwrap();
        // One duration: a constant period.
        let args = parse(&[
            "--target=h:1",
            "--bursts=3",
            "--burst-size=2",
            "--burst-period=10s",
        ])
        .unwrap();
        let b = args.config().bursts.unwrap();
        assert_eq!(
            (b.period_from, b.period_to),
            (Duration::from_secs(10), Duration::from_secs(10))
        );
    }

    #[test]
    fn bursts_replace_the_rate_and_the_bounds() {
        let burst = ["--target=h:1", "--bursts=2", "--burst-size=2"];
        for (extra, kind) in [
            ("--rate=50", ErrorKind::ArgumentConflict),
            ("--duration=1m", ErrorKind::ArgumentConflict),
            ("--max-requests=5", ErrorKind::ArgumentConflict),
        ] {
            let mut args = burst.to_vec();
            args.extend(["--burst-period=1s", extra]);
            let err = parse(&args).unwrap_err();
            assert_eq!(err.kind(), kind, "{extra}: {err}");
        }
        for period in ["1s..", "..1s", "soon", "1s..2s..3s"] {
            let mut args = burst.to_vec();
            let flag = format!("--burst-period={period}");
            args.push(&flag);
            let err = parse(&args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{period}: {err}");
            assert!(err.to_string().contains("--burst-period"), "{err}");
        }
        // The three flags come together.
        for args in [
            &["--target=h:1", "--bursts=2", "--burst-size=2"][..],
            &["--target=h:1", "--bursts=2", "--burst-period=1s"][..],
            &["--target=h:1", "--max-requests=1", "--burst-size=2"][..],
            &["--target=h:1", "--max-requests=1", "--burst-period=1s"][..],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::MissingRequiredArgument,
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn requires_target_and_a_bound() {
        assert!(parse(&["--max-requests", "1"]).is_err());
        assert!(parse(&["--target", "h:1"]).is_err());
        assert!(parse(&["--target", "h:1", "--duration", "soon"]).is_err());
        assert!(parse(&["--target", "h:1", "--duration", "1s", "--slow-ms", "9-1"]).is_err());
    }
}
