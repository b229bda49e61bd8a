//! A minimal HTTP/1.1 GET for probes and the Prometheus API (loopback only).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `path_and_query` from `addr` on a fresh connection: status and body.
pub async fn get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, Bytes)> {
    tokio::time::timeout(TIMEOUT, async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = Request::get(path_and_query)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })
    .await
    .with_context(|| format!("GET http://{addr}{path_and_query} timed out"))?
}

/// Just the status of a GET.
pub async fn get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    Ok(get(addr, path).await?.0)
}
