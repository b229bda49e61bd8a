//! SIGTERM and SIGINT as shutdown requests: the first asks for a graceful
//! shutdown, a second one forces it. (SIGKILL cannot be caught; the kubelet
//! sends it when the grace period is over, whatever the process does.)

use std::future::Future;
use std::io;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

/// Installs handlers for SIGTERM and SIGINT and returns two futures: the first
/// completes on the first signal, the second on the second one. Pass them to
/// [`Server::serve`](crate::Server::serve) and
/// [`Server::force_on`](crate::Server::force_on).
///
/// Call it early, before binding listeners: from then on a signal no longer
/// kills the process but starts a shutdown, even one that arrives while the
/// server is still starting.
///
/// # Errors
///
/// If a handler cannot be installed.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub fn shutdown_signals() -> io::Result<(
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
)> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (count, _) = watch::channel(0_u32);
    let first = wait_for_count(count.subscribe(), 1);
    let second = wait_for_count(count.subscribe(), 2);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = terminate.recv() => "SIGTERM",
                Some(()) = interrupt.recv() => "SIGINT",
                else => return,
            };
            let received = *count.borrow() + 1;
            if received == 1 {
                info!(signal = name, "received {name}: shutting down");
            } else {
                warn!(signal = name, "received {name} again: forcing shutdown");
            }
            count.send_replace(received);
        }
    });
    Ok((first, second))
}

async fn wait_for_count(mut count: watch::Receiver<u32>, at_least: u32) {
    if count.wait_for(|n| *n >= at_least).await.is_err() {
        // The handlers are gone (the runtime is shutting down): never fire.
        std::future::pending::<()>().await;
    }
}
