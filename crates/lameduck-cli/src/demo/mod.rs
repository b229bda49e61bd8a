//! The binary's demo application: `GET /` names the replica, `POST /`
//! echoes its body, `GET /work?ms=N` stands in for a slow request,
//! `GET /events` is a Server-Sent Events stream and `GET /ws` a WebSocket
//! echo; both streams end cleanly when the server drains (see
//! [`Drain`]). Every response names the replica in
//! `lameduck-replica`, and says `lameduck-phase: draining` or `closing` once
//! the shutdown has begun (see [`REPLICA_HEADER`], [`PHASE_HEADER`]). It is
//! an ordinary hyper service, served the same way as any other.

mod echo;
mod events;
mod marker;
mod ws;

pub use echo::MAX_ECHO;
pub use events::{MAX_INTERVAL, MIN_INTERVAL};
pub use marker::{PHASE_HEADER, REPLICA_HEADER};
pub use ws::MAX_MESSAGE;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use lameduck::{BoxError, Drain};

use marker::Marker;

/// Longest `/work` request, in milliseconds.
pub const MAX_WORK_MS: u64 = 60_000;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The demo routes, answering as the replica `name`.
#[derive(Clone, Debug)]
pub struct Demo {
    name: Bytes,
    /// Marks every response; holds the server's `Drain` if given one.
    marker: Marker,
    /// Whether `/events` and `/ws` end when the server drains.
    stream_drain: bool,
}

impl Demo {
    /// Answers `GET /` with `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = Bytes::from(name.into());
        Self {
            marker: Marker::new(&name),
            name,
            stream_drain: true,
        }
    }

    /// Follows the shutdown of the server that serves it (from
    /// [`Server::drain`](lameduck::Server::drain)): responses say
    /// `lameduck-phase` once it has begun, and `/events` and `/ws` end when
    /// it drains. Without one, there is no phase header, and the streams
    /// take the `Drain` a request carries in its extensions, if any.
    pub fn with_drain(mut self, drain: Drain) -> Self {
        self.marker = self.marker.with_drain(drain);
        self
    }

    /// With `false`, `/events` and `/ws` ignore the drain and run until the
    /// client goes or the shutdown timeout cuts them: a server that does not
    /// say goodbye, for a negative control.
    pub fn with_stream_drain(mut self, stream_drain: bool) -> Self {
        self.stream_drain = stream_drain;
        self
    }

    /// Named after the `POD_NAME` environment variable, else the host name.
    pub fn from_env() -> Self {
        Self::new(replica_name())
    }

    /// The name `GET /` answers with.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
}

/// `POD_NAME`, else the kernel's host name, else `unknown`.
pub fn replica_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl<B> hyper::service::Service<Request<B>> for Demo
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<DemoBody>;
    type Error = Infallible;
    type Future = DemoFuture;

    fn call(&self, request: Request<B>) -> Self::Future {
        let mut future = self.route(request);
        // A later response marks itself when it is ready.
        if let Pending::Ready(Some(response)) = &mut future.0 {
            self.marker.mark(response.headers_mut());
        }
        future
    }
}

impl Demo {
    fn route<B>(&self, mut request: Request<B>) -> DemoFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path();
        let allow = match path {
            "/" => "GET, HEAD, POST",
            "/work" => "GET, HEAD",
            "/events" | "/ws" => "GET",
            _ => return DemoFuture::ready(text(StatusCode::NOT_FOUND, "not found\n")),
        };
        let method = request.method();
        if method == Method::POST && path == "/" {
            return self.echo(request.into_body());
        }
        if method != Method::GET && (method != Method::HEAD || allow == "GET") {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return DemoFuture::ready(response);
        }
        // Cloned only for the streams that use it.
        let drain = |request: &Request<B>| {
            let drain = self
                .marker
                .drain()
                .or_else(|| request.extensions().get::<Drain>());
            drain.filter(|_| self.stream_drain).cloned()
        };
        let query = request.uri().query();
        match request.uri().path() {
            "/" => return DemoFuture::ready(text(StatusCode::OK, self.name.clone())),
            "/events" => {
                let drain = drain(&request);
                let response = match events::interval(query_param(query, "interval")) {
                    Ok(every) => events::response(self.name.clone(), every, drain),
                    Err(reason) => text(StatusCode::BAD_REQUEST, reason),
                };
                return DemoFuture::ready(response);
            }
            "/ws" => {
                let drain = drain(&request);
                return DemoFuture::ready(ws::accept(&mut request, drain));
            }
            _ => {}
        }
        match work_millis(query) {
            Ok(ms) => {
                let body = format!(
                    "worked {ms} ms on {}\n",
                    String::from_utf8_lossy(&self.name)
                );
                self.later(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    text(StatusCode::OK, body)
                })
            }
            Err(reason) => DemoFuture::ready(text(StatusCode::BAD_REQUEST, reason)),
        }
    }

    /// `POST /`: answered at once when the body is empty or announced too
    /// large, else once it has been read.
    fn echo<B>(&self, body: B) -> DemoFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if echo::announced_too_large(&body) {
            DemoFuture::ready(echo::too_large())
        } else if body.is_end_stream() {
            DemoFuture::ready(echo::echoed(Bytes::new()))
        } else {
            self.later(echo::echo(body))
        }
    }

    /// A response that takes time, marked when it is ready: its phase is the
    /// one it was answered in.
    fn later(
        &self,
        response: impl Future<Output = Response<DemoBody>> + Send + 'static,
    ) -> DemoFuture {
        let marker = self.marker.clone();
        DemoFuture(Pending::Later(Box::pin(async move {
            let mut response = response.await;
            marker.mark(response.headers_mut());
            response
        })))
    }
}

