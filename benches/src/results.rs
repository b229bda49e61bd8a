//! What one run measured, before any summarising.

use crate::machine::Machine;
use crate::stats::{self, Summary};
use crate::wrk::Run;

/// One A B pair of wrk runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// lameduck's run (A).
    pub lameduck: Run,
    /// The bare hyper server's run (B), right after.
    pub baseline: Run,
}

/// The pairs at one connection count.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// wrk's `-c`.
    pub connections: u32,
    /// In the order run.
    pub pairs: Vec<Pair>,
}

impl Throughput {
    /// lameduck's throughput over the baseline's, pair by pair.
    pub fn ratios(&self) -> Vec<f64> {
        let (a, b): (Vec<f64>, Vec<f64>) = self
            .pairs
            .iter()
            .map(|p| (p.lameduck.rps(), p.baseline.rps()))
            .unzip();
        stats::ratios(&a, &b)
    }

    /// `f` of each of lameduck's runs.
    pub fn lameduck(&self, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        self.pairs.iter().map(|p| f(&p.lameduck)).collect()
    }

    /// `f` of each of the baseline's runs.
    pub fn baseline(&self, f: impl Fn(&Run) -> f64) -> Vec<f64> {
        self.pairs.iter().map(|p| f(&p.baseline)).collect()
    }

    /// Errors wrk counted over all runs, lameduck's and the baseline's.
    pub fn errors(&self) -> (u64, u64) {
        self.pairs.iter().fold((0, 0), |(a, b), p| {
            (a + p.lameduck.errors, b + p.baseline.errors)
        })
    }
}

/// Shutdown latencies in milliseconds, one per repetition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shutdown {
    /// SIGTERM to exit with nothing connected.
    pub idle_ms: Vec<f64>,
    /// SIGTERM to exit with the idle keep-alive connections open (default idle grace).
    pub idle_conns_ms: Vec<f64>,
    /// The same with `--idle-grace 0s`.
    pub idle_conns_zero_grace_ms: Vec<f64>,
    /// SIGTERM to exit with busy keep-alive connections under wrk's load.
    pub busy_conns_ms: Vec<f64>,
    /// Requests the server reported completed during those shutdowns.
    pub busy_completed: Vec<u64>,
    /// Exit minus the last in-flight response.
    pub in_flight_after_last_ms: Vec<f64>,
    /// SIGTERM to exit in the same runs.
    pub in_flight_total_ms: Vec<f64>,
    /// SIGTERM to exit of the close-only baseline holding the idle connections.
    pub close_only_ms: Vec<f64>,
    /// The same for hyper-util's graceful shutdown.
    pub graceful_hyper_ms: Vec<f64>,
}

/// Resident set sizes in bytes, one per repetition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    /// lameduck, nothing connected.
    pub lameduck_idle: Vec<f64>,
    /// lameduck with the idle keep-alive connections open.
    pub lameduck_conns: Vec<f64>,
    /// The bare hyper server, nothing connected.
    pub baseline_idle: Vec<f64>,
    /// The bare hyper server with the idle keep-alive connections open.
    pub baseline_conns: Vec<f64>,
    /// The close-only baseline with the idle keep-alive connections open.
    pub close_only_conns: Vec<f64>,
}

/// `/metrics` timed on a server that has served many requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsRender {
    /// Requests the server had counted when timed.
    pub requests: f64,
    /// Size of one `/metrics` answer.
    pub body_bytes: usize,
    /// Series lines in it.
    pub series: usize,
    /// `GET /metrics` round trips, microseconds.
    pub metrics_us: Vec<f64>,
    /// `GET /livez` round trips on the same connection, microseconds.
    pub livez_us: Vec<f64>,
}

impl MetricsRender {
    /// Per sample, the `/metrics` round trip less the median `/livez` one:
    /// the time spent gathering and encoding.
    pub fn render_us(&self) -> Vec<f64> {
        let floor = Summary::of(&self.livez_us).map_or(0.0, |s| s.median);
        self.metrics_us.iter().map(|m| m - floor).collect()
    }
}

/// One A B pair of HTTP/2 runs at full speed: the load generator alone,
/// then h2load with the same connections and streams, in requests per second.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedPair {
    /// loadgen's rate (A).
    pub loadgen: f64,
    /// h2load's rate (B), right after.
    pub h2load: f64,
}

