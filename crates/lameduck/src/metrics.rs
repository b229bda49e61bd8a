//! The Prometheus metrics of the contract. Every handle the request path uses
//! is resolved before or on first use, so a request touches only atomics: no
//! lock, no allocation, no label formatting.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::{Method, StatusCode};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use crate::lifecycle::Lifecycle;

/// Method label values; anything else is `_OTHER`, so a client cannot grow
/// the number of series by inventing methods.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "_OTHER",
];
/// Status codes `http` can represent: 100..=999.
const FIRST_CODE: u16 = 100;
const CODES: usize = 900;

/// Latency buckets in seconds; `/work` may take up to a minute.
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Index of a method's label in [`METHODS`].
pub(crate) fn method_index(method: &Method) -> u8 {
    let i = METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1);
    i as u8
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) active_requests: IntGauge,
    pub(crate) open_connections: IntGauge,
    durations: HistogramVec,
    // One slot per (method, status), filled on first use; afterwards a lookup is
    // a single atomic load instead of the vec's lock and label hashing.
    series: Box<[OnceLock<Histogram>]>,
    pub(crate) aborted: IntCounter,
    pub(crate) upgraded_connections: IntGauge,
    pub(crate) aborted_upgraded: IntCounter,
    /// `lameduck_shutdowns_total{outcome="clean"}`, then `"forced"`.
    shutdowns: [IntCounter; 2],
}

impl Metrics {
    /// Creates the metrics and registers them, with the process collector, in
    /// `registry`; the shutdown phase and duration are read from `lifecycle`
    /// at each gathering.
    pub(crate) fn new(registry: Registry, lifecycle: Arc<Lifecycle>) -> prometheus::Result<Self> {
        let shutdowns = IntCounterVec::new(
            Opts::new(
                "lameduck_shutdowns_total",
                "Shutdowns that ended, by outcome: clean (every connection closed in time) or forced.",
            ),
            &["outcome"],
        )?;
        let metrics = Self {
            active_requests: IntGauge::new(
                "http_server_active_requests",
                "Requests in flight on the application listener.",
            )?,
            open_connections: IntGauge::new(
                "http_server_open_connections",
                "Open application connections.",
            )?,
            durations: HistogramVec::new(
                HistogramOpts::new(
                    "http_server_request_duration_seconds",
                    "Time from request headers to the end of the response body.",
                )
                .buckets(BUCKETS.to_vec()),
                &["method", "code"],
            )?,
            series: (0..METHODS.len() * CODES)
                .map(|_| OnceLock::new())
                .collect(),
            aborted: IntCounter::new(
                "lameduck_shutdown_aborted_requests_total",
                "Requests cut off by a forced shutdown.",
            )?,
            upgraded_connections: IntGauge::new(
                "lameduck_upgraded_connections",
                "Open upgraded application connections (WebSocket and the like), also counted in http_server_open_connections.",
            )?,
            aborted_upgraded: IntCounter::new(
                "lameduck_shutdown_aborted_upgraded_connections_total",
                "Upgraded connections (WebSocket and the like) cut off by a forced shutdown.",
            )?,
            // Both series exist from the start at 0, so that the one that
            // reaches 1 shows as an increase.
            shutdowns: [
                shutdowns.with_label_values(&["clean"]),
                shutdowns.with_label_values(&["forced"]),
            ],
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.active_requests.clone()))?;
        r.register(Box::new(metrics.open_connections.clone()))?;
        r.register(Box::new(metrics.durations.clone()))?;
        r.register(Box::new(ShutdownState {
            phase: IntGauge::new(
                "lameduck_shutdown_phase",
                "Shutdown phase: 0 serving, 1 draining, 2 closing, 3 done, 4 forced.",
            )?,
            duration: Gauge::new(
                "lameduck_shutdown_duration_seconds",
                "Seconds since the shutdown signal; frozen when shutdown ends, 0 before.",
            )?,
            start_time: Gauge::new(
                "lameduck_shutdown_start_time_seconds",
                "Unix time of the shutdown signal in seconds; 0 before.",
            )?,
            lifecycle,
        }))?;
        r.register(Box::new(metrics.aborted.clone()))?;
        r.register(Box::new(metrics.upgraded_connections.clone()))?;
        r.register(Box::new(metrics.aborted_upgraded.clone()))?;
        r.register(Box::new(shutdowns))?;
        register_process_collector(r)?;
        Ok(metrics)
    }

    /// Counts the shutdown that just ended, forced or not.
    pub(crate) fn count_shutdown(&self, forced: bool) {
        self.shutdowns[usize::from(forced)].inc();
    }

    /// Records one finished request.
    pub(crate) fn observe(&self, method: u8, status: StatusCode, seconds: f64) {
        let code = usize::from(status.as_u16() - FIRST_CODE);
        let slot = usize::from(method) * CODES + code;
        self.series[slot]
            .get_or_init(|| {
                self.durations
                    .with_label_values(&[METHODS[usize::from(method)], status.as_str()])
            })
            .observe(seconds);
    }

    /// Requests finished so far, summed over every series.
    pub(crate) fn requests_completed(&self) -> u64 {
        self.series
            .iter()
            .filter_map(OnceLock::get)
            .map(Histogram::get_sample_count)
            .sum()
    }

    /// The registry in Prometheus text format.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec only fails on inconsistent metric families,
        // which registration already rules out.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

