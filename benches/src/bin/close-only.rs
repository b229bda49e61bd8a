//! The floor under lameduck's shutdown with idle keep-alive connections: a
//! tokio server (same runtime flavour and worker count as lameduck) that
//! answers one `GET /` per connection, holds the connections, and on SIGTERM
//! does nothing but close them all, one task per worker, and exit. No HTTP
//! state, no tracking, no shutdown phases: the kernel's share of the work.
//!
//! Prints `{"message":"serving","listen":"IP:PORT"}` like the other servers.

use std::sync::{Arc, Mutex, PoisonError};

use lameduck_bench::baseline::{TEXT, listen_until_sigterm, replica_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let (mut terminate, listener) = listen_until_sigterm().await?;

    let name = replica_name("close-only");
    let response = Arc::new(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n{name}",
        TEXT.to_str()?,
        name.len()
    ));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepting = {
        let held = Arc::clone(&held);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let held = Arc::clone(&held);
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    if let Ok(stream) = answer_once(stream, &response).await {
                        held.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(stream);
                    }
                });
            }
        })
    };

    terminate.recv().await;
    accepting.abort();
    let streams = std::mem::take(&mut *held.lock().unwrap_or_else(PoisonError::into_inner));
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let per_task = streams.len().div_ceil(workers).max(1);
    let mut streams = streams.into_iter();
    let mut closing = Vec::new();
    loop {
        let chunk: Vec<TcpStream> = streams.by_ref().take(per_task).collect();
        if chunk.is_empty() {
            break;
        }
        closing.push(tokio::spawn(async move { drop(chunk) }));
    }
    for task in closing {
        task.await?;
    }
    Ok(())
}

/// Reads one request head and answers it.
async fn answer_once(mut stream: TcpStream, response: &str) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    let mut head = Vec::with_capacity(128);
    let mut chunk = [0; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    stream.write_all(response.as_bytes()).await?;
    Ok(stream)
}