/// The load generator's HTTP/2 speed against the bare hyper server (h2c).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct H2Speed {
    /// HTTP/2 connections, both clients.
    pub conns: u32,
    /// Concurrent streams per connection, both clients.
    pub streams: u32,
    /// Requests per run.
    pub requests: u64,
    /// The pairs where both runs taught something, in the order run.
    pub pairs: Vec<SpeedPair>,
    /// Why a run taught nothing (it failed, its output did not parse, no
    /// request was answered or one failed), one line each.
    pub unknown: Vec<String>,
}

impl H2Speed {
    /// `f` of each pair; none at all when a run taught nothing, so that
    /// the figure is unknown rather than measured on what is left.
    pub fn samples(&self, f: impl Fn(&SpeedPair) -> f64) -> Vec<f64> {
        if !self.unknown.is_empty() {
            return Vec::new();
        }
        self.pairs.iter().map(f).collect()
    }

    /// loadgen's rate over h2load's, pair by pair.
    pub fn ratios(&self) -> Vec<f64> {
        self.samples(|p| p.loadgen / p.h2load)
    }
}

/// Instructions one server executed under callgrind for one protocol, at
/// each request count, all threads summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallgrindRuns {
    /// `(requests, instructions)` of the smaller run, if it taught something.
    pub small: Option<(u64, u64)>,
    /// The same for the larger run.
    pub big: Option<(u64, u64)>,
}

impl CallgrindRuns {
    /// Instructions per request: the difference between the two runs over
    /// the difference in requests; `None` unless both runs taught something.
    pub fn per_request(&self) -> Option<f64> {
        crate::callgrind::per_request(self.small?, self.big?).ok()
    }
}

/// Instructions per `GET /` over one protocol, lameduck and bare hyper.
#[derive(Clone, Debug, PartialEq)]
pub struct CallgrindCost {
    /// `HTTP/1.1` or `HTTP/2 (h2c)`.
    pub protocol: &'static str,
    /// lameduck's runs.
    pub lameduck: CallgrindRuns,
    /// The bare hyper server's runs.
    pub baseline: CallgrindRuns,
    /// Why a run taught nothing (it failed, a request was not answered with
    /// a 2xx, or the output did not parse), one line each.
    pub unknown: Vec<String>,
}

impl CallgrindCost {
    /// lameduck's instructions per request; none at all when a run taught
    /// nothing, so that the figure is unknown.
    pub fn lameduck(&self) -> Option<f64> {
        self.known()?;
        self.lameduck.per_request()
    }

    /// The bare hyper server's, likewise.
    pub fn baseline(&self) -> Option<f64> {
        self.known()?;
        self.baseline.per_request()
    }

    /// lameduck's over bare hyper's.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.lameduck()? / self.baseline()?)
    }

    fn known(&self) -> Option<()> {
        self.unknown.is_empty().then_some(())
    }
}

/// Callgrind's instruction counts per request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Callgrind {
    /// `valgrind --version`.
    pub valgrind: String,
    /// Requests of the smaller run of each server.
    pub small: u64,
    /// Requests of the larger run.
    pub big: u64,
    /// One per protocol.
    pub costs: Vec<CallgrindCost>,
}

/// How the run was set up, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// Seconds per wrk run.
    pub run_seconds: f64,
    /// Seconds of warm-up per server and connection count.
    pub warmup_seconds: f64,
    /// wrk threads.
    pub wrk_threads: u32,
    /// Idle connections held.
    pub idle_connections: usize,
    /// Busy connections under load.
    pub busy_connections: u32,
    /// Requests in flight.
    pub in_flight: usize,
    /// Requests served before `/metrics` was timed.
    pub metrics_after: u64,
}

/// Everything one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    /// Where.
    pub machine: Machine,
    /// How.
    pub setup: Setup,
    /// Load averages when the run started.
    pub load_before: Option<[f64; 3]>,
    /// Load averages when it ended.
    pub load_after: Option<[f64; 3]>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
    /// One per connection count.
    pub throughput: Vec<Throughput>,
    /// Shutdown latencies.
    pub shutdown: Shutdown,
    /// Memory.
    pub memory: Memory,
    /// `/metrics` rendering.
    pub metrics: MetricsRender,
    /// The load generator's HTTP/2 speed.
    pub h2_speed: H2Speed,
    /// Instructions per request, under callgrind.
    pub callgrind: Callgrind,
}
