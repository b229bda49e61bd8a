//! A minimal stand-in for lameduck's application routes, to measure the load
//! generator against: `GET /` answers NAME, `POST /` echoes its body, `GET
//! /work?ms=N` answers after N ms, over HTTP/1.1 or HTTP/2 with prior
//! knowledge (h2c), told apart by the connection preface.
//!
//! `cargo run --release -p loadgen --example target_server -- ADDR NAME`
//!
//! The port is bound with SO_REUSEPORT, so several processes can share it and
//! the kernel spreads connections over them, like a Service over replicas.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("ADDR is ip:port");
    let name: &'static str = args.next().unwrap_or_else(|| "target".into()).leak();

    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    eprintln!("{name} listening on {}", listener.local_addr()?);

    let builder: &'static auto::Builder<TokioExecutor> =
        Box::leak(Box::new(auto::Builder::new(TokioExecutor::new())));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| answer(name, req));
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/" if req.method() == hyper::Method::POST => {
            match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(body) => (StatusCode::OK, body.to_bytes()),
                Err(_) => (StatusCode::BAD_REQUEST, Bytes::from_static(b"bad body\n")),
            }
        }
        "/" => (StatusCode::OK, Bytes::from_static(name.as_bytes())),
        "/work" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|n| n.parse::<u64>().ok());
            match ms {
                Some(ms) if ms <= 60_000 => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    (StatusCode::OK, Bytes::from_static(b"done\n"))
                }
                _ => (StatusCode::BAD_REQUEST, Bytes::from_static(b"bad ms\n")),
            }
        }
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    Ok(res)
}
