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
    /// A request whose headers have started arriving but are not complete
    /// this long after their first byte is closed: the defence against slow
    /// headers. It does not run while a connection is idle (see
    /// [`Config::idle_timeout`]).
    pub header_read_timeout: Duration,
    /// How long an HTTP/1 connection may wait, idle, for its next request
    /// (or a new connection for its first) before it is closed.
    ///
    /// A proxy in front keeps idle connections in a pool and may reuse one at
    /// any moment: a server that closes it first races the proxy's next
    /// request, which the client then gets as a 502. So this must be longer
    /// than the proxy's pool idle timeout. The default, 65 minutes, outlives
    /// ingress-nginx (60 s), Traefik (90 s), AWS load balancers (60 s),
    /// Google Cloud's (600 s) and Envoy's default (1 hour, which Contour,
    /// Envoy Gateway and Istio keep).
    pub idle_timeout: Duration,
    /// Once the shutdown has ended, how long the admin listener may stay up
    /// for the scrapers of `/metrics` to read the final figures (the phase,
    /// the frozen duration, the aborted counts) before `serve` returns.
    ///
    /// Each address that scraped `/metrics` is waited for until it scrapes
    /// again, or until twice its last interval (plus a second) has passed,
    /// and never longer than this; where nobody scraped, nobody is waited
    /// for. 0 returns at once. The default, 65 s, covers a 60 s scrape
    /// interval.
    pub final_scrape_timeout: Duration,
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
            idle_timeout: Duration::from_secs(65 * 60),
            final_scrape_timeout: Duration::from_secs(65),
            max_connections: 10_000,
        }
    }
}
