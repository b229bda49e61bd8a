//! The cluster's own Prometheus (`deploy/prometheus/`, pod-role discovery),
//! asked through the API server's Service proxy. Endpoint-role discovery (a
//! ServiceMonitor) would have dropped a pod at its deletion: no sample would
//! fall inside its termination.

use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;

use super::api::Proxy;
use crate::promql::{self, Series};
use crate::recorded::Ask;

/// Longer than deploy/prometheus's 2 s scrape interval, so that the last
/// scrapes of the run have landed before the questions are asked.
pub const SETTLE: Duration = Duration::from_secs(5);

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
}

impl Ask for Prometheus {
    async fn matrix(&self, promql: &str, at_s: f64) -> Result<Vec<Series>> {
        let body = self
            .proxy
            .get(&promql::query_path(promql, Some(at_s)))
            .await
            .with_context(|| format!("cannot ask Prometheus {promql:?}"))?;
        promql::matrix(promql, body.as_bytes())
    }
}
