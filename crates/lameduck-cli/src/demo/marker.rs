//! The headers that mark the demo's own answers. `lameduck-replica` names
//! the replica on every response the demo builds, so that a client tells
//! the application's answers from a proxy's 502, 503 or 504.
//! `lameduck-phase` (`draining`, then `closing`) is added once the server's
//! shutdown has begun, so that a client counts the answers a replica gave
//! after its SIGTERM on the server's own account, with no clock involved.
//!
//! Per response this is one or two header inserts: the replica's value is
//! built once (a reference count to clone), and the phase is read from the
//! [`Drain`] the demo holds since construction, not from the request's
//! extensions.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use lameduck::{Drain, Phase};

/// Names the replica that built the response.
pub const REPLICA_HEADER: HeaderName = HeaderName::from_static("lameduck-replica");

/// The shutdown phase the response was built in, once the shutdown has
/// begun: `draining` or `closing` (absent while serving).
pub const PHASE_HEADER: HeaderName = HeaderName::from_static("lameduck-phase");

/// What every response gets.
#[derive(Clone, Debug)]
pub(super) struct Marker {
    replica: HeaderValue,
    drain: Option<Drain>,
}

impl Marker {
    pub(super) fn new(name: &Bytes) -> Self {
        Self {
            replica: header_value(name),
            drain: None,
        }
    }

    pub(super) fn with_drain(mut self, drain: Drain) -> Self {
        self.drain = Some(drain);
        self
    }

    pub(super) fn drain(&self) -> Option<&Drain> {
        self.drain.as_ref()
    }

    /// Marks a response: the replica, and the phase once shutting down.
    pub(super) fn mark(&self, headers: &mut HeaderMap) {
        headers.insert(REPLICA_HEADER, self.replica.clone());
        if let Some(phase) = self.drain.as_ref().and_then(|d| phase_value(d.phase())) {
            headers.insert(PHASE_HEADER, phase);
        }
    }
}

/// The phase header's value: none while serving.
fn phase_value(phase: Phase) -> Option<HeaderValue> {
    match phase {
        Phase::Serving => None,
        Phase::Draining => Some(HeaderValue::from_static("draining")),
        Phase::Closing => Some(HeaderValue::from_static("closing")),
        // No response reaches a client after these; named all the same.
        Phase::Done => Some(HeaderValue::from_static("done")),
        Phase::Forced => Some(HeaderValue::from_static("forced")),
    }
}

/// The name as a header value, sharing its bytes; a byte a header value
/// cannot carry (a control character) becomes `_`.
fn header_value(name: &Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(name.clone()).unwrap_or_else(|_| {
        let cleaned: Vec<u8> = name
            .iter()
            .map(|&b| {
                if b == b'\t' || (b >= 0x20 && b != 0x7f) {
                    b
                } else {
                    b'_'
                }
            })
            .collect();
        HeaderValue::from_bytes(&cleaned).expect("control characters were replaced")
    })
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;

    #[test]
    fn names_the_replica_and_the_phase_once_shutting_down() {
        let (tx, rx) = watch::channel(Phase::Serving);
        let marker = Marker::new(&Bytes::from_static(b"pod-a")).with_drain(Drain::new(rx));
        let marked = || {
            let mut headers = HeaderMap::new();
            marker.mark(&mut headers);
            headers
        };
        let serving = marked();
        assert_eq!(serving[REPLICA_HEADER], "pod-a");
        assert!(!serving.contains_key(PHASE_HEADER));
        for (phase, name) in [(Phase::Draining, "draining"), (Phase::Closing, "closing")] {
            tx.send_replace(phase);
            let headers = marked();
            assert_eq!(headers[PHASE_HEADER], name);
            assert_eq!(headers[REPLICA_HEADER], "pod-a");
        }
    }

    #[test]
    fn without_a_drain_only_the_replica() {
        let marker = Marker::new(&Bytes::from_static(b"pod-b"));
        let mut headers = HeaderMap::new();
        marker.mark(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[REPLICA_HEADER], "pod-b");
    }

    #[test]
    fn control_characters_do_not_make_an_invalid_header() {
        let value = header_value(&Bytes::from_static(b"a\x01b\x7fc\td"));
        assert_eq!(value, "a_b_c\td");
        assert_eq!(
            header_value(&Bytes::from_static("é".as_bytes())).as_bytes(),
            "é".as_bytes()
        );
    }
}
