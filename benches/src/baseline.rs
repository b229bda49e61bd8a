//! What the baseline servers (`bare-hyper`, `graceful-hyper`, `close-only`)
//! share, so that they answer exactly alike and announce their port the way
//! lameduck's log does.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// lameduck's `content-type` for `GET /`.
pub const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// Prints `{"message":"serving","listen":"IP:PORT"}` on stdout, as lameduck
/// logs it, so that the harness learns the port the same way.
pub fn announce(listen: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        serde_json::json!({"message": "serving", "listen": listen.to_string()})
    )?;
    stdout.flush()
}

/// For the baselines that shut down on SIGTERM: SIGTERM's stream, then a
/// listener on a free loopback port, announced. In that order, so that a
/// SIGTERM sent once the port is known cannot kill the process first.
pub async fn listen_until_sigterm() -> std::io::Result<(Signal, TcpListener)> {
    let terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?)?;
    Ok((terminate, listener))
}

/// The name `GET /` answers with: `POD_NAME` (the harness sets it for every
/// server), else `default`.
pub fn replica_name(default: &str) -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| default.to_owned())
}

/// A hyper service that answers every request as lameduck answers `GET /`.
pub fn answer(
    name: Bytes,
) -> impl Service<Request<Incoming>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(move |_request: Request<Incoming>| {
        let mut response = Response::new(Full::new(name.clone()));
        response.headers_mut().insert(CONTENT_TYPE, TEXT);
        std::future::ready(Ok(response))
    })
}
