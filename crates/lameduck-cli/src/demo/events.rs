//! `GET /events`: a Server-Sent Events stream, one `tick` event per
//! interval, that says goodbye with an `event: shutdown` and ends when the
//! server drains, so that its client reconnects to another replica.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Interval, MissedTickBehavior};

use super::DemoBody;
use lameduck::Drain;

/// Shortest `?interval=`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest `?interval=`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The `interval` query parameter: absent means a second.
pub(super) fn interval(value: Option<&str>) -> Result<Duration, &'static str> {
    let Some(value) = value else {
        return Ok(DEFAULT_INTERVAL);
    };
    let interval = humantime::parse_duration(value)
        .map_err(|_| "interval must be a duration such as 100ms or 2s\n")?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err("interval must be between 10ms and 60s\n");
    }
    Ok(interval)
}

/// The stream's response. Without a [`Drain`] (the demo served by something
/// else than lameduck's server) it never ends on its own.
pub(super) fn response(name: Bytes, every: Duration, drain: Option<Drain>) -> Response<DemoBody> {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = drain.map(|drain| -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { drain.stream_should_end().await })
    });
    let stream = EventStream {
        name,
        ticks,
        sent: 0,
        end,
        done: false,
    };
    let mut response = Response::new(DemoBody::events(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The body: ticks until the end signal, then the shutdown event, then the end.
pub(super) struct EventStream {
    name: Bytes,
    ticks: Interval,
    sent: u64,
    end: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    done: bool,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("sent", &self.sent)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    fn event(&self, text: String) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(text)))))
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let name = String::from_utf8_lossy(&self.name).into_owned();
        if let Some(end) = self.end.as_mut()
            && end.as_mut().poll(cx).is_ready()
        {
            self.done = true;
            return self.event(format!("event: shutdown\ndata: {name}\n\n"));
        }
        std::task::ready!(self.ticks.poll_tick(cx));
        self.sent += 1;
        let id = self.sent;
        self.event(format!("id: {id}\nevent: tick\ndata: {name} {id}\n\n"))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::sync::watch;

    use super::*;
    use lameduck::Phase;

    #[test]
    fn interval_accepts_the_documented_range() {
        assert_eq!(interval(None), Ok(Duration::from_secs(1)));
        assert_eq!(interval(Some("10ms")), Ok(MIN_INTERVAL));
        assert_eq!(interval(Some("60s")), Ok(MAX_INTERVAL));
        assert_eq!(interval(Some("250ms")), Ok(Duration::from_millis(250)));
        for bad in ["9ms", "61s", "0s", "abc", "", "100", "-1s"] {
            assert!(interval(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_until_draining_then_says_goodbye_and_ends() {
        let (tx, rx) = watch::channel(Phase::Serving);
        let response = response(
            Bytes::from_static(b"a"),
            Duration::from_millis(100),
            Some(Drain::new(rx)),
        );
        let mut body = response.into_body();
        let next = async |body: &mut DemoBody| {
            let frame = body.frame().await?.unwrap();
            Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
        };
        assert_eq!(
            next(&mut body).await.unwrap(),
            "id: 1\nevent: tick\ndata: a 1\n\n"
        );
        assert_eq!(
            next(&mut body).await.unwrap(),
            "id: 2\nevent: tick\ndata: a 2\n\n"
        );
        tx.send_replace(Phase::Draining);
        assert_eq!(
            next(&mut body).await.unwrap(),
            "event: shutdown\ndata: a\n\n"
        );
        assert!(body.is_end_stream());
        assert_eq!(next(&mut body).await, None);
    }
}
