//! The baseline: the smallest hyper 1.x server that gives `GET /` the same
//! answer as lameduck (status, `content-type`, body bytes), on the same runtime
//! (tokio multi-thread, default worker count) and allocator (jemalloc, from
//! this crate's library) with `TCP_NODELAY` like lameduck. No routing, no
//! timers, no tracking, no shutdown: whatever lameduck costs beyond this is
//! what the benchmark measures.
//!
//! `bare-hyper [--h2c] [ADDR]` (default `127.0.0.1:0`) prints one JSON line
//! `{"message":"serving","listen":"IP:PORT"}` on stdout, so that a harness
//! learns the port the same way as from lameduck's logs. It speaks HTTP/1.1,
//! or with `--h2c` HTTP/2 with prior knowledge only (hyper's defaults: up to
//! 200 concurrent streams per connection), the server the load generator's
//! HTTP/2 speed is measured against.

use std::net::SocketAddr;

use anyhow::bail;
use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lameduck_bench::baseline::{announce, answer, replica_name};
use tokio::net::{TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let mut h2c = false;
    let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--h2c" => h2c = true,
            _ if arg.starts_with('-') => {
                bail!("unknown flag {arg}; usage: bare-hyper [--h2c] [ADDR]")
            }
            _ => addr = arg.parse()?,
        }
    }
    let name = Bytes::from(replica_name("bare-hyper"));
    // Same flavour and worker count as lameduck's `Runtime::new()`.
    tokio::runtime::Runtime::new()?.block_on(serve(addr, name, h2c))
}

async fn serve(addr: SocketAddr, name: Bytes, h2c: bool) -> anyhow::Result<()> {
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
        tokio::spawn(connection(stream, name.clone(), h2c));
    }
}

async fn connection(stream: TcpStream, name: Bytes, h2c: bool) {
    let io = TokioIo::new(stream);
    let service = answer(name);
    let _ = if h2c {
        http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new().serve_connection(io, service).await
    };
}
