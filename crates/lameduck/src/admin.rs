//! The admin listener: `/livez`, `/readyz`, `/metrics`. It answers through the
//! whole shutdown and closes last, so that the shutdown can be watched.

use std::convert::Infallible;
use std::sync::Arc;

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

/// Serves the admin routes until `stop`; then drops its connections.
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
        connections.spawn(async move {
            let routes = Arc::clone(&shared);
            let service = service_fn(move |request| {
                let response = respond(&routes, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = shared
                .admin_h1
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = conn => if let Err(error) = result {
                    debug!(%error, "admin connection ended with an error");
                },
                () = stop.cancelled() => {}
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn respond(shared: &ServerContext, request: &Request<Incoming>) -> Response<Full<Bytes>> {
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
            let mut response = Response::new(Full::new(Bytes::from(shared.metrics.encode())));
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
