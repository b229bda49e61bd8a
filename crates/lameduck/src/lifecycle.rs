//! Where a server is in its shutdown, and since when: the phase, which only
//! moves forward, a watch channel that wakes whoever waits for a change, and
//! the shutdown clock. A leaf: `shutdown` moves the phase, everything else
//! reads it (the request path with one atomic load).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;
use tracing::info;

/// Where a server is in its shutdown. Phases only move forward, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// Normal operation.
    Serving = 0,
    /// The lame-duck window: still accepting and serving, `/readyz` fails,
    /// HTTP/1.1 responses close their connection, HTTP/2 connections got GOAWAY.
    Draining = 1,
    /// The listener is closed; in-flight requests finish, idle connections close.
    Closing = 2,
    /// Every connection closed in time.
    Done = 3,
    /// The shutdown timeout expired or a second signal came; connections were dropped.
    Forced = 4,
}

impl Phase {
    /// The phase's name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Draining => "draining",
            Phase::Closing => "closing",
            Phase::Done => "done",
            Phase::Forced => "forced",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Phase::Serving,
            1 => Phase::Draining,
            2 => Phase::Closing,
            3 => Phase::Done,
            _ => Phase::Forced,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time since the shutdown signal: 0 before it, growing during the
/// shutdown, frozen once it ended.
#[derive(Debug, Default)]
pub(crate) struct ShutdownClock {
    signalled_at: OnceLock<(Instant, SystemTime)>,
    final_duration: OnceLock<Duration>,
}

impl ShutdownClock {
    pub(crate) fn elapsed(&self) -> Duration {
        match (self.final_duration.get(), self.signalled_at.get()) {
            (Some(frozen), _) => *frozen,
            (None, Some((at, _))) => at.elapsed(),
            (None, None) => Duration::ZERO,
        }
    }

    /// The wall-clock time of the signal, once there was one.
    pub(crate) fn signalled_at(&self) -> Option<SystemTime> {
        self.signalled_at.get().map(|&(_, wall)| wall)
    }

    /// Starts the clock; later calls change nothing.
    pub(crate) fn start(&self) {
        let _ = self.signalled_at.set((Instant::now(), SystemTime::now()));
    }

    /// Stops the clock at `duration`; later calls change nothing.
    pub(crate) fn freeze(&self, duration: Duration) {
        let _ = self.final_duration.set(duration);
    }
}

/// The current phase and the shutdown clock, shared by every task of a
/// server and by its metrics.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    // The atomic is what the request path reads (one load); the watch
    // channel wakes the tasks that wait for a change.
    phase: AtomicU8,
    changes: watch::Sender<Phase>,
    clock: ShutdownClock,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Serving as u8),
            changes: watch::Sender::new(Phase::Serving),
            clock: ShutdownClock::default(),
        }
    }
}

impl Lifecycle {
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.changes.subscribe()
    }

    pub(crate) fn clock(&self) -> &ShutdownClock {
        &self.clock
    }

    /// Moves to `phase` and tells every waiter.
    pub(crate) fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.changes.send_replace(phase);
        info!(
            phase = phase.as_str(),
            elapsed_ms = millis(self.clock.elapsed()),
            "shutdown phase changed"
        );
    }
}

/// Milliseconds with microsecond precision, for log fields.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_and_round_trip() {
        let all = [
            Phase::Serving,
            Phase::Draining,
            Phase::Closing,
            Phase::Done,
            Phase::Forced,
        ];
        for pair in all.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for phase in all {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
    }

    #[test]
    fn elapsed_is_zero_before_the_signal_and_frozen_after() {
        let clock = ShutdownClock::default();
        assert_eq!(clock.elapsed(), Duration::ZERO);
        assert_eq!(clock.signalled_at(), None);
        let before = SystemTime::now();
        clock.start();
        assert!(clock.signalled_at().is_some_and(|at| at >= before));
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.elapsed() >= Duration::from_millis(5));
        clock.freeze(Duration::from_millis(7));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.elapsed(), Duration::from_millis(7));
    }

    #[tokio::test]
    async fn entering_a_phase_wakes_subscribers() {
        let lifecycle = Lifecycle::default();
        let mut rx = lifecycle.subscribe();
        lifecycle.enter(Phase::Draining);
        assert_eq!(lifecycle.phase(), Phase::Draining);
        assert_eq!(
            *rx.wait_for(|p| *p == Phase::Draining).await.unwrap(),
            Phase::Draining
        );
    }
}
