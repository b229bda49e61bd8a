//! The application listener's accept loop: a connection limit, and, when the
//! listener closes, the connections already waiting in its backlog served
//! rather than reset. `accept_one` serves the admin listener too.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error};

use crate::conn;
use crate::context::ServerContext;
use crate::service::AppService;

/// Accepts application connections until `stop`, then drops the listener, so
/// that new connections are refused.
pub(crate) async fn accept(
    listener: TcpListener,
    service: impl AppService,
    shared: Arc<ServerContext>,
    connections: TaskTracker,
    cut: CancellationToken,
    stop: CancellationToken,
) {
    // Beyond the limit, connections wait in the kernel's backlog.
    let limit = shared
        .config
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS);
    let limit = Arc::new(Semaphore::new(limit));
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            stream = accept_one(&listener, "application") => match stream {
                Some(stream) => stream,
                None => continue,
            },
        };
        set_nodelay(&stream);
        connections.spawn(conn::serve(
            stream,
            service.clone(),
            Arc::clone(&shared),
            cut.clone(),
            permit,
        ));
    }
    // The kernel has completed the handshake of the connections in the
    // backlog, and their clients may have sent a request already; closing the
    // listener would reset them. Take them out first, then close; each is
    // served once a permit frees up (from now on every connection closes
    // after its next response), or dropped by a forced shutdown.
    let waiting = take_backlog(listener);
    if !waiting.is_empty() {
        debug!(
            connections = waiting.len(),
            "serving the listener's backlog"
        );
    }
    for stream in waiting {
        set_nodelay(&stream);
        let (limit, service, shared, cut) = (
            Arc::clone(&limit),
            service.clone(),
            Arc::clone(&shared),
            cut.clone(),
        );
        connections.spawn(async move {
            let permit = tokio::select! {
                biased;
                () = cut.cancelled() => return,
                permit = limit.acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            conn::serve(stream, service, shared, cut, permit).await;
        });
    }
    debug!("application listener closed");
}

/// At most this many connections are taken from the backlog: more than any
/// listen backlog holds, so that only a flood of new connections can reach
/// it, and the listener still closes.
const BACKLOG_LIMIT: usize = 65_536;

/// Accepts what the kernel has queued on `listener` without waiting, then
/// closes it.
fn take_backlog(listener: TcpListener) -> Vec<TcpStream> {
    // Straight `accept` calls, not tokio's, which trust a readiness flag that
    // may not have caught up with the queue yet.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            debug!(%error, "cannot take the listener's backlog");
            return Vec::new();
        }
    };
    let mut streams = Vec::new();
    while streams.len() < BACKLOG_LIMIT {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => streams.push(stream),
                    Err(error) => debug!(%error, "cannot serve a connection from the backlog"),
                }
            }
            Err(error) if is_connection_error(&error) => {}
            // `WouldBlock`: the backlog is empty.
            Err(_) => break,
        }
    }
    streams
}

fn set_nodelay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// Accepts one connection. `None` after an error: at once when it concerned
/// only that connection, after a pause when it concerns the listener (out of
/// file descriptors, typically), so that the loop does not spin.
pub(crate) async fn accept_one(listener: &TcpListener, which: &str) -> Option<TcpStream> {
    match listener.accept().await {
        Ok((stream, _peer)) => Some(stream),
        Err(error) if is_connection_error(&error) => None,
        Err(error) => {
            error!(%error, "{which} accept failed; retrying in 100ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Errors that concern one connection only, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
