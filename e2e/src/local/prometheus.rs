//! A real Prometheus (Debian's `prometheus`) scraping the replicas through
//! file-based service discovery. Like pod-role discovery, a replica stays a
//! target until its process is gone, so its shutdown is recorded.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::promql::{self, Series};
use crate::recorded::Ask;

/// Scrape often enough to catch a shutdown that lasts a few hundred
/// milliseconds (the chart's defaults, with the preStop sleep before SIGTERM).
pub const SCRAPE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Prometheus {
    pub addr: SocketAddr,
    targets: PathBuf,
    _child: Child,
}

impl Prometheus {
    /// Starts `binary` with its data under `dir` (emptied first) and waits
    /// until it is ready.
    pub async fn start(binary: &Path, dir: &Path) -> Result<Self> {
        // Prometheus resolves relative paths against its config file's folder.
        let dir = &std::path::absolute(dir)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let targets = dir.join("targets.json");
        std::fs::write(&targets, "[]")?;
        let config = dir.join("prometheus.yml");
        let ms = SCRAPE_INTERVAL.as_millis();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n\
                 scrape_configs:\n  - job_name: lameduck\n    file_sd_configs:\n      \
                 - files: [{targets:?}]\n        refresh_interval: 1s\n"
            ),
        )?;
        // Prometheus cannot report a port it picked itself, so take a free
        // one from the kernel and hand it over at once.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let prometheus = Self {
            addr,
            targets,
            _child: child,
        };
        for _ in 0..200 {
            if let Ok(200) = crate::http::get_status(addr, "/-/ready").await {
                return Ok(prometheus);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("Prometheus did not become ready on {addr}")
    }

    /// Replaces the scrape targets: (replica name, admin address).
    pub fn set_targets(&self, targets: &[(String, SocketAddr)]) -> Result<()> {
        let groups: Vec<_> = targets
            .iter()
            .map(|(name, addr)| {
                serde_json::json!({"targets": [addr.to_string()], "labels": {"replica": name}})
            })
            .collect();
        // Written whole and renamed, so Prometheus never reads half a file.
        let partial = self.targets.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(&groups)?)?;
        std::fs::rename(&partial, &self.targets)?;
        Ok(())
    }
}

impl Ask for Prometheus {
    async fn matrix(&self, promql: &str, at_s: f64) -> Result<Vec<Series>> {
        let (_, body) =
            crate::http::get(self.addr, &promql::query_path(promql, Some(at_s))).await?;
        promql::matrix(promql, &body)
    }
}
