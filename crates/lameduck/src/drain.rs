//! What application code sees of the shutdown: a cloneable handle that says
//! whether the server is draining and lets a task wait for it. A streaming
//! handler (Server-Sent Events, a WebSocket) uses it to end its stream
//! cleanly, with a last event or a close frame, instead of being cut off at
//! the shutdown timeout.

use tokio::sync::watch;

use crate::lifecycle::Phase;

/// The server's shutdown, as a handler sees it. Every request carries one in
/// its extensions (from axum: `Extension<lameduck::Drain>`), and
/// [`Server::drain`](crate::Server::drain) hands one out before serving.
///
/// ```
/// # async fn example(drain: lameduck::Drain) {
/// // A long-lived stream: run until the server drains, then say goodbye.
/// tokio::select! {
///     () = drain.draining() => { /* send the last event, end the body */ }
///     () = std::future::pending::<()>() => { /* the stream's own work */ }
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Drain {
    phase: watch::Receiver<Phase>,
}

impl Drain {
    /// A handle that follows `phase`. The server makes its own; this one is
    /// for testing a handler without a server: send it the phases.
    pub fn new(phase: watch::Receiver<Phase>) -> Self {
        Self { phase }
    }

    /// The server's phase now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether the shutdown has begun: the server is draining, closing, or done.
    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Resolves once the shutdown has begun (at once if it has). From then
    /// on, routers are being told to send traffic elsewhere: a long-lived
    /// stream should end, so that its client reconnects to another replica.
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Resolves once the server is closing (at once if it is): the listener
    /// is closed and the shutdown waits only for what is still open. A stream
    /// that began while the server was already draining (its client was
    /// routed here before the routers caught up) should end by then.
    pub async fn closing(&self) {
        self.reached(Phase::Closing).await;
    }

    /// Resolves when the stream a handler opens now should end: when draining
    /// starts, or, if it has already started, when closing starts.
    pub async fn stream_should_end(&self) {
        if self.is_draining() {
            self.closing().await;
        } else {
            self.draining().await;
        }
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.clone();
        // An error means the server is gone, which is as final as any
        // phase.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_follow_the_phase() {
        let (tx, rx) = watch::channel(Phase::Serving);
        let drain = Drain::new(rx);
        assert!(!drain.is_draining());
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move {
                drain.draining().await;
                let draining = drain.phase();
                drain.closing().await;
                (draining, drain.phase())
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        tx.send_replace(Phase::Draining);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(drain.is_draining());
        assert!(!waiter.is_finished());
        tx.send_replace(Phase::Closing);
        assert_eq!(waiter.await.unwrap(), (Phase::Draining, Phase::Closing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_opened_while_draining_ends_at_closing() {
        let (tx, rx) = watch::channel(Phase::Draining);
        let drain = Drain::new(rx);
        let end = tokio::spawn(async move { drain.stream_should_end().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!end.is_finished());
        tx.send_replace(Phase::Closing);
        tokio::time::timeout(Duration::from_secs(1), end)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_server_ends_every_wait() {
        let (tx, rx) = watch::channel(Phase::Serving);
        let drain = Drain::new(rx);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), drain.closing())
            .await
            .unwrap();
    }
}
