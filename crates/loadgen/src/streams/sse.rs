//! A Server-Sent Events reader: `GET /events?interval=…` over HTTP/1.1,
//! counting `tick` events, until the server says `shutdown` and ends the
//! body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::end::{End, before_open, next_stream};
use super::ledger::StreamKind;
use crate::context::RunContext;
use crate::outcome;
use crate::report::StreamFailure;

/// One client: a stream after another until the run ends.
pub(super) async fn client(shared: Arc<RunContext>, stop: CancellationToken) {
    loop {
        let end = tokio::select! {
            biased;
            () = shared.abort.cancelled() => End::ByClient,
            end = stream(&shared, &stop) => end,
        };
        if !next_stream(&shared, StreamKind::Sse, end, &stop).await {
            return;
        }
    }
}

/// Opens one stream and reads it to its end.
async fn stream(shared: &RunContext, stop: &CancellationToken) -> End {
    let config = &shared.config;
    let response = match timeout(config.timeout, open(shared)).await {
        Ok(Ok(response)) => response,
        Ok(Err(end)) => return end,
        Err(_) => {
            let msg = format!("no response head within {:?}", config.timeout);
            return End::failed(StreamFailure::Handshake, msg);
        }
    };
    let (head, body, _conn) = response;
    if head.status != StatusCode::OK {
        return End::failed(
            StreamFailure::Status,
            format!("GET /events: {}", head.status),
        );
    }
    let is_events = head
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_events {
        let msg = format!(
            "GET /events: content type {:?}",
            head.headers.get(CONTENT_TYPE)
        );
        return End::failed(StreamFailure::Handshake, msg);
    }
    shared.streams.opened(StreamKind::Sse);
    read(shared, body, stop).await
}

type Opened = (
    http::response::Parts,
    hyper::body::Incoming,
    AbortOnDropHandle<()>,
);

/// Connects and sends the request; the connection's task lives as long as
/// the handle returned.
async fn open(shared: &RunContext) -> Result<Opened, End> {
    let tcp = tokio::net::TcpStream::connect(shared.addr)
        .await
        .map_err(|e| before_open(outcome::connect_failure(&e)))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| before_open(outcome::exchange_failure(&e)))?;
    let conn = AbortOnDropHandle::new(tokio::spawn(async move {
        // Its errors reach the body being read.
        let _ = conn.await;
    }));
    let millis = shared.config.stream_interval.as_millis();
    let request = Request::get(format!("/events?interval={millis}ms"))
        .header(HOST, &shared.host)
        .header(ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())
        .expect("a static request is valid");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| before_open(outcome::exchange_failure(&e)))?;
    let (head, body) = response.into_parts();
    Ok((head, body, conn))
}

/// Reads events until the clean end, a failure or the end of the run.
async fn read(shared: &RunContext, body: hyper::body::Incoming, stop: &CancellationToken) -> End {
    let quiet = stall_after(shared.config.stream_interval, shared.config.timeout);
    let mut events = body.into_data_stream().eventsource();
    let mut named = false;
    let mut said_goodbye = false;
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return End::ByClient,
            next = timeout(quiet, events.next()) => next,
        };
        let event = match next {
            Err(_) => {
                let msg = format!("no event within {quiet:?}");
                return End::failed(StreamFailure::Stalled, msg);
            }
            Ok(None) if said_goodbye => return End::Clean,
            Ok(None) => {
                let msg = "the stream ended without its shutdown event";
                return End::failed(StreamFailure::Truncated, msg);
            }
            Ok(Some(Err(EventStreamError::Transport(e)))) => {
                let msg = format!("reading the stream: {}", outcome::chain(&e));
                return End::failed(StreamFailure::Reset, msg);
            }
            Ok(Some(Err(e))) => {
                return End::failed(StreamFailure::Malformed, format!("{e}"));
            }
            Ok(Some(Ok(event))) => event,
        };
        match event.event.as_str() {
            "tick" if !said_goodbye => {
                shared.streams.event();
                if !named {
                    named = true;
                    let replica = event.data.split_whitespace().next().unwrap_or_default();
                    shared.streams.served_by(StreamKind::Sse, replica);
                }
            }
            "shutdown" if !said_goodbye => said_goodbye = true,
            other => {
                let msg = format!("unexpected event {other:?} (after shutdown: {said_goodbye})");
                return End::failed(StreamFailure::Malformed, msg);
            }
        }
    }
}

/// How long an open stream may stay quiet: the request timeout, plus the
/// interval between events.
fn stall_after(interval: Duration, timeout: Duration) -> Duration {
    interval + timeout
}
