//! A server for the long-lived clients on 127.0.0.1:0: `GET /events` and
//! `GET /ws` behave as told, well or badly; any other request gets a short
//! `200` and `Connection: close`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What `GET /events` does.
#[derive(Debug, Clone, Copy)]
pub enum Sse {
    /// Two ticks, the `shutdown` event, the end: like a draining lameduck.
    Goodbye,
    /// Ticks until the client goes.
    Forever,
    /// Two ticks, then the end of the body without a `shutdown` event.
    EndWithoutGoodbye,
    /// Two ticks, then a reset.
    Reset,
    /// Answers 503.
    Unavailable,
}

/// What `GET /ws` does.
#[derive(Debug, Clone, Copy)]
pub enum Ws {
    /// Echoes three messages, then closes with this code.
    EchoThenClose(u16),
    /// Echoes until the client closes.
    Forever,
    /// Never echoes.
    Mute,
    /// Echoes two messages, then drops the connection without a close frame.
    EchoThenDrop,
    /// On its first connection, takes one message without echoing it and
    /// closes with 1001 (the message crossed the close); echoes on the
    /// others.
    SwallowThenGoAway,
}

#[derive(Debug)]
pub struct StreamServer {
    pub addr: SocketAddr,
    /// Connections accepted, any path.
    pub connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamServer {
    pub async fn start(sse: Sse, ws: Ws) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let seen = connections.clone();
        let ws_conns = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                let ws_conns = ws_conns.clone();
                tokio::spawn(async move {
                    let Some(path) = peek_path(&stream).await else {
                        return;
                    };
                    if path.starts_with("/events") {
                        events(stream, sse).await;
                    } else if path.starts_with("/ws") {
                        let nth = ws_conns.fetch_add(1, Ordering::SeqCst);
                        echo(stream, ws, nth).await;
                    } else {
                        plain(stream).await;
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

/// The request's path, read without consuming the head (the WebSocket
/// handshake reads it again).
async fn peek_path(stream: &TcpStream) -> Option<String> {
    let mut buf = [0u8; 4096];
    for _ in 0..500 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let head = &buf[..n];
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            let line = std::str::from_utf8(head).ok()?.lines().next()?;
            return line.split(' ').nth(1).map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

async fn plain(mut stream: TcpStream) {
    read_head(&mut stream).await;
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfake")
        .await;
    let _ = stream.shutdown().await;
}

/// A close-delimited event stream, as HTTP/1.1 allows.
async fn events(mut stream: TcpStream, sse: Sse) {
    read_head(&mut stream).await;
    if let Sse::Unavailable = sse {
        let _ = stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for n in 1.. {
        let tick = format!("id: {n}\nevent: tick\ndata: fake {n}\n\n");
        if stream.write_all(tick.as_bytes()).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if n == 2 && !matches!(sse, Sse::Forever) {
            break;
        }
    }
    match sse {
        Sse::Goodbye => {
            let _ = stream.write_all(b"event: shutdown\ndata: fake\n\n").await;
            let _ = stream.shutdown().await;
        }
        Sse::Reset => {
            let std = stream.into_std().unwrap();
            socket2::SockRef::from(&std)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        _ => {
            let _ = stream.shutdown().await;
        }
    }
}

async fn echo(stream: TcpStream, ws: Ws, nth: u64) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut echoed = 0;
    while let Some(Ok(message)) = socket.next().await {
        if !message.is_text() {
            continue;
        }
        match ws {
            Ws::Mute => continue,
            Ws::SwallowThenGoAway if nth == 0 => {
                let _ = socket.close(Some(away(CloseCode::Away))).await;
                break;
            }
            _ => {}
        }
        if socket.send(message).await.is_err() {
            return;
        }
        echoed += 1;
        match ws {
            Ws::EchoThenClose(code) if echoed == 3 => {
                let _ = socket.close(Some(away(CloseCode::from(code)))).await;
                break;
            }
            Ws::EchoThenDrop if echoed == 2 => return,
            _ => {}
        }
    }
    // Waits for the client's answer to our close.
    while let Some(Ok(_)) = socket.next().await {}
}

fn away(code: CloseCode) -> CloseFrame {
    CloseFrame {
        code,
        reason: "test".into(),
    }
}

/// The long-lived clients' books balance: every stream opened ended one way.
pub fn streams_add_up(r: &loadgen::Report) {
    for s in [&r.streams.sse, &r.streams.ws] {
        assert_eq!(s.failed, s.failures.total(), "{s:#?}");
        assert_eq!(
            s.opened,
            s.ended_clean + s.closed_by_client + s.failures.after_open(),
            "{s:#?}"
        );
    }
    assert_eq!(
        r.stream_failures,
        r.streams.sse.failed + r.streams.ws.failed
    );
    // Every failure is located in a second of the timeline.
    let in_timeline = |f: fn(&loadgen::SecondFailures) -> u64| {
        r.timeline.iter().map(|s| f(&s.failures)).sum::<u64>()
    };
    assert_eq!(in_timeline(|f| f.sse), r.streams.sse.failed);
    assert_eq!(in_timeline(|f| f.ws), r.streams.ws.failed);
}