/// The first value of the query parameter `name` (empty for `name` alone).
fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query
        .unwrap_or("")
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The `ms` query parameter of `/work`: absent means 0.
fn work_millis(query: Option<&str>) -> Result<u64, &'static str> {
    let Some(value) = query_param(query, "ms") else {
        return Ok(0);
    };
    let ms: u64 = value
        .parse()
        .map_err(|_| "ms must be a whole number of milliseconds\n")?;
    if ms > MAX_WORK_MS {
        return Err("ms must be at most 60000\n");
    }
    Ok(ms)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<DemoBody> {
    let mut response = Response::new(DemoBody::full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

/// The demo's response future: ready at once, or later (`/work`'s sleep,
/// `POST /`'s body). Only the later ones are boxed, so that every other
/// request's future (moved into hyper's, and for HTTP/2 into a task) stays
/// small and allocates nothing.
pub struct DemoFuture(Pending);

enum Pending {
    Ready(Option<Response<DemoBody>>),
    Later(Pin<Box<dyn Future<Output = Response<DemoBody>> + Send>>),
}

impl std::fmt::Debug for DemoFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready = matches!(self.0, Pending::Ready(_));
        f.debug_struct("DemoFuture")
            .field("ready", &ready)
            .finish_non_exhaustive()
    }
}

impl DemoFuture {
    fn ready(response: Response<DemoBody>) -> Self {
        Self(Pending::Ready(Some(response)))
    }
}

impl Future for DemoFuture {
    type Output = Result<Response<DemoBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = match &mut self.get_mut().0 {
            Pending::Ready(response) => {
                response.take().expect("DemoFuture polled after completion")
            }
            Pending::Later(later) => std::task::ready!(later.as_mut().poll(cx)),
        };
        Poll::Ready(Ok(response))
    }
}

/// The demo's response body: a whole one, or `/events`' stream.
#[derive(Debug)]
pub struct DemoBody(BodyKind);

#[derive(Debug)]
enum BodyKind {
    Full(Full<Bytes>),
    Events(Box<events::EventStream>),
}

impl DemoBody {
    fn full(bytes: Bytes) -> Self {
        Self(BodyKind::Full(Full::new(bytes)))
    }

    fn empty() -> Self {
        Self::full(Bytes::new())
    }

    fn events(stream: events::EventStream) -> Self {
        Self(BodyKind::Events(Box::new(stream)))
    }
}

