//! Long-lived clients: Server-Sent Events readers and WebSocket echo
//! clients. Each holds one stream at a time for the whole run. A stream the
//! server ends cleanly (its final event, or a close frame with 1000 or 1001)
//! is followed by a new one, which a rollout routes to another replica;
//! anything else that ends a stream is a failure, counted by cause.

mod ledger;
mod sse;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::engine::Shared;
use crate::outcome::{Kind, Outcome};
use crate::report::StreamFailure;

pub(crate) use ledger::Ledger;

/// Which kind of client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Sse,
    Ws,
}

/// How a stream, or an attempt to open one, ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The server ended it cleanly.
    Clean,
    /// The run ended and the client closed it.
    ByClient,
    /// It failed.
    Failed(StreamFailure, String),
}

impl End {
    fn failed(cause: StreamFailure, message: impl Into<String>) -> Self {
        End::Failed(cause, message.into())
    }
}

/// A failed connect or exchange before any stream was open: connects keep
/// their cause, anything else (a reset, a malformed head) is a failed
/// handshake.
fn before_open(outcome: Outcome) -> End {
    match outcome {
        Outcome::Failed { kind, message } => {
            let cause = match kind {
                Kind::ConnectRefused => StreamFailure::ConnectRefused,
                Kind::ConnectError => StreamFailure::ConnectError,
                _ => StreamFailure::Handshake,
            };
            End::Failed(cause, message)
        }
        Outcome::Response(r) => End::failed(StreamFailure::Status, format!("{}", r.status)),
    }
}

/// Starts the configured clients; they run until `stop` is cancelled (then
/// close their streams) or the run is aborted.
pub(crate) fn spawn(shared: &Arc<Shared>, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let sse = (0..shared.config.sse_clients)
        .map(|_| tokio::spawn(sse::client(shared.clone(), stop.clone())));
    let ws = (0..shared.config.ws_clients)
        .map(|_| tokio::spawn(ws::client(shared.clone(), stop.clone())));
    sse.chain(ws).collect()
}

/// Accounts for how a stream ended and says whether the client goes on:
/// after a clean end it reconnects at once, after a failure it waits an
/// interval first (a refused connect must not spin), and it stops with the
/// run.
async fn next_stream(
    shared: &Shared,
    kind: StreamKind,
    end: End,
    stop: &CancellationToken,
) -> bool {
    let ledger = &shared.streams;
    match end {
        End::ByClient => {
            ledger.closed_by_client(kind);
            return false;
        }
        End::Clean => {
            ledger.ended_clean(kind);
            if stop.is_cancelled() {
                return false;
            }
            ledger.reconnect(kind);
            return true;
        }
        End::Failed(cause, message) => ledger.failed(kind, cause, message),
    }
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(retry_pause(shared.config.stream_interval)) => true,
    }
}

/// The pause after a failed stream: an interval, at most a second.
fn retry_pause(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(1))
}
