//! The usual way to shut a hyper server down gracefully: hyper-util's
//! `GracefulShutdown` watching every connection, which on SIGTERM asks them
//! all to close (idle ones close at once) and waits for them. Same answer to
//! `GET /`, runtime and `TCP_NODELAY` as the bare server. The benchmark
//! compares lameduck's shutdown with 10,000 idle connections against it.
//!
//! Prints `{"message":"serving","listen":"IP:PORT"}` like the other servers.

use std::convert::Infallible;
use std::io::Write;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    // Before the port is announced, so that SIGTERM cannot kill us first.
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        serde_json::json!({"message": "serving", "listen": listener.local_addr()?.to_string()})
    )?;
    stdout.flush()?;
    drop(stdout);

    let name = Bytes::from(std::env::var("POD_NAME").unwrap_or_else(|_| "graceful-hyper".into()));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = terminate.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let name = name.clone();
        let service = service_fn(move |_request: Request<Incoming>| {
            let mut response = Response::new(Full::new(name.clone()));
            response.headers_mut().insert(CONTENT_TYPE, TEXT);
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
