//! `lameduck probe URL`: one GET, for images that have no shell or curl
//! (the chart's `helm test` pod).

use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The URL does not parse, or is not `http://`.
    #[error("invalid URL {0:?}: expected http://host[:port]/path")]
    Url(String),
    /// The request failed before an answer came.
    #[error("request failed")]
    Request(#[from] hyper_util::client::legacy::Error),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An answer came, but not a 2xx one.
    #[error("answered {0}")]
    Status(StatusCode),
}

/// GETs `url`; `Ok` with the status on a 2xx answer.
///
/// # Errors
///
/// See [`ProbeError`].
pub async fn probe(url: &str, timeout: Duration) -> Result<StatusCode, ProbeError> {
    let uri: Uri = url.parse().map_err(|_| ProbeError::Url(url.to_owned()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(timeout, client.get(uri))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))??;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}
