//! The tasks that follow the release while the load runs: a watch that
//! records every pod transition the moment it arrives, a scraper of each
//! terminating pod's `/metrics` through the API server's pod proxy, and a
//! once-a-second count of the pods traffic is routed to.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use testkit::Metrics;

use super::api::Proxy;
use super::pods::Pods;
use super::rollout::{PodId, ROLLOUT_TIMEOUT};
use crate::timeline::unix_ms;

/// How often a terminating pod's `/metrics` is scraped.
const SCRAPE: Duration = Duration::from_millis(100);
/// How long the watch may lag behind the API before an old pod's end counts
/// as never seen.
const WATCH_CATCH_UP: Duration = Duration::from_secs(10);

/// What the run's tasks share.
#[derive(Debug, Default)]
pub struct Shared {
    pub pods: Mutex<Pods>,
    /// Serving pods, sampled every second.
    pub routed: Mutex<Vec<(u64, usize)>>,
    /// The rollout under way (0 during warm-up).
    pub generation: AtomicU32,
}

impl Shared {
    /// Returns once the watch has delivered the end of each of `old` (the
    /// API already has none of them), or after [`WATCH_CATCH_UP`]: a pod the
    /// watch never saw go keeps an unknown end, which fails the run.
    pub async fn caught_up(&self, old: &[PodId]) {
        let deadline = tokio::time::Instant::now() + WATCH_CATCH_UP;
        while tokio::time::Instant::now() < deadline {
            let all_gone = {
                let pods = self.pods.lock().unwrap();
                old.iter()
                    .all(|p| pods.seen.get(&p.name).is_some_and(|s| s.gone_ms.is_some()))
            };
            if all_gone {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Follows the server pods with a watch (relisting after 410 Gone or any
/// error, with backoff) and scrapes each one that starts terminating.
pub async fn watch_pods(client: Client, ns: String, selector: String, shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let config = watcher::Config::default().labels(&selector);
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                eprintln!("  watch of the server pods: {error}; resuming");
                continue;
            }
        };
        let now = unix_ms();
        let generation = shared.generation.load(Ordering::Relaxed);
        let deleted = shared.pods.lock().unwrap().apply(event, now, generation);
        for name in deleted {
            let proxy = Proxy::pod(client.clone(), &ns, &name, 8081);
            tokio::spawn(scrape_while_terminating(proxy, name, Arc::clone(&shared)));
        }
    }
}

/// Scrapes a terminating pod's `/metrics` every `SCRAPE` until it is gone.
async fn scrape_while_terminating(proxy: Proxy, name: String, shared: Arc<Shared>) {
    let deadline = tokio::time::Instant::now() + ROLLOUT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if shared
            .pods
            .lock()
            .unwrap()
            .seen
            .get(&name)
            .is_none_or(|s| s.gone_ms.is_some())
        {
            return;
        }
        // Failures are expected once the process has exited.
        if let Ok(text) = proxy.get_once("/metrics").await
            && let metrics = Metrics(text)
            && let (Some(phase), Some(duration)) = (
                metrics.value("lameduck_shutdown_phase"),
                metrics.value("lameduck_shutdown_duration_seconds"),
            )
            && let Some(s) = shared.pods.lock().unwrap().seen.get_mut(&name)
        {
            s.shutdown.scrapes += 1;
            s.shutdown.highest_phase = s.shutdown.highest_phase.max(phase);
            s.shutdown.duration_seconds = duration;
        }
        tokio::time::sleep(SCRAPE).await;
    }
}

/// Counts the serving pods once a second.
pub async fn sample_routed(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let serving = shared.pods.lock().unwrap().serving();
        shared.routed.lock().unwrap().push((unix_ms(), serving));
    }
}
