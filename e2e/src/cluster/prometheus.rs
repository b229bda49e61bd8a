//! The cluster's own Prometheus (`deploy/prometheus/`, pod-role discovery),
//! asked through the API server's Service proxy. Endpoint-role discovery (a
//! ServiceMonitor) would have dropped a pod at its deletion: no sample would
//! fall inside its termination.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;

use super::api;
use crate::promql::{self, Sample, Series};
use crate::recorded::Ask;
use crate::verdict::{Check, Span};

/// Longer than deploy/prometheus's 2 s scrape interval, so that the last
/// scrapes of the run have landed before the questions are asked.
pub const SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Prometheus {
    proxy: api::Proxy,
}

impl Prometheus {
    /// `spec` is `namespace/service:port`, e.g. `monitoring/prometheus:web`.
    pub fn new(client: Client, spec: &str) -> Result<Self> {
        let (ns, service) = spec
            .split_once('/')
            .context("--prometheus must be namespace/service:port")?;
        Ok(Self {
            proxy: api::Proxy::service(client, ns, service),
        })
    }
}

impl Prometheus {
    async fn ask(&self, promql: &str, at_s: f64) -> Result<String> {
        self.proxy
            .get(&promql::query_path(promql, Some(at_s)))
            .await
            .with_context(|| format!("cannot ask Prometheus {promql:?}"))
    }

    /// An instant query evaluated at `at_s` (Unix seconds).
    pub async fn vector(&self, promql: &str, at_s: f64) -> Result<Vec<Sample>> {
        promql::vector(promql, self.ask(promql, at_s).await?.as_bytes())
    }

    /// The sum of `promql`'s series at `at_s`; 0 when there is none yet.
    async fn sum_at(&self, promql: &str, at_s: f64) -> Result<f64> {
        Ok(self
            .vector(&format!("sum({promql})"), at_s)
            .await?
            .first()
            .map_or(0.0, |s| s.value))
    }
}

impl Ask for Prometheus {
    async fn matrix(&self, promql: &str, at_s: f64) -> Result<Vec<Series>> {
        promql::matrix(promql, self.ask(promql, at_s).await?.as_bytes())
    }
}

/// A proxy in front of the release whose own metrics count what it
/// answered: a second count of the failures, independent of the load
/// generator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Proxy {
    /// Traefik with `--metrics.prometheus.addServicesLabels`
    /// (`traefik_service_requests_total` by service and code).
    Traefik,
}

/// Requests a proxy answered for the release during the run: all, and 5xx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxyCount {
    pub requests: f64,
    pub server_errors: f64,
}

impl Proxy {
    /// What the proxy counted for the release's Service during `run`, from
    /// the difference of its counters just before and after (a counter
    /// that appears during the run started from zero).
    pub async fn count(
        self,
        prometheus: &Prometheus,
        ns: &str,
        release: &str,
        run: Span,
    ) -> Result<ProxyCount> {
        let Proxy::Traefik = self;
        // Traefik names a Kubernetes Ingress backend `<ns>-<service>-<port>@kubernetes`.
        let service = format!("service=~\"{ns}-{release}-[^@]*@kubernetes\"");
        let all = format!("traefik_service_requests_total{{{service}}}");
        let errors = format!("traefik_service_requests_total{{{service},code=~\"5..\"}}");
        let (before, after) = (run.from_ms as f64 / 1e3 - 1.0, run.to_ms as f64 / 1e3);
        Ok(ProxyCount {
            requests: prometheus.sum_at(&all, after).await?
                - prometheus.sum_at(&all, before).await?,
            server_errors: prometheus.sum_at(&errors, after).await?
                - prometheus.sum_at(&errors, before).await?,
        })
    }

    /// The proxy's count of 5xx agrees with the load generator's.
    pub async fn count_check(
        self,
        prometheus: &Prometheus,
        ns: &str,
        release: &str,
        run: Span,
        load: &loadgen::Report,
    ) -> Result<Check> {
        let count = self.count(prometheus, ns, release, run).await?;
        Ok(count_check(self, count, load))
    }
}

/// The load generator's 5xx: requests answered with one (from whichever
/// origin), and long-lived streams refused with a status.
fn loadgen_server_errors(load: &loadgen::Report) -> u64 {
    let requests: u64 = load
        .outcomes
        .status
        .iter()
        .filter(|(code, _)| **code >= 500)
        .map(|(_, n)| n)
        .sum();
    requests + load.streams.sse.failures.status + load.streams.ws.failures.status
}

fn count_check(proxy: Proxy, count: ProxyCount, load: &loadgen::Report) -> Check {
    let ours = loadgen_server_errors(load);
    let origin = &load.outcomes.status_by_origin;
    Check {
        name: format!("{proxy:?}'s own count of 5xx agrees with the load generator's"),
        passed: count.requests > 0.0 && count.server_errors == ours as f64,
        detail: if count.requests <= 0.0 {
            format!("unknown: {proxy:?} counted no request for the release during the run")
        } else {
            format!(
                "{proxy:?} answered {:.0} requests for the release, {:.0} of them 5xx; the load generator saw {ours} 5xx (without the application's marker: {:?}; from the application: {:?}; timeouts {})",
                count.requests,
                count.server_errors,
                origin.no_marker,
                origin.application,
                load.outcomes.timeout
            )
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::fixtures::report;

    #[test]
    fn the_proxy_s_count_must_match_the_load_generator_s() {
        let mut load = report(&[(0, 100, &[])], 0);
        load.outcomes.status.insert(502, 3);
        load.outcomes.status.insert(404, 1);
        load.streams.ws.failures.status = 1;
        let agree = ProxyCount {
            requests: 120.0,
            server_errors: 4.0,
        };
        assert!(count_check(Proxy::Traefik, agree, &load).passed);
        let more = ProxyCount {
            server_errors: 6.0,
            ..agree
        };
        assert!(!count_check(Proxy::Traefik, more, &load).passed);
        let none = ProxyCount {
            requests: 0.0,
            server_errors: 0.0,
        };
        let c = count_check(Proxy::Traefik, none, &report(&[(0, 100, &[])], 0));
        assert!(!c.passed && c.detail.starts_with("unknown"), "{}", c.detail);
    }
}
