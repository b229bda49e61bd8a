//! Long-lived clients: Server-Sent Events readers and WebSocket echo
//! clients. Each holds one stream at a time for the whole run. A stream the
//! server ends cleanly (its final event, or a close frame with 1000 or 1001)
//! is followed by a new one, which a rollout routes to another replica;
//! anything else that ends a stream is a failure, counted by cause.

mod end;
pub(crate) mod ledger;
mod sse;
mod ws;

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::RunContext;

/// Starts the configured clients; they run until `stop` is cancelled (then
/// close their streams) or the run is aborted.
pub(crate) fn spawn(shared: &Arc<RunContext>, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let sse = (0..shared.config.sse_clients)
        .map(|_| tokio::spawn(sse::client(shared.clone(), stop.clone())));
    let ws = (0..shared.config.ws_clients)
        .map(|_| tokio::spawn(ws::client(shared.clone(), stop.clone())));
    sse.chain(ws).collect()
}
