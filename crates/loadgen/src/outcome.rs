//! How one request ended, and the rules that classify errors.
//!
//! The rules are deliberately strict: once a request has been handed to a
//! connection, anything but a complete response is a failure, whether or not
//! the bytes reached the server. Nothing is retried, with one exception that
//! is reported as such: an HTTP/2 stream the server declares unprocessed
//! (RFC 9113 §8.7) is resent once, and counted as [`Kind::RefusedResent`].

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

/// The header with which lameduck's demo names the replica on every
/// response it builds: a response without it came from something in between
/// (a proxy's 502, 503 or 504), or from another server.
pub const REPLICA_HEADER: &str = "lameduck-replica";

/// The header lameduck's demo adds once the replica's shutdown has begun
/// (`draining`, then `closing`): the answer came after its SIGTERM.
pub const PHASE_HEADER: &str = "lameduck-phase";

const REPLICA: HeaderName = HeaderName::from_static(REPLICA_HEADER);
const PHASE: HeaderName = HeaderName::from_static(PHASE_HEADER);

/// Outcome kinds, as named in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A 2xx response.
    Ok,
    /// A complete response with another status.
    Status,
    /// The TCP connect was refused.
    ConnectRefused,
    /// The TCP connect failed otherwise.
    ConnectError,
    /// The connection was reset or closed before a complete response.
    Reset,
    /// The whole request took longer than the configured timeout.
    Timeout,
    /// Anything else, e.g. a malformed response.
    Other,
    /// Cut off by the load generator itself when its drain time ran out;
    /// says nothing about the server but is reported, never hidden.
    Aborted,
    /// HTTP/2 only: the server refused the stream unprocessed (a GOAWAY whose
    /// last-stream-id is below it, or RST_STREAM with REFUSED_STREAM), the
    /// request was resent once and the resend got a 2xx response. Neither ok
    /// nor a failure.
    RefusedResent,
    /// A `POST /` answered with a 2xx whose body is not the body sent.
    WrongEcho,
}

impl Kind {
    /// Whether this kind counts as a failed request.
    pub fn is_failure(self) -> bool {
        !matches!(self, Kind::Ok | Kind::Aborted | Kind::RefusedResent)
    }
}

/// What the exchange was doing, for timeout messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    AwaitingResponse,
    ReadingBody,
}

/// A complete response, reduced to what is accounted.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    /// The server asked to close the connection.
    pub(crate) close: bool,
    /// The start of the body (enough for a replica name or an error page).
    pub(crate) body: Bytes,
    /// An HTTP/2 request refused unprocessed and resent: this is the
    /// resend's response.
    pub(crate) resent: bool,
    /// For a `POST /`: how the body that came back differs from the one
    /// sent.
    pub(crate) wrong_echo: Option<String>,
    /// What the application's headers said.
    pub(crate) marks: Marks,
}

/// What a response says of who answered it, and when.
#[derive(Debug, Clone, Default)]
pub(crate) struct Marks {
    /// `lameduck-replica`: the application answered, as this replica.
    pub(crate) replica: Option<HeaderValue>,
    /// `lameduck-phase` was there: answered after the replica's shutdown
    /// began.
    pub(crate) in_shutdown: bool,
}

impl Marks {
    /// Takes the marks out of a response's headers (the value is moved, not
    /// copied).
    pub(crate) fn take(headers: &mut HeaderMap) -> Self {
        Self {
            replica: headers.remove(REPLICA),
            in_shutdown: headers.contains_key(PHASE),
        }
    }
}

/// Who produced a response that is not a 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// It carried `lameduck-replica`: the application's own answer.
    Application,
    /// It did not: a proxy or something else in between, or a server that
    /// does not mark its answers.
    NoMarker,
}

/// How one request ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Response(Response),
    Failed { kind: Kind, message: String },
}

impl Outcome {
    pub(crate) fn failed(kind: Kind, message: impl Into<String>) -> Self {
        Outcome::Failed {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Outcome::Response(r) if r.status.is_success() && r.wrong_echo.is_some() => {
                Kind::WrongEcho
            }
            Outcome::Response(r) if r.status.is_success() && r.resent => Kind::RefusedResent,
            Outcome::Response(r) if r.status.is_success() => Kind::Ok,
            Outcome::Response(_) => Kind::Status,
            Outcome::Failed { kind, .. } => *kind,
        }
    }

    /// Whether the connection that carried this request may carry another.
    pub(crate) fn keeps_connection(&self) -> bool {
        matches!(self, Outcome::Response(r) if !r.close)
    }
}

/// Classifies a failed TCP connect.
pub(crate) fn connect_failure(err: &io::Error) -> Outcome {
    let kind = if err.kind() == io::ErrorKind::ConnectionRefused {
        Kind::ConnectRefused
    } else {
        Kind::ConnectError
    };
    Outcome::failed(kind, format!("connect: {}", chain(err)))
}

/// Classifies an error from sending a request or reading its response.
pub(crate) fn exchange_failure(err: &hyper::Error) -> Outcome {
    let kind = if err.is_parse() || err.is_parse_status() || err.is_user() {
        Kind::Other
    } else if err.is_incomplete_message()
        || err.is_canceled()
        || err.is_closed()
        || has_io_source(err)
    {
        Kind::Reset
    } else {
        Kind::Other
    };
    Outcome::failed(kind, chain(err))
}

/// The outcome of a request that ran out of time.
pub(crate) fn timeout_failure(timeout: Duration, phase: Phase) -> Outcome {
    Outcome::failed(Kind::Timeout, timeout_message(timeout, phase, None))
}

