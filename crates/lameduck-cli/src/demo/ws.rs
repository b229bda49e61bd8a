//! `GET /ws`: a WebSocket echo. When the server drains it closes with 1001
//! ("going away") and waits for the client's close, so that its client
//! reconnects to another replica; the server holds the shutdown meanwhile,
//! as it does for any upgraded connection.

use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use http::header::{SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tracing::debug;

use super::{DemoBody, text};
use lameduck::Drain;

/// Largest message the echo takes, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Answers a WebSocket handshake: 101 and an echo task, or 400 saying what
/// is wrong with the request.
pub(super) fn accept<B>(request: &mut Request<B>, drain: Option<Drain>) -> Response<DemoBody> {
    let key = match handshake_key(request.version(), request.headers()) {
        Ok(key) => key,
        Err(reason) => {
            let mut response = text(StatusCode::BAD_REQUEST, reason);
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return response;
        }
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot answer the handshake\n",
        );
    };
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(echo(upgrade, drain));
    let mut response = Response::new(DemoBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// The client's `Sec-WebSocket-Key`, if the request is a WebSocket
/// handshake lameduck can answer (RFC 6455 §4.2.1, over HTTP/1.1).
fn handshake_key(version: Version, headers: &HeaderMap) -> Result<String, &'static str> {
    if version != Version::HTTP_11 {
        return Err("a WebSocket handshake needs HTTP/1.1\n");
    }
    if !has_token(headers, &CONNECTION, "upgrade") || !has_token(headers, &UPGRADE, "websocket") {
        return Err(
            "not a WebSocket handshake: needs Connection: upgrade and Upgrade: websocket\n",
        );
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("Sec-WebSocket-Version must be 13\n");
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .and_then(|key| key.to_str().ok())
        .filter(|key| is_key(key))
        .ok_or("Sec-WebSocket-Key must be 16 bytes in base64\n")?;
    Ok(key.to_owned())
}

/// Whether a comma-separated header holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// 16 bytes in base64: 22 characters of the alphabet, then `==`; the last
/// of the 22 carries only 2 bits of data.
fn is_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    bytes.len() == 24
        && bytes[..22].iter().all(alphabet)
        && b"AQgw".contains(&bytes[21])
        && &bytes[22..] == b"=="
}

/// Echoes until the client closes, or until the server drains: then closes
/// with 1001 and waits for the client's close (or for a forced shutdown,
/// which fails the socket).
async fn echo(upgrade: OnUpgrade, drain: Option<Drain>) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            debug!(%error, "WebSocket upgrade failed");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let end = async {
        match &drain {
            Some(drain) => drain.stream_should_end().await,
            None => std::future::pending().await,
        }
    };
    let mut end = std::pin::pin!(end);
    let mut closing = false;
    loop {
        tokio::select! {
            () = &mut end, if !closing => {
                closing = true;
                let away = CloseFrame { code: CloseCode::Away, reason: "going away".into() };
                if ws.close(Some(away)).await.is_err() {
                    break;
                }
            }
            message = ws.next() => match message {
                // After our close, the protocol allows no more data frames.
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) if !closing => {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
                // A close is answered by tungstenite; the stream then ends.
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    debug!(%error, "WebSocket ended with an error");
                    break;
                }
                None => break,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn good() -> Vec<(HeaderName, &'static str)> {
        vec![
            (CONNECTION, "keep-alive, Upgrade"),
            (UPGRADE, "WebSocket"),
            (SEC_WEBSOCKET_VERSION, "13"),
            (SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
        ]
    }

    #[test]
    fn a_valid_handshake_gives_its_key() {
        let key = handshake_key(Version::HTTP_11, &headers(&good())).unwrap();
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        // RFC 6455 §1.3's example.
        assert_eq!(
            derive_accept_key(key.as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn bad_handshakes_are_refused() {
        assert!(handshake_key(Version::HTTP_2, &headers(&good())).is_err());
        for drop in 0..4 {
            let mut pairs = good();
            pairs.remove(drop);
            assert!(handshake_key(Version::HTTP_11, &headers(&pairs)).is_err());
        }
        for (i, bad) in [
            (0, "keep-alive"),
            (1, "h2c"),
            (2, "8"),
            (3, "short=="),
            (3, "dGhlIHNhbXBsZSBub25jZQ"),
            (3, "dGhlIHNhbXBsZSBub25jZR=="),
            (3, "dGhlIHNhbXBsZSBub25j*Q=="),
        ] {
            let mut pairs = good();
            pairs[i].1 = bad;
            assert!(
                handshake_key(Version::HTTP_11, &headers(&pairs)).is_err(),
                "{bad}"
            );
        }
    }
}