impl Body for DemoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            BodyKind::Full(full) => Pin::new(full).poll_frame(cx),
            BodyKind::Events(events) => Pin::new(events.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Full(full) => full.is_end_stream(),
            BodyKind::Events(events) => events.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Full(full) => full.size_hint(),
            BodyKind::Events(events) => events.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_millis_accepts_the_documented_range() {
        assert_eq!(work_millis(None), Ok(0));
        assert_eq!(work_millis(Some("ms=0")), Ok(0));
        assert_eq!(work_millis(Some("x=1&ms=250")), Ok(250));
        assert_eq!(work_millis(Some("ms=60000")), Ok(60_000));
        assert!(work_millis(Some("ms=60001")).is_err());
        assert!(work_millis(Some("ms=abc")).is_err());
        assert!(work_millis(Some("ms=-1")).is_err());
        assert!(work_millis(Some("ms=")).is_err());
        assert!(work_millis(Some("ms")).is_err());
    }

    #[tokio::test]
    async fn routes() {
        use hyper::service::Service;
        let demo = Demo::new("replica-a");
        let get = |uri: &str| Request::get(uri).body(Full::<Bytes>::default()).unwrap();
        let status = |r: Response<DemoBody>| r.status();

        assert_eq!(status(demo.call(get("/")).await.unwrap()), StatusCode::OK);
        assert_eq!(
            status(demo.call(get("/work?ms=1")).await.unwrap()),
            StatusCode::OK
        );
        assert_eq!(
            status(demo.call(get("/work?ms=abc")).await.unwrap()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(demo.call(get("/nope")).await.unwrap()),
            StatusCode::NOT_FOUND
        );
        let events = demo.call(get("/events?interval=50ms")).await.unwrap();
        assert_eq!(events.status(), StatusCode::OK);
        assert_eq!(events.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(
            status(demo.call(get("/events?interval=5ms")).await.unwrap()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(demo.call(get("/ws")).await.unwrap()),
            StatusCode::BAD_REQUEST
        );
        for (method, path, allow) in [
            (Method::PUT, "/", "GET, HEAD, POST"),
            (Method::POST, "/work", "GET, HEAD"),
            (Method::HEAD, "/events", "GET"),
            (Method::PUT, "/ws", "GET"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Full::<Bytes>::default())
                .unwrap();
            let response = demo.call(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(response.headers()[ALLOW], allow, "{path}");
        }
    }

    #[tokio::test]
    async fn post_echoes_within_the_limit() {
        use http_body_util::BodyExt;
        use hyper::service::Service;
        let demo = Demo::new("replica-a");
        let post = |body: Bytes| Request::post("/").body(Full::new(body)).unwrap();
        let response = demo.call(post(Bytes::from_static(b"hello"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
        let empty = demo.call(post(Bytes::new())).await.unwrap();
        assert_eq!(empty.status(), StatusCode::OK);
        let large = demo
            .call(post(Bytes::from(vec![0; MAX_ECHO + 1])))
            .await
            .unwrap();
        assert_eq!(large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn every_response_names_the_replica() {
        use hyper::service::Service;
        let demo = Demo::new("replica-a");
        let call = |method: Method, uri: &str, body: Bytes| {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .body(Full::new(body))
                .unwrap();
            demo.call(request)
        };
        for (method, uri, body, status) in [
            (Method::GET, "/", Bytes::new(), 200),
            (Method::HEAD, "/", Bytes::new(), 200),
            (Method::POST, "/", Bytes::from_static(b"x"), 200),
            (Method::POST, "/", Bytes::from(vec![0; MAX_ECHO + 1]), 413),
            (Method::GET, "/work?ms=1", Bytes::new(), 200),
            (Method::GET, "/work?ms=x", Bytes::new(), 400),
            (Method::GET, "/events?interval=1s", Bytes::new(), 200),
            (Method::GET, "/ws", Bytes::new(), 400),
            (Method::DELETE, "/", Bytes::new(), 405),
            (Method::GET, "/nope", Bytes::new(), 404),
        ] {
            let response = call(method.clone(), uri, body).await.unwrap();
            assert_eq!(response.status(), status, "{method} {uri}");
            assert_eq!(
                response.headers()[REPLICA_HEADER],
                "replica-a",
                "{method} {uri}"
            );
            assert!(
                !response.headers().contains_key(PHASE_HEADER),
                "{method} {uri}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_say_the_phase_they_were_given_in() {
        use hyper::service::Service;
        use lameduck::Phase;
        let (tx, rx) = tokio::sync::watch::channel(Phase::Serving);
        let demo = Demo::new("replica-a").with_drain(Drain::new(rx));
        let get = |uri: &str| Request::get(uri).body(Full::<Bytes>::default()).unwrap();
        let phase = |response: &Response<DemoBody>| {
            let value = response.headers().get(PHASE_HEADER);
            value.map(|v| v.to_str().unwrap().to_owned())
        };
        let serving = demo.call(get("/")).await.unwrap();
        assert_eq!(phase(&serving), None);
        // Taken while serving, answered while draining: answered after the
        // signal, and says so.
        let slow = demo.call(get("/work?ms=100"));
        tx.send_replace(Phase::Draining);
        let slow = slow.await.unwrap();
        assert_eq!(phase(&slow).as_deref(), Some("draining"));
        assert_eq!(slow.headers()[REPLICA_HEADER], "replica-a");
        tx.send_replace(Phase::Closing);
        let closing = demo.call(get("/nope")).await.unwrap();
        assert_eq!(phase(&closing).as_deref(), Some("closing"));
    }
}
