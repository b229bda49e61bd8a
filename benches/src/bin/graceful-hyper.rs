//! The usual way to shut a hyper server down gracefully: hyper-util's
//! `GracefulShutdown` watching every connection, which on SIGTERM asks them
//! all to close (idle ones close at once) and waits for them. Same answer to
//! `GET /`, runtime and `TCP_NODELAY` as the bare server. The benchmark
//! compares lameduck's shutdown with 10,000 idle connections against it.
//!
//! Prints `{"message":"serving","listen":"IP:PORT"}` like the other servers.

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use lameduck_bench::baseline::{answer, listen_until_sigterm, replica_name};

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let (mut terminate, listener) = listen_until_sigterm().await?;

    let name = Bytes::from(replica_name("graceful-hyper"));
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
        let conn =
            http1::Builder::new().serve_connection(TokioIo::new(stream), answer(name.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