/// `lameduck_shutdown_phase`, `lameduck_shutdown_duration_seconds` and
/// `lameduck_shutdown_start_time_seconds`, read from the lifecycle whenever
/// they are gathered, so that the duration grows live for every scraper of
/// the registry.
#[derive(Debug)]
struct ShutdownState {
    phase: IntGauge,
    duration: Gauge,
    start_time: Gauge,
    lifecycle: Arc<Lifecycle>,
}

impl Collector for ShutdownState {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.phase.desc();
        descs.extend(self.duration.desc());
        descs.extend(self.start_time.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let clock = self.lifecycle.clock();
        self.phase.set(self.lifecycle.phase() as i64);
        self.duration.set(clock.elapsed().as_secs_f64());
        let start = clock
            .signalled_at()
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok());
        self.start_time
            .set(start.map_or(0.0, |since| since.as_secs_f64()));
        let mut families = self.phase.collect();
        families.extend(self.duration.collect());
        families.extend(self.start_time.collect());
        families
    }
}

/// `process_*` metrics, unless the embedding program registered them already.
fn register_process_collector(registry: &Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        match registry.register(Box::new(collector)) {
            Err(prometheus::Error::AlreadyReg) => {}
            other => other?,
        }
    }
    let _ = registry;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(METHODS[usize::from(method_index(&Method::GET))], "GET");
        assert_eq!(METHODS[usize::from(method_index(&Method::PATCH))], "PATCH");
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHODS[usize::from(method_index(&custom))], "_OTHER");
    }

    #[test]
    fn observe_counts_by_method_and_code() {
        let metrics = Metrics::new(Registry::new(), Arc::default()).unwrap();
        metrics.observe(method_index(&Method::GET), StatusCode::OK, 0.01);
        metrics.observe(method_index(&Method::GET), StatusCode::OK, 0.02);
        metrics.observe(
            method_index(&Method::POST),
            StatusCode::from_u16(999).unwrap(),
            1.0,
        );
        assert_eq!(metrics.requests_completed(), 3);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{code="200",method="GET"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"code="999",method="POST"} 1"#), "{text}");
        assert!(text.contains("lameduck_shutdown_phase 0"), "{text}");
        assert!(
            text.contains("lameduck_shutdown_start_time_seconds 0"),
            "{text}"
        );
        for outcome in ["clean", "forced"] {
            let series = format!(r#"lameduck_shutdowns_total{{outcome="{outcome}"}} 0"#);
            assert!(text.contains(&series), "{text}");
        }
        metrics.count_shutdown(true);
        let text = String::from_utf8(metrics.encode()).unwrap();
        assert!(
            text.contains(r#"lameduck_shutdowns_total{outcome="forced"} 1"#),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_existing_process_collector_is_kept() {
        let registry = Registry::new();
        let collector = prometheus::process_collector::ProcessCollector::for_self();
        registry.register(Box::new(collector)).unwrap();
        Metrics::new(registry.clone(), Arc::default()).unwrap();
        let names: Vec<_> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names.iter().any(|n| n == "process_cpu_seconds_total"),
            "{names:?}"
        );
    }
}
