//! The `lameduck` command line. Every `serve` flag also reads an environment
//! variable `LAMEDUCK_<FLAG>`; bad values exit 2 with one line naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

use lameduck::Config;

/// Exit code for bad command-line input.
pub const EXIT_USAGE: u8 = 2;

/// Longest accepted duration: longer ones are typos, and would overflow timers.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// An HTTP server for Kubernetes that shuts down without failing a single request.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the demo application (the default).
    Serve(ServeArgs),
    /// Sleep, then exit 0: a preStop hook for images without a shell.
    Sleep {
        /// How long, e.g. `5s`.
        #[arg(value_parser = parse_duration)]
        duration: Duration,
    },
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise (for `helm test`).
    Probe {
        /// The URL, e.g. `http://lameduck:8080/`.
        url: String,
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
        timeout: Duration,
    },
}

/// Flags of `lameduck serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address for application traffic.
    #[arg(
        long,
        env = "LAMEDUCK_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Address for /livez, /readyz and /metrics.
    #[arg(
        long,
        env = "LAMEDUCK_ADMIN_LISTEN",
        default_value = "0.0.0.0:8081",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,
    /// Lame-duck window after the signal, before the listener closes.
    #[arg(long, env = "LAMEDUCK_DRAIN_DELAY", default_value = "0s", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_delay: Duration,
    /// How long in-flight work may take after the listener closes.
    #[arg(long, env = "LAMEDUCK_SHUTDOWN_TIMEOUT", default_value = "20s", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub shutdown_timeout: Duration,
    /// While closing, how long a keep-alive connection must have been idle before it is closed; on
    /// HTTP/2, how long the final GOAWAY waits for streams opened before the first.
    #[arg(long, env = "LAMEDUCK_IDLE_GRACE", default_value = "250ms", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub idle_grace: Duration,
    /// A request whose headers have started but are not complete this long after their first byte
    /// is closed (the defence against slow headers; it does not run while a connection is idle).
    #[arg(long, env = "LAMEDUCK_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true)]
    pub header_read_timeout: Duration,
    /// An HTTP/1.1 connection idle this long, waiting for its next request, is closed; keep it
    /// longer than the idle pool of any proxy in front (the default outlives Envoy's hour).
    #[arg(long, env = "LAMEDUCK_IDLE_TIMEOUT", default_value = "65m", value_name = "DURATION", value_parser = parse_positive_duration, allow_hyphen_values = true)]
    pub idle_timeout: Duration,
    /// Once the shutdown has ended, how long to keep /metrics up for each recent scraper to read
    /// the final figures (each is waited for until its next scrape is overdue); 0 exits at once.
    #[arg(long, env = "LAMEDUCK_FINAL_SCRAPE_TIMEOUT", default_value = "65s", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub final_scrape_timeout: Duration,
    /// File to write a one-line JSON summary of the shutdown to, at exit (Kubernetes reads
    /// /dev/termination-log into the pod's status).
    #[arg(long, env = "LAMEDUCK_TERMINATION_LOG", value_name = "PATH")]
    pub termination_log: Option<PathBuf>,
    /// Connections served at once; further ones wait in the backlog.
    #[arg(long, env = "LAMEDUCK_MAX_CONNECTIONS", default_value = "10000", value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// End the demo's Server-Sent Events streams and WebSockets cleanly when the shutdown begins
    /// (a last event, a close frame with 1001); `false` leaves them to the shutdown timeout, which
    /// cuts them: the negative control's setting.
    #[arg(long, env = "LAMEDUCK_STREAM_DRAIN", default_value_t = true, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub stream_drain: bool,
    /// Log line format; the level comes from RUST_LOG (default info).
    #[arg(
        long,
        env = "LAMEDUCK_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The server settings these flags describe.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.drain_delay = self.drain_delay;
        config.shutdown_timeout = self.shutdown_timeout;
        config.idle_grace = self.idle_grace;
        config.header_read_timeout = self.header_read_timeout;
        config.idle_timeout = self.idle_timeout;
        config.final_scrape_timeout = self.final_scrape_timeout;
        config.max_connections = self.max_connections as usize;
        config
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl Cli {
    /// Parses the process's arguments; on bad input prints one line and exits 2.
    pub fn parse_or_exit() -> Self {
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
                ) =>
            {
                let _ = error.print();
                std::process::exit(0)
            }
            Err(error) => {
                eprintln!("{}", one_line(&error));
                std::process::exit(i32::from(EXIT_USAGE))
            }
        }
    }

    /// The subcommand, with `serve` standing in when none was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// clap's message without its usage and help hints, on one line.
fn one_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    rendered
        .lines()
        .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A humantime duration such as `500ms`, `5s`, `1m`, at most a day.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{e} (expected a duration such as 500ms, 5s or 1m)"))?;
    if duration > MAX_DURATION {
        return Err("must be at most 24h".to_owned());
    }
    Ok(duration)
}

/// Like [`parse_duration`], but zero is refused.
pub fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err("must be more than 0".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lameduck").chain(args.iter().copied()))
    }

    #[test]
    fn serve_is_the_default_and_takes_its_flags_either_way() {
        let bare = parse(&["--drain-delay", "5s"]).unwrap().into_command();
        let explicit = parse(&["serve", "--drain-delay", "5s"])
            .unwrap()
            .into_command();
        for command in [bare, explicit] {
            let Command::Serve(args) = command else {
                panic!("not serve")
            };
            assert_eq!(args.drain_delay, Duration::from_secs(5));
            assert_eq!(args.config().shutdown_timeout, Duration::from_secs(20));
            assert_eq!(args.config().idle_grace, Duration::from_millis(250));
            assert_eq!(args.config().idle_timeout, Duration::from_secs(65 * 60));
            assert!(args.stream_drain);
        }
        let Command::Serve(bare) = parse(&[]).unwrap().into_command() else {
            panic!("not serve")
        };
        assert_eq!(bare.config(), lameduck::Config::default());
        let Command::Serve(off) = parse(&["--stream-drain=false"]).unwrap().into_command() else {
            panic!("not serve")
        };
        assert!(!off.stream_drain);
    }

    #[test]
    fn bad_values_name_the_flag_on_one_line() {
        for (args, flag) in [
            (&["--drain-delay", "abc"][..], "--drain-delay"),
            (&["--shutdown-timeout", "48h"][..], "--shutdown-timeout"),
            (
                &["--header-read-timeout", "0s"][..],
                "--header-read-timeout",
            ),
            (&["--idle-timeout", "0s"][..], "--idle-timeout"),
            (&["--idle-timeout", "25h"][..], "--idle-timeout"),
            (
                &["--final-scrape-timeout", "soon"][..],
                "--final-scrape-timeout",
            ),
            (&["--max-connections", "0"][..], "--max-connections"),
            (&["--listen", "nowhere"][..], "--listen"),
            (&["--log-format", "xml"][..], "--log-format"),
            (&["--stream-drain", "maybe"][..], "--stream-drain"),
        ] {
            let error = parse(args).unwrap_err();
            let line = one_line(&error);
            assert!(line.contains(flag), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5").is_err());
        assert!(parse_positive_duration("0ms").is_err());
    }
}
