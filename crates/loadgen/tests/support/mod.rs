//! Small servers on 127.0.0.1:0 that misbehave on purpose.

#![allow(dead_code, unreachable_pub)]

pub mod fake_h2;
pub mod fake_streams;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the server does with each request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Like lameduck: `GET /` answers the name, `/work?ms=N` sleeps N ms.
    Ok(&'static str),
    /// Every request gets this status.
    Status(u16),
    /// Like `Ok`, but every response carries `Connection: close`.
    CloseEach(&'static str),
    /// Reads the request, then resets the connection (RST).
    ResetOnRequest,
    /// Reads the request, then closes the connection (FIN) without answering.
    CloseOnRequest,
    /// Reads the request and never answers.
    Silent,
    /// Answers `200 ok` and closes at once, without `Connection: close`.
    AnswerThenClose,
    /// Like `Ok`, over HTTP/2 with prior knowledge only.
    H2c(&'static str),
    /// Like `Ok`, over HTTP/1.1 or HTTP/2 with prior knowledge, told apart
    /// by the preface.
    Auto(&'static str),
    /// Like `Auto`, but `POST /` answers the name instead of the body.
    NoEcho(&'static str),
    /// Like `Auto`, every response marked as lameduck's demo marks them:
    /// `lameduck-replica: NAME`, and `lameduck-phase: PHASE` if given.
    Marked(&'static str, Option<&'static str>),
    /// Every request gets this status, marked as the application's own
    /// (`lameduck-replica: NAME`), over HTTP/1.1 or HTTP/2.
    StatusMarked(u16, &'static str),
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Requests that asked for `Connection: close`.
    pub close_requests: AtomicU64,
    /// Requests that came over HTTP/2.
    pub h2_requests: AtomicU64,
    /// `POST` requests, and the bytes of their bodies.
    pub posts: AtomicU64,
    pub post_bytes: AtomicU64,
    pub active: AtomicU64,
    pub max_active: AtomicU64,
    /// When each request's head arrived (the hyper servers only).
    pub arrivals: Mutex<Vec<Instant>>,
}

impl Seen {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let task = tokio::spawn(accept(listener, behaviour, seen.clone()));
        Self { addr, seen, task }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

/// An address with no listener: connects are refused.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn accept(listener: TcpListener, behaviour: Behaviour, seen: Arc<Seen>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        tokio::spawn(async move {
            let reply = |name| Reply {
                name,
                status: None,
                close: false,
                echo: true,
                marked: false,
                phase: None,
            };
            match behaviour {
                Behaviour::Ok(name) => serve(stream, seen, reply(name), Proto::Http1).await,
                Behaviour::H2c(name) => serve(stream, seen, reply(name), Proto::H2c).await,
                Behaviour::Auto(name) => serve(stream, seen, reply(name), Proto::Auto).await,
                Behaviour::NoEcho(name) => {
                    let no_echo = Reply {
                        echo: false,
                        ..reply(name)
                    };
                    serve(stream, seen, no_echo, Proto::Auto).await;
                }
                Behaviour::Marked(name, phase) => {
                    let marked = Reply {
                        marked: true,
                        phase,
                        ..reply(name)
                    };
                    serve(stream, seen, marked, Proto::Auto).await;
                }
                Behaviour::StatusMarked(code, name) => {
                    let marked = Reply {
                        status: Some(code),
                        marked: true,
                        ..reply(name)
                    };
                    serve(stream, seen, marked, Proto::Auto).await;
                }
                Behaviour::CloseEach(name) => {
                    let close = Reply {
                        close: true,
                        ..reply(name)
                    };
                    serve(stream, seen, close, Proto::Http1).await;
                }
                Behaviour::Status(code) => {
                    let status = Reply {
                        status: Some(code),
                        ..reply("")
                    };
                    serve(stream, seen, status, Proto::Http1).await;
                }
                Behaviour::ResetOnRequest => raw(stream, seen, Raw::Reset).await,
                Behaviour::CloseOnRequest => raw(stream, seen, Raw::Close).await,
                Behaviour::Silent => raw(stream, seen, Raw::Silent).await,
                Behaviour::AnswerThenClose => raw(stream, seen, Raw::AnswerThenClose).await,
            }
        });
    }
}

#[derive(Debug, Clone, Copy)]
enum Proto {
    Http1,
    H2c,
    Auto,
}

/// How a hyper server answers.
#[derive(Debug, Clone, Copy)]
struct Reply {
    /// The answer to `GET /`.
    name: &'static str,
    /// Every request gets this status instead.
    status: Option<u16>,
    /// Every response says `Connection: close`.
    close: bool,
    /// `POST /` echoes its body (else it answers `name`).
    echo: bool,
    /// Every response says `lameduck-replica: name`...
    marked: bool,
    /// ...and `lameduck-phase: phase`.
    phase: Option<&'static str>,
}

/// Like lameduck's demo: `GET /` answers `name`, `/work?ms=N` sleeps N ms,
/// `POST /` echoes its body; or as `reply` says otherwise.
async fn serve(stream: TcpStream, seen: Arc<Seen>, reply: Reply, proto: Proto) {
    let Reply {
        name,
        status,
        close,
        echo,
        marked,
        phase,
    } = reply;
    let svc = service_fn(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            seen.arrivals.lock().unwrap().push(Instant::now());
            seen.requests.fetch_add(1, Ordering::SeqCst);
            seen.h2_requests.fetch_add(
                u64::from(req.version() == hyper::Version::HTTP_2),
                Ordering::SeqCst,
            );
            let asks_close = req
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            seen.close_requests
                .fetch_add(u64::from(asks_close), Ordering::SeqCst);
            let active = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
            seen.max_active.fetch_max(active, Ordering::SeqCst);
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|n| n.parse::<u64>().ok());
            if let (Some(ms), "/work") = (ms, req.uri().path()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let mut answer = Bytes::from_static(name.as_bytes());
            if req.method() == hyper::Method::POST {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let body = body.unwrap_or_default();
                seen.posts.fetch_add(1, Ordering::SeqCst);
                seen.post_bytes
                    .fetch_add(body.len() as u64, Ordering::SeqCst);
                if echo {
                    answer = body;
                }
            }
            seen.active.fetch_sub(1, Ordering::SeqCst);
            let mut res = match status {
                Some(code) => {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"unavailable\n")));
                    *r.status_mut() = StatusCode::from_u16(code).unwrap();
                    r
                }
                None => Response::new(Full::new(answer)),
            };
            let headers = res.headers_mut();
            if close {
                headers.insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            if marked {
                headers.insert(
                    loadgen::REPLICA_HEADER,
                    header::HeaderValue::from_static(name),
                );
            }
            if let Some(phase) = phase {
                headers.insert(
                    loadgen::PHASE_HEADER,
                    header::HeaderValue::from_static(phase),
                );
            }
            Ok::<_, Infallible>(res)
        }
    });
    let io = TokioIo::new(stream);
    let _ = match proto {
        Proto::Http1 => hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await
            .map_err(|e| e.to_string()),
        Proto::H2c => hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
            .map_err(|e| e.to_string()),
        Proto::Auto => auto::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
            .map_err(|e| e.to_string()),
    };
}

