//! The Service, as kube-proxy's iptables mode makes it: an L4 TCP proxy on
//! loopback that picks a ready endpoint per new connection and pins the
//! connection to it. No retry: a backend that refuses resets the client. An
//! endpoint leaves the set only after a propagation lag, as a terminating
//! pod's endpoint leaves every node's rules only once kube-proxy has seen it.
//!
//! A connection stays pinned for as long as it lives, also after its endpoint
//! has left the set, as conntrack keeps established flows: a pooled HTTP/2
//! connection, which lives for the whole run, moves to another replica only
//! when its replica sends GOAWAY and closes it. Nothing here times out or
//! counts on short connections; a connection that ends with a reset is
//! counted on the side that reset it, so that a client dropping its
//! long-lived connections at the end of the run is not taken for a replica
//! breaking them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct ServiceProxy {
    pub addr: SocketAddr,
    endpoints: Arc<Endpoints>,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Endpoints {
    ready: RwLock<Vec<(String, SocketAddr)>>,
    next: AtomicUsize,
}

/// What the proxy did, for the report.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    no_endpoint: AtomicU64,
    backend_refused: AtomicU64,
    backend_reset: AtomicU64,
    client_reset: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProxyStats {
    pub connections: u64,
    /// Clients reset because no endpoint was ready.
    pub no_endpoint: u64,
    /// Clients reset because the chosen endpoint refused the connection.
    pub backend_refused: u64,
    /// Connections whose backend reset them mid-way (passed on as a reset).
    pub backend_reset: u64,
    /// Connections whose client reset them mid-way (passed on as a reset).
    pub client_reset: u64,
}

impl ServiceProxy {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let endpoints = Arc::new(Endpoints::default());
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept(listener, Arc::clone(&endpoints), Arc::clone(&stats)));
        Ok(Self {
            addr,
            endpoints,
            stats,
            accept,
        })
    }

    /// Adds a ready endpoint at once.
    pub fn add(&self, name: &str, addr: SocketAddr) {
        self.endpoints
            .ready
            .write()
            .unwrap()
            .push((name.to_owned(), addr));
    }

    /// Removes an endpoint after `lag`, in the background.
    pub fn remove_after(&self, name: &str, lag: Duration) {
        let endpoints = Arc::clone(&self.endpoints);
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(lag).await;
            endpoints.ready.write().unwrap().retain(|(n, _)| *n != name);
        });
    }

    /// A view of the endpoints traffic is routed to, for other tasks.
    pub fn routed(&self) -> Routed {
        Routed(Arc::clone(&self.endpoints))
    }

    pub fn stats(&self) -> ProxyStats {
        let s = &self.stats;
        ProxyStats {
            connections: s.connections.load(Ordering::Relaxed),
            no_endpoint: s.no_endpoint.load(Ordering::Relaxed),
            backend_refused: s.backend_refused.load(Ordering::Relaxed),
            backend_reset: s.backend_reset.load(Ordering::Relaxed),
            client_reset: s.client_reset.load(Ordering::Relaxed),
        }
    }
}

/// The endpoints traffic is routed to, seen from elsewhere.
#[derive(Debug, Clone)]
pub struct Routed(Arc<Endpoints>);

impl Routed {
    pub fn names(&self) -> Vec<String> {
        let ready = self.0.ready.read().unwrap();
        ready.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Endpoints {
    /// Round robin over the ready endpoints.
    fn pick(&self) -> Option<SocketAddr> {
        let ready = self.ready.read().unwrap();
        if ready.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % ready.len();
        Some(ready[i].1)
    }
}

async fn accept(listener: TcpListener, endpoints: Arc<Endpoints>, stats: Arc<Stats>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let backend = endpoints.pick();
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let Some(backend) = backend else {
                stats.no_endpoint.fetch_add(1, Ordering::Relaxed);
                reset(client);
                return;
            };
            match TcpStream::connect(backend).await {
                Ok(backend) => splice(client, backend, &stats).await,
                Err(_) => {
                    stats.backend_refused.fetch_add(1, Ordering::Relaxed);
                    reset(client);
                }
            }
        });
    }
}

