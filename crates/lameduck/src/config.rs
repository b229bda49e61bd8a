//! Server settings: plain data, filled in at the edge (command line, or the embedding program).

use std::time::Duration;

/// Timeouts are capped at this (a year) where they set a deadline, so that
/// no duration can overflow a clock.
pub(crate) const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a [`Server`](crate::Server) drains and shuts down.
///
/// The defaults are the command line's defaults. Fields are public so that an
/// embedding program can set just the ones it cares about:
///
/// ```
/// use std::time::Duration;
/// let mut config = lameduck::Config::default();
/// config.drain_delay = Duration::from_secs(5);
/// assert_eq!(config.shutdown_timeout, Duration::from_secs(20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Lame-duck window after the shutdown signal: `/readyz` fails, the
    /// listener stays open, every HTTP/1.1 response says `Connection: close`.
    pub drain_delay: Duration,
    /// How long in-flight work may take once the listener has closed; when it
    /// expires the remaining connections are dropped (a forced shutdown).
    pub shutdown_timeout: Duration,
    /// While closing, how long a keep-alive connection must have been idle
    /// before it is closed. A connection used more recently than this may be
    /// carrying the client's next request, which then gets one more response.
    /// On HTTP/2, how long the final GOAWAY waits for streams the client
    /// opened before it saw the first one (0: it does not wait).
    pub idle_grace: Duration,
    /// A connection that has not sent complete request headers within this
    /// time is closed (this also bounds how long an idle HTTP/1 keep-alive
    /// connection is kept).
    pub header_read_timeout: Duration,
    /// Connections served at once (at least 1); further ones wait in the
    /// listen backlog.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(20),
            idle_grace: Duration::from_millis(250),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}
