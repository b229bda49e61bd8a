//! The long-lived clients' books: a few counter bumps per event or message,
//! under a mutex of their own so that they never wait on the requests'.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::report::{StreamErrorSample, StreamFailure, StreamReport, Streams};

/// Replica names longer than this are cut (a Kubernetes name has at most 253).
const MAX_NAME: usize = 253;

/// Which kind of client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Sse,
    Ws,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    error_cap: usize,
    inner: Mutex<Books>,
}

#[derive(Debug, Default)]
struct Books {
    streams: Streams,
    open: u64,
    /// The start of the run's timeline.
    start: Option<Instant>,
    /// Failures per second of the run: `[sse, ws]`.
    per_second: Vec<[u64; 2]>,
}

impl Ledger {
    pub(crate) fn new(config: &Config) -> Self {
        let mut books = Books::default();
        books.streams.sse.clients = config.sse_clients as u64;
        books.streams.ws.clients = config.ws_clients as u64;
        Self {
            error_cap: config.error_samples,
            inner: Mutex::new(books),
        }
    }

    /// Counts failures in seconds from `start`, the timeline's.
    pub(crate) fn begin(&self, start: Instant) {
        self.lock().start = Some(start);
    }

    fn with<T>(&self, kind: StreamKind, f: impl FnOnce(&mut StreamReport, &mut u64) -> T) -> T {
        let mut books = self.lock();
        let Books { streams, open, .. } = &mut *books;
        let report = match kind {
            StreamKind::Sse => &mut streams.sse,
            StreamKind::Ws => &mut streams.ws,
        };
        f(report, open)
    }

    fn lock(&self) -> MutexGuard<'_, Books> {
        // Counters stay consistent even if a holder panicked mid-update.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn opened(&self, kind: StreamKind) {
        self.with(kind, |r, open| {
            r.opened += 1;
            *open += 1;
        });
    }

    /// The replica that serves an SSE stream, named by its first event.
    pub(crate) fn served_by(&self, kind: StreamKind, replica: &str) {
        let name = cut(replica);
        self.with(kind, |r, _| match r.served_by.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                r.served_by.insert(name.to_owned(), 1);
            }
        });
    }

    pub(crate) fn ended_clean(&self, kind: StreamKind) {
        self.with(kind, |r, open| {
            r.ended_clean += 1;
            *open -= 1;
        });
    }

    pub(crate) fn closed_by_client(&self, kind: StreamKind) {
        self.with(kind, |r, open| {
            r.closed_by_client += 1;
            *open -= 1;
        });
    }

    pub(crate) fn reconnect(&self, kind: StreamKind) {
        self.with(kind, |r, _| r.reconnects += 1);
    }

    pub(crate) fn failed(&self, kind: StreamKind, cause: StreamFailure, message: String) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.in_second(kind, Instant::now());
        let cap = self.error_cap;
        self.with(kind, |r, open| {
            r.failures.add(cause);
            r.failed += 1;
            if is_after_open(cause) {
                *open -= 1;
            }
            if r.errors.len() < cap {
                r.errors.push(StreamErrorSample {
                    at_unix_ms,
                    cause,
                    message,
                });
            }
        });
    }

    /// Counts a failure in the second of the run it happened in.
    fn in_second(&self, kind: StreamKind, now: Instant) {
        let mut books = self.lock();
        let Some(start) = books.start else { return };
        let idx = now.saturating_duration_since(start).as_secs() as usize;
        if books.per_second.len() <= idx {
            books.per_second.resize(idx + 1, [0, 0]);
        }
        books.per_second[idx][match kind {
            StreamKind::Sse => 0,
            StreamKind::Ws => 1,
        }] += 1;
    }

    /// Failures per second of the run, `[sse, ws]`.
    pub(crate) fn failures_per_second(&self) -> Vec<[u64; 2]> {
        self.lock().per_second.clone()
    }

    pub(crate) fn event(&self) {
        self.with(StreamKind::Sse, |r, _| r.events += 1);
    }

    pub(crate) fn message_sent(&self) {
        self.with(StreamKind::Ws, |r, _| r.messages_sent += 1);
    }

    pub(crate) fn message_echoed(&self) {
        self.with(StreamKind::Ws, |r, _| r.messages_echoed += 1);
    }

    pub(crate) fn resent_after_close(&self, n: usize) {
        self.with(StreamKind::Ws, |r, _| r.resent_after_close += n as u64);
    }

    /// Streams open now, and failures so far (both kinds).
    pub(crate) fn progress(&self) -> (u64, u64) {
        let books = self.lock();
        (books.open, books.streams.failed())
    }

    pub(crate) fn report(&self) -> Streams {
        self.lock().streams.clone()
    }
}

/// Whether a failure ends an open stream (rather than an attempt to open
/// one): the split of [`StreamFailures`](crate::report::StreamFailures).
fn is_after_open(cause: StreamFailure) -> bool {
    !matches!(
        cause,
        StreamFailure::ConnectRefused
            | StreamFailure::ConnectError
            | StreamFailure::Status
            | StreamFailure::Handshake
    )
}

fn cut(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let config = Config {
            sse_clients: 2,
            ws_clients: 3,
            error_samples: 1,
            ..Config::new("x:1")
        };
        Ledger::new(&config)
    }

    #[test]
    fn books_balance() {
        let l = ledger();
        for _ in 0..4 {
            l.opened(StreamKind::Sse);
        }
        l.ended_clean(StreamKind::Sse);
        l.reconnect(StreamKind::Sse);
        l.closed_by_client(StreamKind::Sse);
        l.failed(StreamKind::Sse, StreamFailure::Truncated, "cut".into());
        l.failed(
            StreamKind::Sse,
            StreamFailure::ConnectRefused,
            "refused".into(),
        );
        assert_eq!(l.progress(), (1, 2));
        l.failed(StreamKind::Sse, StreamFailure::Reset, "reset".into());
        let s = l.report();
        assert_eq!((s.sse.clients, s.ws.clients), (2, 3));
        let sse = &s.sse;
        assert_eq!(sse.failed, sse.failures.total());
        assert_eq!(
            sse.opened,
            sse.ended_clean + sse.closed_by_client + sse.failures.after_open()
        );
        assert_eq!(sse.failures.before_open(), 1);
        // Only as many messages as asked for are kept.
        assert_eq!(sse.errors.len(), 1);
        assert_eq!(sse.errors[0].cause, StreamFailure::Truncated);
        assert_eq!(l.progress(), (0, 3));
    }

    #[test]
    fn failures_are_counted_in_their_second() {
        let l = ledger();
        let start = Instant::now();
        l.begin(start);
        l.failed(
            StreamKind::Ws,
            StreamFailure::ConnectRefused,
            "refused".into(),
        );
        l.in_second(
            StreamKind::Sse,
            start + std::time::Duration::from_millis(2500),
        );
        l.in_second(
            StreamKind::Sse,
            start + std::time::Duration::from_millis(2900),
        );
        assert_eq!(l.failures_per_second(), vec![[0, 1], [0, 0], [2, 0]]);
    }

    #[test]
    fn long_replica_names_are_cut_on_a_char_boundary() {
        let l = ledger();
        let long = "é".repeat(200);
        l.served_by(StreamKind::Sse, &long);
        l.served_by(StreamKind::Sse, &long);
        let s = l.report();
        let (name, n) = s.sse.served_by.iter().next().unwrap();
        assert!(name.len() <= MAX_NAME);
        assert_eq!(*n, 2);
    }
}
