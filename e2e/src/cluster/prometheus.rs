//! The cluster's own Prometheus (`deploy/prometheus/`, pod-role discovery),
//! asked through the API server's Service proxy what it scraped from each
//! server pod while that pod terminated. Endpoint-role discovery (a
//! ServiceMonitor) would have dropped the pod at its deletion: no sample
//! would fall inside the window.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;

use super::api::Proxy;
use crate::promql::{self, Sample, Series};
use crate::verdict::{Termination, Verdict};

/// Longer than deploy/prometheus's 2 s scrape interval, so that the last
/// scrapes of the run have landed before the questions are asked.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Prometheus {
    proxy: Proxy,
}

impl Prometheus {
    /// `spec` is `namespace/service:port`, e.g. `monitoring/prometheus:web`.
    pub fn new(client: Client, spec: &str) -> Result<Self> {
        let (ns, service) = spec
            .split_once('/')
            .context("--prometheus must be namespace/service:port")?;
        Ok(Self {
            proxy: Proxy::service(client, ns, service),
        })
    }

    async fn ask(&self, promql: &str, at: Option<f64>) -> Result<Vec<u8>> {
        let body = self
            .proxy
            .get(&promql::query_path(promql, at))
            .await
            .with_context(|| format!("cannot ask Prometheus {promql:?}"))?;
        Ok(body.into_bytes())
    }

    pub async fn vector(&self, promql: &str) -> Result<Vec<Sample>> {
        promql::vector(promql, &self.ask(promql, None).await?)
    }

    pub async fn matrix(&self, promql: &str, at: f64) -> Result<Vec<Series>> {
        promql::matrix(promql, &self.ask(promql, Some(at)).await?)
    }
}

/// Requests in flight were scraped, and every terminated pod was scraped
/// between its deletion and its exit.
pub async fn check(
    prometheus: &Prometheus,
    terminations: &[Termination],
    verdict: &mut Verdict,
) -> Result<()> {
    tokio::time::sleep(SETTLE).await;
    let in_flight = prometheus
        .vector("max(max_over_time(http_server_active_requests[1h]))")
        .await?;
    let peak = in_flight.first().map_or(0.0, |s| s.value);
    verdict.push(
        "Prometheus saw requests in flight",
        peak > 0.0,
        format!("max http_server_active_requests = {peak}"),
    );
    for t in terminations {
        let window_s = (t.exited_ms.saturating_sub(t.terminating_ms) / 1000) + 2;
        let at = t.exited_ms as f64 / 1e3 + 0.5;
        let promql = format!("lameduck_shutdown_phase{{pod=\"{}\"}}[{window_s}s]", t.name);
        let series = prometheus.matrix(&promql, at).await?;
        let inside = during(&series, t);
        let highest = inside
            .iter()
            .map(|(_, v)| *v)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        verdict.push(
            format!("Prometheus scraped {} while it terminated", t.name),
            !inside.is_empty(),
            format!(
                "{} samples of lameduck_shutdown_phase between its deletion and its exit ({:.1} s), highest phase {}",
                inside.len(),
                (t.exited_ms.saturating_sub(t.terminating_ms)) as f64 / 1e3,
                highest.map_or("-".to_owned(), |p| p.to_string())
            ),
        );
    }
    Ok(())
}

/// The samples scraped within the termination window.
fn during(series: &[Series], t: &Termination) -> Vec<(f64, f64)> {
    let (from, to) = (t.terminating_ms as f64 / 1e3, t.exited_ms as f64 / 1e3);
    series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(at, _)| (from..=to).contains(at))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_samples_inside_the_termination_window_count() {
        let t = Termination {
            name: "p".to_owned(),
            terminating_ms: 10_000,
            exited_ms: 15_500,
            killed: false,
            exit_code: Some(0),
        };
        let series = [Series {
            labels: Default::default(),
            points: vec![(8.0, 0.0), (10.5, 0.0), (14.9, 2.0), (16.0, 3.0)],
        }];
        assert_eq!(during(&series, &t), [(10.5, 0.0), (14.9, 2.0)]);
    }
}
