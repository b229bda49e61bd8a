//! A WebSocket echo client: `GET /ws`, one numbered text message per
//! interval, each of which must come back, in order, until the server closes
//! with 1000 or 1001.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};
use tokio_util::sync::CancellationToken;

use super::end::{End, before_open, next_stream};
use super::ledger::StreamKind;
use crate::context::RunContext;
use crate::outcome;
use crate::report::StreamFailure;

/// How long the closing handshake may take once the client closes.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What a client carries from one stream to the next.
#[derive(Debug, Default)]
struct Client {
    /// The next message's number.
    next: u64,
    /// Messages the server had not echoed when it closed cleanly; they go
    /// out first on the next stream.
    resend: VecDeque<u64>,
}

/// One client: a stream after another until the run ends.
pub(super) async fn client(shared: Arc<RunContext>, stop: CancellationToken) {
    let mut client = Client::default();
    loop {
        let end = tokio::select! {
            biased;
            () = shared.abort.cancelled() => End::ByClient,
            end = client.stream(&shared, &stop) => end,
        };
        if !next_stream(&shared, StreamKind::Ws, end, &stop).await {
            return;
        }
    }
}

impl Client {
    /// Opens one stream and echoes on it until it ends.
    async fn stream(&mut self, shared: &RunContext, stop: &CancellationToken) -> End {
        let ws = match timeout(shared.config.timeout, open(shared)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(end)) => return end,
            Err(_) => {
                let msg = format!("no handshake within {:?}", shared.config.timeout);
                return End::failed(StreamFailure::Handshake, msg);
            }
        };
        shared.streams.opened(StreamKind::Ws);
        self.echo(shared, ws, stop).await
    }

    async fn echo(
        &mut self,
        shared: &RunContext,
        mut ws: WebSocketStream<TcpStream>,
        stop: &CancellationToken,
    ) -> End {
        let config = &shared.config;
        let mut ticks = tokio::time::interval(config.stream_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Sent and not yet echoed, oldest first, with when they were sent.
        let mut waiting: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut closing = false;
        loop {
            let deadline = waiting.front().map(|&(_, at)| at + config.timeout);
            tokio::select! {
                biased;
                () = stop.cancelled(), if !closing => {
                    closing = true;
                    if waiting.is_empty() {
                        return close(ws).await;
                    }
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let expected = waiting.pop_front().map(|(n, _)| n);
                        if expected.map(|n| n.to_string()).as_deref() != Some(text.as_str()) {
                            let msg = format!("echo {:?} while waiting for {expected:?}", text.as_str());
                            return End::failed(StreamFailure::Malformed, msg);
                        }
                        shared.streams.message_echoed();
                        if closing && waiting.is_empty() {
                            return close(ws).await;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return self.closed(shared, ws, frame, waiting, closing).await,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return failed(&e),
                    None => return End::failed(StreamFailure::Truncated, "the connection ended without a close frame"),
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let n = waiting.front().map_or(0, |&(n, _)| n);
                    let msg = format!("message {n} not echoed within {:?}", config.timeout);
                    return End::failed(StreamFailure::Unechoed, msg);
                }
                _ = ticks.tick(), if !closing => {
                    let n = self.resend.pop_front().unwrap_or_else(|| {
                        self.next += 1;
                        self.next
                    });
                    waiting.push_back((n, Instant::now()));
                    shared.streams.message_sent();
                    if let Err(e) = ws.send(Message::text(n.to_string())).await {
                        return failed(&e);
                    }
                }
            }
        }
    }

    /// The server's close frame: 1000 and 1001 end the stream cleanly, and
    /// what it had not echoed is sent again on the next stream.
    async fn closed(
        &mut self,
        shared: &RunContext,
        ws: WebSocketStream<TcpStream>,
        frame: Option<CloseFrame>,
        waiting: VecDeque<(u64, Instant)>,
        closing: bool,
    ) -> End {
        // tungstenite answers the close; reading on sends the answer.
        finish(ws).await;
        let code = frame.as_ref().map(|f| f.code);
        if !matches!(code, Some(CloseCode::Normal | CloseCode::Away)) {
            let msg = match &frame {
                Some(f) => format!("closed with {} {:?}", u16::from(f.code), f.reason.as_str()),
                None => "closed without a code".to_owned(),
            };
            return End::failed(StreamFailure::CloseCode, msg);
        }
        if closing {
            // Both sides closed at once; the run is over.
            return End::ByClient;
        }
        shared.streams.resent_after_close(waiting.len());
        // Oldest first, ahead of any left from an earlier close.
        for (n, _) in waiting.into_iter().rev() {
            self.resend.push_front(n);
        }
        End::Clean
    }
}

/// Connects and shakes hands.
async fn open(shared: &RunContext) -> Result<WebSocketStream<TcpStream>, End> {
    let tcp = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| before_open(outcome::connect_failure(&e)))?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://{}/ws", shared.config.target);
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((ws, _response)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let msg = format!("GET /ws: {}", response.status());
            Err(End::failed(StreamFailure::Status, msg))
        }
        Err(e) => {
            let msg = format!("WebSocket handshake: {}", outcome::chain(&e));
            Err(End::failed(StreamFailure::Handshake, msg))
        }
    }
}

/// The run is over: close with 1000 and wait for the server's answer.
async fn close(mut ws: WebSocketStream<TcpStream>) -> End {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "load run over".into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        finish(ws).await;
    }
    End::ByClient
}

/// Reads until the closing handshake completes (or briefly gives up).
async fn finish(mut ws: WebSocketStream<TcpStream>) {
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// An error on an open stream, by cause.
fn failed(err: &WsError) -> End {
    let cause = match err {
        WsError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => StreamFailure::Truncated,
        WsError::Io(_) => StreamFailure::Reset,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => StreamFailure::Truncated,
        _ => StreamFailure::Malformed,
    };
    End::failed(cause, outcome::chain(err))
}
