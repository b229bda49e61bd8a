//! Request tracking: wraps the application's service so that every request is
//! counted while in flight (per connection and in the metrics), timed, and,
//! once shutdown began, answered over HTTP/1 with `Connection: close`.
//!
//! A request is in flight from the moment hyper hands it to the service until
//! its response body has been written or dropped: the guard travels from the
//! service future into the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::state::ConnState;
use crate::lifecycle::Phase;
use crate::metrics::method_index;

/// The application's service, tracked. One per connection.
#[derive(Debug, Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnState>) -> Self {
        Self { inner, conn }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let guard = RequestGuard::start(&self.conn, &request);
        request
            .extensions_mut()
            .insert(self.conn.shared.drain.clone());
        TrackedFuture {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project! {
    /// The application's response future; adds `Connection: close` and moves
    /// the request guard into the body.
    #[derive(Debug)]
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<RequestGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let mut guard = this
            .guard
            .take()
            .expect("TrackedFuture polled after completion");
        guard.status = Some(response.status());
        if guard.http1 && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Set before hyper writes the response, so before the
            // application can read or write the upgraded socket.
            guard.conn.mark_upgraded();
        } else if guard.http1 && guard.conn.shared.lifecycle.phase() >= Phase::Draining {
            // The phase is read when the response is ready, not when the
            // request arrived, so a request that straddles the signal
            // still closes its connection.
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

pin_project! {
    /// The application's response body; the request ends when it is dropped.
    #[derive(Debug)]
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: RequestGuard,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request in flight. Dropping it ends the request: in the counters, in
/// the latency histogram (if a response was produced), and in the connection's
/// idle clock.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    conn: Arc<ConnState>,
    /// When the read that completed the request's headers returned, in
    /// nanoseconds since `shared.epoch`.
    started: u64,
    method: u8,
    http1: bool,
    status: Option<StatusCode>,
}

impl RequestGuard {
    fn start(conn: &Arc<ConnState>, request: &Request<Incoming>) -> Self {
        let started = conn.start_request();
        conn.shared.metrics.active_requests.inc();
        if conn.shared.lifecycle.phase() >= Phase::Draining {
            conn.requests_changed.notify_one();
        }
        Self {
            conn: Arc::clone(conn),
            started,
            method: method_index(request.method()),
            http1: request.version() < Version::HTTP_2,
            status: None,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let shared = &self.conn.shared;
        let now = shared.nanos_since_epoch(tokio::time::Instant::now());
        shared.metrics.active_requests.dec();
        if let Some(status) = self.status {
            let seconds = Duration::from_nanos(now.saturating_sub(self.started)).as_secs_f64();
            shared.metrics.observe(self.method, status, seconds);
        }
        let was_last = self.conn.end_request(now);
        if was_last && shared.lifecycle.phase() >= Phase::Closing {
            self.conn.requests_changed.notify_one();
        }
    }
}
