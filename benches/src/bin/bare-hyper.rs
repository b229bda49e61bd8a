//! The baseline: the smallest hyper 1.x server that gives `GET /` the same
//! answer as lameduck (status, `content-type`, body bytes), on the same runtime
//! (tokio multi-thread, default worker count) and allocator (jemalloc, from
//! this crate's library) with `TCP_NODELAY` like lameduck. No routing, no
//! timers, no tracking, no shutdown: whatever lameduck costs beyond this is
//! what the benchmark measures.
//!
//! `bare-hyper [ADDR]` (default `127.0.0.1:0`) prints one JSON line
//! `{"message":"serving","listen":"IP:PORT"}` on stdout, so that a harness
//! learns the port the same way as from lameduck's logs.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use lameduck_bench::baseline::{announce, answer, replica_name};
use tokio::net::TcpListener;

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()?;
    let name = Bytes::from(replica_name("bare-hyper"));
    // Same flavour and worker count as lameduck's `Runtime::new()`.
    tokio::runtime::Runtime::new()?.block_on(serve(addr, name))
}

async fn serve(addr: SocketAddr, name: Bytes) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    announce(listener.local_addr()?)?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, typically: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = answer(name.clone());
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
