//! How a stream, or an attempt to open one, ended, and what the client
//! does next: the accounting every long-lived client shares.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ledger::StreamKind;
use crate::context::RunContext;
use crate::outcome::{Kind, Outcome};
use crate::report::StreamFailure;

/// How a stream, or an attempt to open one, ended.
#[derive(Debug)]
pub(super) enum End {
    /// The server ended it cleanly.
    Clean,
    /// The run ended and the client closed it.
    ByClient,
    /// It failed.
    Failed(StreamFailure, String),
}

impl End {
    pub(super) fn failed(cause: StreamFailure, message: impl Into<String>) -> Self {
        End::Failed(cause, message.into())
    }
}

/// A failed connect or exchange before any stream was open: connects keep
/// their cause, anything else (a reset, a malformed head) is a failed
/// handshake.
pub(super) fn before_open(outcome: Outcome) -> End {
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

/// Accounts for how a stream ended and says whether the client goes on:
/// after a clean end it reconnects at once, after a failure it waits an
/// interval first (a refused connect must not spin), and it stops with the
/// run.
pub(super) async fn next_stream(
    shared: &RunContext,
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