/// One end of a spliced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

/// Copies both ways until both sides are done, however long that takes; a
/// reset on either side becomes a reset on the other, and is counted on the
/// side it came from.
async fn splice(client: TcpStream, backend: TcpStream, stats: &Stats) {
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let up = pipe(
        &mut client_read,
        Side::Client,
        &mut backend_write,
        Side::Backend,
    );
    let down = pipe(
        &mut backend_read,
        Side::Backend,
        &mut client_write,
        Side::Client,
    );
    if let Err(side) = tokio::try_join!(up, down) {
        match side {
            Side::Backend => &stats.backend_reset,
            Side::Client => &stats.client_reset,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Ok(client) = client_read.reunite(client_write) {
            reset(client);
        }
        if let Ok(backend) = backend_read.reunite(backend_write) {
            reset(backend);
        }
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s sending (FIN),
/// as `tokio::io::copy_bidirectional` does each way; an error names the side
/// whose socket failed.
async fn pipe(
    from: &mut OwnedReadHalf,
    from_side: Side,
    to: &mut OwnedWriteHalf,
    to_side: Side,
) -> Result<(), Side> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await.map_err(|_| from_side)?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).await.map_err(|_| to_side)?;
    }
    to.shutdown().await.map_err(|_| to_side)
}

/// Closes with RST rather than FIN, as a refused or reset connection looks
/// to a client behind kube-proxy.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn pins_connections_and_resets_without_endpoints() {
        let proxy = ServiceProxy::start().await.unwrap();
        let mut orphan = TcpStream::connect(proxy.addr).await.unwrap();
        let mut buf = [0; 1];
        assert!(orphan.read(&mut buf).await.is_err(), "expected a reset");

        proxy.add("a", echo_server().await);
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut echoed = [0; 4];
        conn.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"ping");

        proxy.remove_after("a", Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(proxy.routed().names().is_empty());
        // The pinned connection keeps working after the endpoint left.
        conn.write_all(b"pong").await.unwrap();
        conn.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"pong");
        assert_eq!(proxy.stats().no_endpoint, 1);
    }

    /// A backend that reads `n` bytes and then resets its connection.
    async fn resetting_server(n: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0; n];
                let _ = s.read_exact(&mut buf).await;
                reset(s);
            }
        });
        addr
    }

    #[tokio::test]
    async fn long_lived_connections_stay_pinned_and_resets_count_on_their_side() {
        let proxy = ServiceProxy::start().await.unwrap();
        proxy.add("a", echo_server().await);
        // A long-lived connection, like a pooled HTTP/2 one: it keeps its
        // replica after the endpoint left and others came.
        let mut long = TcpStream::connect(proxy.addr).await.unwrap();
        proxy.remove_after("a", Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(20)).await;
        proxy.add("b", resetting_server(1).await);
        let mut buf = [0; 4];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            long.write_all(b"ping").await.unwrap();
            long.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        // The client resets it: not the replica's doing.
        long.write_all(b"pi").await.unwrap();
        reset(long);
        // A replica resets a connection: passed on to its client.
        let mut broken = TcpStream::connect(proxy.addr).await.unwrap();
        broken.write_all(b"x").await.unwrap();
        assert!(
            matches!(broken.read(&mut buf).await, Err(_) | Ok(0)),
            "expected the connection to end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = proxy.stats();
        assert_eq!(
            (stats.connections, stats.client_reset, stats.backend_reset),
            (2, 1, 1),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn refused_backend_resets_the_client() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let proxy = ServiceProxy::start().await.unwrap();
        proxy.add("gone", addr);
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        let mut buf = [0; 1];
        assert!(conn.read(&mut buf).await.is_err(), "expected a reset");
        assert_eq!(proxy.stats().backend_refused, 1);
    }
}
