//! The baseline: the smallest hyper 1.x server that gives `GET /` the same
//! answer as lameduck (status, `content-type`, body bytes), on the same runtime
//! (tokio multi-thread, default worker count) with `TCP_NODELAY` like
//! lameduck. No routing, no timers, no tracking, no shutdown: whatever
//! lameduck costs beyond this is what the benchmark measures.
//!
//! `bare-hyper [ADDR]` (default `127.0.0.1:0`) prints one JSON line
//! `{"message":"serving","listen":"IP:PORT"}` on stdout, so that a harness
//! learns the port the same way as from lameduck's logs.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse()?;
    // lameduck answers with POD_NAME; the harness sets it for both servers.
    let name = Bytes::from(std::env::var("POD_NAME").unwrap_or_else(|_| "bare-hyper".into()));
    // Same flavour and worker count as lameduck's `Runtime::new()`.
    tokio::runtime::Runtime::new()?.block_on(serve(addr, name))
}

async fn serve(addr: SocketAddr, name: Bytes) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let listen = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        serde_json::json!({"message": "serving", "listen": listen.to_string()})
    )?;
    stdout.flush()?;
    drop(stdout);
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
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<Incoming>| {
                let mut response = Response::new(Full::new(name.clone()));
                response.headers_mut().insert(CONTENT_TYPE, TEXT);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
