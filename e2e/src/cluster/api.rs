//! Talking to the API server through transient faults: a 90-second run must
//! not be thrown away because of one 500 at its end. Also HTTP to pods and
//! Services through the API server's proxy, and what to print when a pod
//! never becomes ready.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

/// Backoff for API calls: 100 ms doubling to 5 s, for about a minute.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(16)
        .with_jitter()
}

/// Whether an error may go away if the call is repeated: a 5xx, 429, a
/// timeout or a broken connection, as opposed to a 4xx that will not change.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Calls `f` until it succeeds or fails for good; `what` names the call in logs.
pub async fn retry<T, F, Fut>(what: &str, f: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    f.retry(backoff())
        .sleep(tokio::time::sleep)
        .when(is_transient)
        .notify(|error, after| eprintln!("  retrying {what} in {after:?}: {error}"))
        .await
}

/// HTTP to a pod's or a Service's port through the API server.
#[derive(Clone)]
pub struct Proxy {
    client: Client,
    base: String,
}

impl Proxy {
    pub fn pod(client: Client, ns: &str, pod: &str, port: u16) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy"),
        }
    }

    /// `service` is `name:port-name` or `name:port`.
    pub fn service(client: Client, ns: &str, service: &str) -> Self {
        Self {
            client,
            base: format!("/api/v1/namespaces/{ns}/services/{service}/proxy"),
        }
    }

    /// One GET, no retry (for polling loops that retry anyway).
    pub async fn get_once(&self, path: &str) -> Result<String, kube::Error> {
        let request = http::Request::get(format!("{}{path}", self.base))
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        self.client.request_text(request).await
    }

    pub async fn get(&self, path: &str) -> Result<String, kube::Error> {
        retry(&format!("GET {}{path}", self.base), || self.get_once(path)).await
    }

    pub async fn post(&self, path: &str) -> Result<String, kube::Error> {
        retry(&format!("POST {}{path}", self.base), || async {
            let request = http::Request::post(format!("{}{path}", self.base))
                .body(Vec::new())
                .map_err(kube::Error::HttpError)?;
            self.client.request_text(request).await
        })
        .await
    }
}

/// Why the pods matching `selector` are not ready: each one's phase, its
/// containers' waiting or terminated reasons, and its latest events.
pub async fn explain_pods(client: &Client, ns: &str, selector: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let by_selector = ListParams::default().labels(selector);
    let list = match retry("list pods", || pods.list(&by_selector)).await {
        Ok(list) => list,
        Err(error) => return format!("  (cannot list pods {selector}: {error})"),
    };
    if list.items.is_empty() {
        return format!("  no pod matches {selector}");
    }
    let mut out = String::new();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        out += &format!(
            "  pod {name}: {}\n",
            status.phase.as_deref().unwrap_or("no phase")
        );
        for c in status.container_statuses.iter().flatten() {
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting {
                out += &format!(
                    "    {}: waiting, {} {}\n",
                    c.name,
                    w.reason.unwrap_or_default(),
                    w.message.unwrap_or_default()
                );
            } else if let Some(t) = state.terminated {
                out += &format!(
                    "    {}: terminated, exit code {} {}\n",
                    c.name,
                    t.exit_code,
                    t.reason.unwrap_or_default()
                );
            }
        }
        let by_pod = ListParams::default().fields(&format!("involvedObject.name={name}"));
        if let Ok(list) = retry("list events", || events.list(&by_pod)).await {
            for e in list.items.iter().rev().take(8).rev() {
                out += &format!(
                    "    event: {} {}: {}\n",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("").trim()
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("boom", "InternalError")
                .with_code(code)
                .boxed(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_500_is_retried_and_a_404_is_not() {
        let mut calls = 0;
        let value = retry("test", || {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 3 {
                    Err(api_error(500))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);

        let mut calls = 0;
        let error = retry("test", || {
            calls += 1;
            async { Err::<(), _>(api_error(404)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!is_transient(&error));
    }
}