/// Says what a request that ran out of time was doing, and on which HTTP/2
/// stream if it had one.
pub(crate) fn timeout_message(timeout: Duration, phase: Phase, stream: Option<u32>) -> String {
    let doing = match phase {
        Phase::Connecting => "connecting",
        Phase::AwaitingResponse => "waiting for the response head",
        Phase::ReadingBody => "reading the response body",
    };
    match stream {
        Some(id) => {
            format!(
                "no complete response within {timeout:?} (timed out while {doing} of stream {id})"
            )
        }
        None => format!("no complete response within {timeout:?} (timed out while {doing})"),
    }
}

/// The outcome of a request cut off at the end of the drain.
pub(crate) fn aborted() -> Outcome {
    Outcome::failed(
        Kind::Aborted,
        "aborted by the load generator: still in flight when its drain time ran out",
    )
}

/// Whether the response asks to close the connection.
pub(crate) fn has_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    })
}

/// An error and its causes, joined by `: `.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut msg = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Some wrappers repeat their source's text.
        if !msg.ends_with(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = e.source();
    }
    msg
}

/// An I/O error below a hyper error means the connection itself broke.
fn has_io_source(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = err.source();
    while let Some(e) = cur {
        if e.is::<io::Error>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, close: bool) -> Outcome {
        Outcome::Response(Response {
            status: StatusCode::from_u16(status).unwrap(),
            close,
            body: Bytes::new(),
            resent: false,
            wrong_echo: None,
            marks: Marks::default(),
        })
    }

    #[test]
    fn kinds_of_responses() {
        assert_eq!(response(200, false).kind(), Kind::Ok);
        assert_eq!(response(204, false).kind(), Kind::Ok);
        assert_eq!(response(302, false).kind(), Kind::Status);
        assert_eq!(response(503, false).kind(), Kind::Status);
        assert!(response(200, false).keeps_connection());
        assert!(!response(200, true).keeps_connection());
        assert!(!Outcome::failed(Kind::Reset, "x").keeps_connection());
        let resent = |status| {
            Outcome::Response(Response {
                status: StatusCode::from_u16(status).unwrap(),
                close: false,
                body: Bytes::new(),
                resent: true,
                wrong_echo: None,
                marks: Marks::default(),
            })
        };
        assert_eq!(resent(200).kind(), Kind::RefusedResent);
        // A resend answered with an error status is that failure.
        assert_eq!(resent(503).kind(), Kind::Status);
        let echo = |status, resent| {
            Outcome::Response(Response {
                status: StatusCode::from_u16(status).unwrap(),
                close: false,
                body: Bytes::new(),
                resent,
                wrong_echo: Some("differs".into()),
                marks: Marks::default(),
            })
        };
        assert_eq!(echo(200, false).kind(), Kind::WrongEcho);
        assert_eq!(echo(200, true).kind(), Kind::WrongEcho);
        // An error status is the failure, whatever its body.
        assert_eq!(echo(502, false).kind(), Kind::Status);
    }

    #[test]
    fn failure_kinds() {
        assert!(!Kind::Ok.is_failure());
        assert!(!Kind::Aborted.is_failure());
        assert!(!Kind::RefusedResent.is_failure());
        for k in [
            Kind::WrongEcho,
            Kind::Status,
            Kind::ConnectRefused,
            Kind::ConnectError,
            Kind::Reset,
            Kind::Timeout,
            Kind::Other,
        ] {
            assert!(k.is_failure(), "{k:?}");
        }
    }

    #[test]
    fn connect_errors() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_failure(&refused).kind(), Kind::ConnectRefused);
        let unreachable = io::Error::other("no route to host");
        let out = connect_failure(&unreachable);
        assert_eq!(out.kind(), Kind::ConnectError);
        let Outcome::Failed { message, .. } = out else {
            panic!()
        };
        assert_eq!(message, "connect: no route to host");
    }

    #[test]
    fn timeout_names_the_phase() {
        let out = timeout_failure(Duration::from_millis(250), Phase::Connecting);
        assert_eq!(out.kind(), Kind::Timeout);
        let Outcome::Failed { message, .. } = out else {
            panic!()
        };
        assert!(
            message.contains("250ms") && message.contains("connecting"),
            "{message}"
        );
    }

    #[test]
    fn marks_are_taken_from_the_headers() {
        let mut h = HeaderMap::new();
        assert!(Marks::take(&mut h).replica.is_none());
        h.insert("lameduck-replica", HeaderValue::from_static("pod-a"));
        assert!(!Marks::take(&mut h).in_shutdown);
        h.insert("lameduck-replica", HeaderValue::from_static("pod-a"));
        h.insert("Lameduck-Phase", HeaderValue::from_static("draining"));
        let marks = Marks::take(&mut h);
        assert_eq!(marks.replica.unwrap(), "pod-a");
        assert!(marks.in_shutdown);
        assert!(!h.contains_key(REPLICA_HEADER), "moved out");
    }

    #[test]
    fn connection_close_tokens() {
        let mut h = HeaderMap::new();
        assert!(!has_close(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!has_close(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, CLOSE"),
        );
        assert!(has_close(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("closed"));
        assert!(!has_close(&h));
        h.append(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(has_close(&h));
    }

    #[test]
    fn chains_causes() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(io::Error::other("connection reset by peer"));
        assert_eq!(chain(&e), "request failed: connection reset by peer");
        assert!(has_io_source(&e));
        assert!(!has_io_source(&io::Error::other("x")));
    }
}
