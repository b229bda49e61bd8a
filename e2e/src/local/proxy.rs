//! The Service, as kube-proxy's iptables mode makes it: an L4 TCP proxy on
//! loopback that picks a ready endpoint per new connection and pins the
//! connection to it. No retry: a backend that refuses resets the client. An
//! endpoint leaves the set only after a propagation lag, as a terminating
//! pod's endpoint leaves every node's rules only once kube-proxy has seen it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
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

/// Copies both ways until both sides are done; a reset on either side
/// becomes a reset on the other.
async fn splice(mut client: TcpStream, mut backend: TcpStream, stats: &Stats) {
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    if tokio::io::copy_bidirectional(&mut client, &mut backend)
        .await
        .is_err()
    {
        stats.backend_reset.fetch_add(1, Ordering::Relaxed);
        reset(client);
        reset(backend);
    }
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
