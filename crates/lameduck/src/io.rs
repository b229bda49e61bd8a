//! The connection's socket as hyper sees it: replays the bytes read while
//! detecting the protocol, records every read as a sign of life, so that a
//! request whose bytes have started arriving is never mistaken for idleness,
//! and hands the socket back instead of shutting it down when the connection
//! is being parked.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::track::ConnState;

/// Length of the HTTP/2 connection preface, the most read before serving.
pub(crate) const PREFIX_CAPACITY: usize = 24;

#[derive(Debug)]
pub(crate) struct ActivityIo {
    /// `None` once handed back for parking.
    stream: Option<TcpStream>,
    prefix: [u8; PREFIX_CAPACITY],
    prefix_start: usize,
    prefix_end: usize,
    conn: Arc<ConnState>,
}

impl ActivityIo {
    /// `prefix` holds bytes already read from `stream`; they are read again first.
    pub(crate) fn new(stream: TcpStream, prefix: &[u8], conn: Arc<ConnState>) -> Self {
        let mut buf = [0; PREFIX_CAPACITY];
        buf[..prefix.len()].copy_from_slice(prefix);
        Self {
            stream: Some(stream),
            prefix: buf,
            prefix_start: 0,
            prefix_end: prefix.len(),
            conn,
        }
    }
}

impl ActivityIo {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match &mut self.stream {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix_start < this.prefix_end {
            let n = buf.remaining().min(this.prefix_end - this.prefix_start);
            buf.put_slice(&this.prefix[this.prefix_start..this.prefix_start + n]);
            this.prefix_start += n;
            // Internal: the rest of the first request is usually in the socket
            // already; hand it over in the same read. Split over two reads,
            // hyper's read buffer grows from 8 to 16 KiB and stays so for the
            // life of the connection. An error or nothing ready is left for
            // the next read.
            if let (true, Some(stream)) = (
                this.prefix_start == this.prefix_end && buf.remaining() > 0,
                &mut this.stream,
            ) {
                let before = buf.filled().len();
                if let Poll::Ready(Ok(())) = Pin::new(stream).poll_read(cx, buf)
                    && buf.filled().len() > before
                {
                    this.conn.touch();
                }
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(this.stream()?.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.conn.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.parking() {
            // hyper closes an idle connection: keep the socket open instead,
            // for the connection task to wait on without hyper's buffers.
            if let Some(stream) = this.stream.take() {
                this.conn.keep_parked(stream);
            }
            return Poll::Ready(Ok(()));
        }
        this.stream()?.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::server::Shared;
    use crate::shutdown::ShutdownClock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn the_prefix_and_what_follows_arrive_in_one_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let request = b"GET / HTTP/1.1\r\nhost: example\r\n\r\n";
        client.write_all(request).await.unwrap();
        let mut prefix = [0; PREFIX_CAPACITY];
        server.read_exact(&mut prefix).await.unwrap();

        let clock = Arc::new(ShutdownClock::default());
        let metrics = Metrics::new(prometheus::Registry::new(), Arc::clone(&clock)).unwrap();
        let shared = Arc::new(Shared::new(crate::Config::default(), metrics, clock));
        let mut io = ActivityIo::new(server, &prefix, Arc::new(ConnState::new(shared)));
        let mut buf = vec![0; 8192];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], request);
    }
}
