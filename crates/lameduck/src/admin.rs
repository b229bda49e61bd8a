//! The admin listener: `/livez`, `/readyz`, `/metrics`. It answers through the
//! whole shutdown and closes last, so that the shutdown can be watched; every
//! `GET /metrics` is recorded by address, for the final scrape (see
//! `scrapers`).

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::accept::accept_one;
use crate::context::ServerContext;
use crate::lifecycle::Phase;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Once stopped, how long a connection may take to finish the response it is
/// writing (the final scrape's, say) before it is dropped.
const FINISH_RESPONSE: Duration = Duration::from_secs(1);

/// Serves the admin routes until `stop`; then closes its connections, each
/// once its response in flight is written.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<ServerContext>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            stream = accept_one(&listener, "admin") => match stream {
                Some(stream) => stream,
                None => continue,
            },
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        let peer = stream.peer_addr().ok().map(|addr| addr.ip());
        connections.spawn(async move {
            let routes = Arc::clone(&shared);
            let service = service_fn(move |request| {
                let response = respond(&routes, &request, peer);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut conn = pin!(
                shared
                    .admin_h1
                    .serve_connection(TokioIo::new(stream), service)
            );
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    // An idle connection closes at once.
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(FINISH_RESPONSE, conn).await {
                        Ok(result) => result,
                        Err(_) => return,
                    }
                }
            };
            if let Err(error) = result {
                debug!(%error, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn respond(
    shared: &ServerContext,
    request: &Request<Incoming>,
    peer: Option<IpAddr>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match shared.lifecycle.phase() {
            Phase::Serving => text(StatusCode::OK, "ready\n"),
            phase => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("shutting down: {phase}\n"),
            ),
        },
        "/metrics" => {
            // Read before encoding: the shutdown sets every final figure
            // before it enters its last phase.
            let final_figures = shared.lifecycle.phase() >= Phase::Done;
            let body = shared.metrics.encode();
            if let Some(peer) = peer
                && request.method() == Method::GET
            {
                shared.scrapers.record(peer, final_figures);
            }
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    response
}
