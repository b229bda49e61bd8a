//! The connection's socket as hyper sees it: replays the bytes read while
//! detecting the protocol, records every read as a sign of life, so that a
//! request whose bytes have started arriving is never mistaken for idleness,
//! hands the socket back instead of shutting it down when the connection is
//! being parked, and, on HTTP/2, holds the client's acknowledgement of the
//! shutdown PING for `idle_grace` (see `frames`). Once upgraded (a
//! WebSocket, say), the socket belongs to the application; a forced shutdown
//! fails its next read or write, and dropping it tells the connection task.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::frames::Frames;
use super::state::ConnState;

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
    /// HTTP/2 only; boxed, so that HTTP/1 connections do not pay for it.
    h2: Option<Box<H2Read>>,
    /// Upgraded connections only: completes when a forced shutdown cuts
    /// the connections.
    severed: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

/// The read side of an HTTP/2 connection.
#[derive(Debug, Default)]
struct H2Read {
    frames: Frames,
    /// Set once the connection was asked to go away: from then on every
    /// byte goes through `frames.filter`.
    filtering: bool,
    /// Bytes to hand on before reading more.
    out: Vec<u8>,
    out_pos: usize,
    /// Until when a held acknowledgement is held.
    release_at: Option<Pin<Box<Sleep>>>,
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
            h2: None,
            severed: None,
        }
    }

    /// The same for an HTTP/2 connection: `prefix` is (the start of) its preface.
    pub(crate) fn http2(stream: TcpStream, prefix: &[u8], conn: Arc<ConnState>) -> Self {
        let mut io = Self::new(stream, prefix, conn);
        io.h2 = Some(Box::default());
        io
    }
}

impl ActivityIo {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match &mut self.stream {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// An upgraded socket, once a forced shutdown cut the connections: closed,
    /// and every call fails from then on. Polled on every call, so that the
    /// cut wakes an application task waiting on the socket.
    #[inline]
    fn poll_severed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.conn.upgraded() {
            return Ok(());
        }
        self.poll_severed_upgraded(cx)
    }

    fn poll_severed_upgraded(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let severed = self
            .severed
            .get_or_insert_with(|| Box::pin(self.conn.cut.clone().cancelled_owned()));
        if severed.as_mut().poll(cx).is_ready() {
            self.stream = None;
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        Ok(())
    }
}

impl Drop for ActivityIo {
    fn drop(&mut self) {
        if self.conn.upgraded() {
            self.conn.upgrade_closed.notify_one();
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
        this.poll_severed(cx)?;
        if this.h2.is_some() {
            this.poll_read_h2(cx, buf)
        } else {
            this.poll_read_raw(cx, buf)
        }
    }
}

impl ActivityIo {
    fn poll_read_h2(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let grace = self.conn.shared.config.idle_grace;
        loop {
            let Some(h2) = self.h2.as_deref_mut() else {
                return self.poll_read_raw(cx, buf);
            };
            if h2.out_pos < h2.out.len() {
                let n = buf.remaining().min(h2.out.len() - h2.out_pos);
                buf.put_slice(&h2.out[h2.out_pos..h2.out_pos + n]);
                h2.out_pos += n;
                if h2.out_pos == h2.out.len() {
                    h2.out.clear();
                    h2.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if !h2.filtering && self.conn.going_away() && !grace.is_zero() {
                h2.frames.arm();
                h2.filtering = true;
            }
            if h2.frames.holding() {
                let release = h2.release_at.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(grace.min(crate::config::LONGEST)))
                });
                // Polled before reading, so that the timer wakes the task
                // when the socket has nothing more to say.
                if release.as_mut().poll(cx).is_ready()
                    && let Some(ack) = h2.frames.release()
                {
                    h2.out = ack;
                    continue;
                }
            }
            let filtering = h2.filtering;
            let before = buf.filled().len();
            ready!(self.poll_read_raw(cx, buf))?;
            let Some(h2) = self.h2.as_deref_mut() else {
                return Poll::Ready(Ok(()));
            };
            let read = &buf.filled()[before..];
            if read.is_empty() {
                // End of stream: a held acknowledgement no longer matters.
                return Poll::Ready(Ok(()));
            }
            if !filtering {
                h2.frames.observe(read);
                return Poll::Ready(Ok(()));
            }
            h2.frames.filter(read, &mut h2.out);
            buf.set_filled(before);
            // Loop: hand on what passed, or read again if all was held.
        }
    }

    fn poll_read_raw(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self;
        if this.prefix_start < this.prefix_end {
            let n = buf.remaining().min(this.prefix_end - this.prefix_start);
            buf.put_slice(&this.prefix[this.prefix_start..this.prefix_start + n]);
            this.prefix_start += n;
            // The rest of the first request is usually in the socket already;
            // hand it over in the same read. Split over two reads, hyper's
            // read buffer grows from 8 to 16 KiB and stays so for the life of
            // the connection. An error or nothing ready is left for the next
            // read.
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
        let this = self.get_mut();
        this.poll_severed(cx)?;
        this.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.poll_severed(cx)?;
        this.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_severed(cx)?;
        this.stream()?.poll_flush(cx)
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
    use crate::context::ServerContext;
    use crate::metrics::Metrics;
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

        let lifecycle = Arc::default();
        let metrics = Metrics::new(prometheus::Registry::new(), Arc::clone(&lifecycle)).unwrap();
        let shared = Arc::new(ServerContext::new(
            crate::Config::default(),
            metrics,
            lifecycle,
        ));
        let state = ConnState::new(shared, tokio_util::sync::CancellationToken::new());
        let mut io = ActivityIo::new(server, &prefix, Arc::new(state));
        let mut buf = vec![0; 8192];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], request);
    }
}
