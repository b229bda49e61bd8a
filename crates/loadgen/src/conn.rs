//! One HTTP/1.1 client connection on hyper's low-level API.
//!
//! The pooled client of hyper-util retries requests it believes were not
//! sent; here every connection is owned explicitly, so a request handed to a
//! connection is either answered or counted as failed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::echo::EchoCheck;
use crate::mix::{Plan, Route};
use crate::outcome::{self, Marks, Outcome, Phase, Response};
use crate::stats::Recorder;

/// The content type of a `POST` body.
pub(crate) const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Body bytes kept per response: enough for a replica name or an error page.
const KEPT_BODY: usize = 512;

/// A connection and the task that drives it; dropping it closes the socket.
#[derive(Debug)]
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
    /// It has carried a request already.
    pub(crate) used: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a TCP connection and starts HTTP/1.1 on it.
pub(crate) async fn connect(addr: SocketAddr, recorder: &Recorder) -> Result<Conn, Outcome> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| outcome::connect_failure(&e))?;
    recorder.connection_opened();
    // Requests are single small writes; do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| outcome::exchange_failure(&e))?;
    let task = tokio::spawn(async move {
        // Its errors reach the pending request; nothing else to do with them.
        let _ = conn.await;
    });
    Ok(Conn {
        sender,
        task,
        used: false,
    })
}

/// The request `plan` says (a `GET`, or a `POST` with its body; hyper adds
/// the `content-length`); `close` asks the server to close after answering.
pub(crate) fn request(plan: &Plan, host: &HeaderValue, close: bool) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(plan.body.clone()));
    *req.uri_mut() = plan.uri.clone();
    let headers = req.headers_mut();
    headers.insert(HOST, host.clone());
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if plan.route == Route::Echo {
        *req.method_mut() = Method::POST;
        req.headers_mut().insert(CONTENT_TYPE, OCTETS);
    }
    req
}

/// The body a request's answer must echo: a `POST`'s own.
pub(crate) fn echo_of(plan: &Plan) -> Option<EchoCheck<'_>> {
    (plan.route == Route::Echo).then(|| EchoCheck::new(&plan.body))
}

impl Conn {
    /// Whether a request can be handed to this connection now. False when the
    /// server has closed it since the last response; nothing is sent then.
    pub(crate) async fn is_usable(&mut self) -> bool {
        !self.sender.is_closed() && self.sender.ready().await.is_ok()
    }

    /// Sends `req` and reads the whole response, checking it against `echo`
    /// if given.
    pub(crate) async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
        mut echo: Option<EchoCheck<'_>>,
        phase: &mut Phase,
    ) -> Outcome {
        self.used = true;
        *phase = Phase::AwaitingResponse;
        let resp = match self.sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => return outcome::exchange_failure(&e),
        };
        *phase = Phase::ReadingBody;
        let (mut parts, mut body) = resp.into_parts();
        let mut kept = Bytes::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if let Some(echo) = &mut echo {
                            echo.feed(&data);
                        }
                        keep(&mut kept, data);
                    }
                }
                Err(e) => return outcome::exchange_failure(&e),
            }
        }
        Outcome::Response(Response {
            status: parts.status,
            close: outcome::has_close(&parts.headers),
            body: kept,
            resent: false,
            wrong_echo: echo.and_then(EchoCheck::finish),
            marks: Marks::take(&mut parts.headers),
        })
    }

    /// Waits up to `within` for the server to close the connection, so that
    /// the server, which closes first after `Connection: close`, keeps the
    /// TIME_WAIT state and this side's ephemeral ports are not used up.
    pub(crate) async fn wait_closed(mut self, within: Duration) {
        let _ = tokio::time::timeout(within, &mut self.task).await;
    }
}

/// Keeps the first [`KEPT_BODY`] bytes; the usual single chunk is not copied.
pub(crate) fn keep(kept: &mut Bytes, data: Bytes) {
    if kept.is_empty() {
        *kept = data.slice(..data.len().min(KEPT_BODY));
    } else if kept.len() < KEPT_BODY {
        let take = (KEPT_BODY - kept.len()).min(data.len());
        let mut joined = BytesMut::with_capacity(kept.len() + take);
        joined.extend_from_slice(kept);
        joined.extend_from_slice(&data[..take]);
        *kept = joined.freeze();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_bounded_prefix() {
        let mut kept = Bytes::new();
        keep(&mut kept, Bytes::from_static(b"pod-"));
        keep(&mut kept, Bytes::from_static(b"a"));
        assert_eq!(&kept[..], b"pod-a");
        keep(&mut kept, Bytes::from(vec![b'x'; 2 * KEPT_BODY]));
        assert_eq!(kept.len(), KEPT_BODY);
        keep(&mut kept, Bytes::from_static(b"more"));
        assert_eq!(kept.len(), KEPT_BODY);
    }

    fn plan(route: Route, uri: &'static str, body: &'static [u8]) -> Plan {
        Plan {
            route,
            mode: crate::mix::Mode::Keepalive,
            uri: http::Uri::from_static(uri),
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn builds_requests() {
        let host = HeaderValue::from_static("svc:80");
        let req = request(&plan(Route::Work, "/work?ms=5", b""), &host, true);
        assert_eq!(req.uri(), "/work?ms=5");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.headers()[HOST], "svc:80");
        assert_eq!(req.headers()[CONNECTION], "close");
        let req = request(&plan(Route::Root, "/", b""), &host, false);
        assert!(!req.headers().contains_key(CONNECTION));
        assert!(!req.headers().contains_key(CONTENT_TYPE));
        let post = plan(Route::Echo, "/", b"body");
        let req = request(&post, &host, false);
        assert_eq!((req.method(), req.uri().path()), (&Method::POST, "/"));
        assert_eq!(req.headers()[CONTENT_TYPE], "application/octet-stream");
        assert_eq!(hyper::body::Body::size_hint(req.body()).exact(), Some(4));
        assert!(echo_of(&post).is_some());
        assert!(echo_of(&plan(Route::Root, "/", b"")).is_none());
    }
}
