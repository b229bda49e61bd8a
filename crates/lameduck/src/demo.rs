//! The binary's demo application: `GET /` names the replica, `GET /work?ms=N`
//! stands in for a slow request. It is an ordinary hyper service, served the
//! same way as any other.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// Longest `/work` request, in milliseconds.
pub const MAX_WORK_MS: u64 = 60_000;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The demo routes, answering as the replica `name`.
#[derive(Clone, Debug)]
pub struct Demo {
    name: Bytes,
}

impl Demo {
    /// Answers `GET /` with `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Bytes::from(name.into()),
        }
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

impl<B> hyper::service::Service<Request<B>> for Demo {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = DemoFuture;

    fn call(&self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        if path != "/" && path != "/work" {
            return DemoFuture::ready(text(StatusCode::NOT_FOUND, "not found\n"));
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return DemoFuture::ready(response);
        }
        if path == "/" {
            return DemoFuture::ready(text(StatusCode::OK, self.name.clone()));
        }
        match work_millis(request.uri().query()) {
            Ok(ms) => {
                let body = format!(
                    "worked {ms} ms on {}\n",
                    String::from_utf8_lossy(&self.name)
                );
                DemoFuture {
                    sleep: Some(tokio::time::sleep(Duration::from_millis(ms))),
                    response: Some(text(StatusCode::OK, body)),
                }
            }
            Err(reason) => DemoFuture::ready(text(StatusCode::BAD_REQUEST, reason)),
        }
    }
}

/// The `ms` query parameter of `/work`: absent means 0.
fn work_millis(query: Option<&str>) -> Result<u64, &'static str> {
    let value = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == "ms").then_some(value));
    let Some(value) = value else { return Ok(0) };
    let ms: u64 = value
        .parse()
        .map_err(|_| "ms must be a whole number of milliseconds\n")?;
    if ms > MAX_WORK_MS {
        return Err("ms must be at most 60000\n");
    }
    Ok(ms)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT);
    response
}

pin_project! {
    /// The demo's response future: ready at once, or after `/work`'s sleep.
    #[derive(Debug)]
    pub struct DemoFuture {
        #[pin]
        sleep: Option<Sleep>,
        response: Option<Response<Full<Bytes>>>,
    }
}

impl DemoFuture {
    fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            sleep: None,
            response: Some(response),
        }
    }
}

impl Future for DemoFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(sleep) = this.sleep.as_pin_mut() {
            std::task::ready!(sleep.poll(cx));
        }
        let response = this
            .response
            .take()
            .expect("DemoFuture polled after completion");
        Poll::Ready(Ok(response))
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
        let get = |uri: &str| Request::get(uri).body(()).unwrap();
        let status = |r: Response<Full<Bytes>>| r.status();

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
        let post = Request::post("/").body(()).unwrap();
        assert_eq!(
            status(demo.call(post).await.unwrap()),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
