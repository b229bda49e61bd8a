//! A future that is polled only after it woke its task itself.
//!
//! A connection task is woken for every read and write, and `select!` polls
//! every future it waits on each time. The shutdown signals a connection
//! waits on (the cancellation token, the phase's watch channel) are
//! `Notify`-based: each poll while waiting takes a lock, the token's one
//! shared by every connection. Wrapped in [`Quiet`], they cost one atomic
//! swap per wake-up of the task instead, and are polled when they fire.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use pin_project_lite::pin_project;

pin_project! {
    /// Polls `inner` on its first poll and afterwards only once `inner`
    /// has asked to be woken. Stays within the task that first polled it.
    pub(crate) struct Quiet<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        waker: Waker,
        polled: bool,
    }
}

impl<F> Quiet<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Self {
            inner,
            waker: Waker::from(Arc::clone(&signal)),
            signal,
            polled: false,
        }
    }
}

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Cleared before polling, so a wake-up during the poll is kept for
        // the next one. A plain load first: most polls find no wake-up, and
        // a load costs less than a swap. A wake-up right after the load
        // also wakes the task, which polls again.
        if *this.polled
            && !(this.signal.woken.load(Ordering::Acquire)
                && this.signal.woken.swap(false, Ordering::AcqRel))
        {
            return Poll::Pending;
        }
        *this.polled = true;
        {
            let mut task = this
                .signal
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

/// The waker `inner` sees: notes the wake-up, then wakes the task.
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `ready` is set, waking through the last
    /// waker it was given when `fire` is called.
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    impl Probe {
        fn fire(&self) {
            self.ready.store(true, Ordering::SeqCst);
            if let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    struct ProbeFuture(Arc<Probe>);

    impl Future for ProbeFuture {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0.polls.fetch_add(1, Ordering::SeqCst);
            if self.0.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn polls_the_inner_future_only_after_its_own_wake_up() {
        let probe = Arc::new(Probe::default());
        let task = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&waker);
        let mut quiet = std::pin::pin!(Quiet::new(ProbeFuture(Arc::clone(&probe))));

        assert!(quiet.as_mut().poll(&mut cx).is_pending());
        // Wake-ups of the task for other reasons do not reach the inner future.
        for _ in 0..5 {
            assert!(quiet.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1);

        probe.fire();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(quiet.as_mut().poll(&mut cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }
}