#[derive(Debug, Clone, Copy)]
enum Raw {
    Reset,
    Close,
    Silent,
    AnswerThenClose,
}

async fn raw(mut stream: TcpStream, seen: Arc<Seen>, what: Raw) {
    if !read_head(&mut stream).await {
        return;
    }
    seen.requests.fetch_add(1, Ordering::SeqCst);
    match what {
        Raw::Reset => {
            // SO_LINGER 0: close sends RST instead of FIN.
            let std = stream.into_std().unwrap();
            socket2::SockRef::from(&std)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(std);
        }
        Raw::Close => drop(stream),
        Raw::Silent => {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Raw::AnswerThenClose => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Reads until the end of a request head; false on EOF first.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    true
}

/// One request over a fresh connection with `Connection: close`; returns
/// the status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Runs `config` (which must be bounded) within 20 s and checks that every
/// request has one outcome, overall and per mode.
pub async fn run(config: loadgen::Config) -> loadgen::Report {
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        loadgen::run(config, std::future::pending()),
    )
    .await
    .expect("the run ends by itself")
    .expect("the run starts");
    adds_up(&report);
    report
}

/// One outcome per request, overall and per mode.
pub fn adds_up(r: &loadgen::Report) {
    assert_eq!(r.sent, r.outcomes.total(), "{:#?}", r.outcomes);
    assert_eq!(r.scheduled, r.sent + r.not_started);
    let modes = [&r.modes.keepalive, &r.modes.fresh, &r.modes.http2];
    for m in modes {
        assert_eq!(m.sent, m.outcomes.total(), "{m:#?}");
    }
    assert_eq!(modes.iter().map(|m| m.sent).sum::<u64>(), r.sent);
    let failures: u64 = modes.iter().map(|m| m.outcomes.failures()).sum();
    assert_eq!(failures, r.failures);
    let (get, post) = (&r.methods.get, &r.methods.post);
    assert_eq!(get.sent + post.sent, r.sent);
    assert_eq!(
        get.outcomes.failures() + post.outcomes.failures(),
        r.failures
    );
    // Every failed request is located in a second, by protocol and method.
    let in_timeline = |f: fn(&loadgen::SecondFailures) -> u64| {
        r.timeline.iter().map(|s| f(&s.failures)).sum::<u64>()
    };
    assert_eq!(
        in_timeline(|f| f.keepalive),
        r.modes.keepalive.outcomes.failures()
    );
    assert_eq!(in_timeline(|f| f.fresh), r.modes.fresh.outcomes.failures());
    assert_eq!(in_timeline(|f| f.http2), r.modes.http2.outcomes.failures());
    assert_eq!(in_timeline(|f| f.get), get.outcomes.failures());
    assert_eq!(in_timeline(|f| f.post), post.outcomes.failures());
    for s in &r.timeline {
        assert_eq!(s.failures.requests(), s.outcomes.failures(), "{s:#?}");
        assert_eq!(
            s.failures.get + s.failures.post,
            s.outcomes.failures(),
            "{s:#?}"
        );
    }
}
