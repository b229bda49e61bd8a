//! The server: an application listener, an admin listener, one service, one
//! shutdown. Listeners come in already bound, so the caller picks the
//! addresses (tests bind port 0) and reports bind errors in its own words.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};

use crate::metrics::Metrics;
use crate::shutdown::{self, Lifecycle, ShutdownClock, ShutdownReport};
use crate::{BoxError, Config, Drain, Error, admin, conn};

/// Serves an application with lameduck's listeners, probes, metrics and
/// shutdown sequence.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::net::{TcpListener, TcpStream};
///
/// let app = TcpListener::bind("0.0.0.0:8080").await?;
/// let admin = TcpListener::bind("0.0.0.0:8081").await?;
/// let (shutdown, force) = lameduck::signals::shutdown_signals()?;
/// let report = lameduck::Server::new(lameduck::Config::default())
///     .force_on(force)
///     .serve(app, admin, lameduck::demo::Demo::new("replica-a"), shutdown)
///     .await?;
/// std::process::exit(if report.is_forced() { 1 } else { 0 });
/// # }
/// ```
pub struct Server {
    config: Config,
    registry: Registry,
    force: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    lifecycle: Lifecycle,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("force", &self.force.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with its own metrics registry.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            registry: Registry::new(),
            force: None,
            lifecycle: Lifecycle::new(Arc::new(ShutdownClock::default())),
        }
    }

    /// A handle on this server's shutdown, for code that runs beside the
    /// server (a background task, a stream that is not tied to a request).
    /// Requests carry their own copy in their extensions.
    pub fn drain(&self) -> Drain {
        self.lifecycle.drain()
    }

    /// Uses `registry` for `/metrics`, so the application's own metrics are
    /// served next to lameduck's. The process collector is added unless the
    /// registry already has one.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// When `force` completes during the shutdown, remaining connections are
    /// dropped at once and the shutdown ends as [`Phase::Forced`](crate::Phase::Forced). The
    /// binary passes the second SIGTERM/SIGINT.
    pub fn force_on(mut self, force: impl Future<Output = ()> + Send + 'static) -> Self {
        self.force = Some(Box::pin(force));
        self
    }

    /// Serves `service` on `app` and the probes and metrics on `admin` until
    /// `shutdown` completes, then drains and shuts down as configured.
    ///
    /// Returns once every application connection has closed (or was dropped);
    /// the admin listener is the last thing to close. Any hyper service will
    /// do; wrap a tower service (an axum `Router`, say) with
    /// [`from_tower`](crate::from_tower).
    ///
    /// # Errors
    ///
    /// [`Error::Metrics`] if the registry already holds metrics of the same names.
    pub async fn serve(
        self,
        app: TcpListener,
        admin: TcpListener,
        service: impl AppService,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, Error> {
        let metrics = Metrics::new(self.registry, Arc::clone(&self.lifecycle.clock))?;
        let shared = Arc::new(Shared::new(self.config, metrics, self.lifecycle));
        let connections = TaskTracker::new();
        let cut = CancellationToken::new();
        let admin_stop = CancellationToken::new();

        log_listening(&app, &admin);
        let admin_task = tokio::spawn(admin::serve(admin, Arc::clone(&shared), admin_stop.clone()));
        let stop_accepting = CancellationToken::new();
        let acceptor = tokio::spawn(accept(
            app,
            service,
            Arc::clone(&shared),
            connections.clone(),
            cut.clone(),
            stop_accepting.clone(),
        ));
        let close_listener = async move {
            stop_accepting.cancel();
            let _ = acceptor.await;
        };

        let force = self
            .force
            .unwrap_or_else(|| Box::pin(std::future::pending()));
        let report =
            shutdown::run(&shared, shutdown, force, close_listener, &connections, &cut).await;

        admin_stop.cancel();
        let _ = admin_task.await;
        Ok(report)
    }
}

fn log_listening(app: &TcpListener, admin: &TcpListener) {
    match (app.local_addr(), admin.local_addr()) {
        (Ok(app), Ok(admin)) => info!(listen = %app, admin = %admin, "serving"),
        _ => info!("serving"),
    }
}

/// State every task of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) metrics: Metrics,
    /// Application HTTP/1: no hyper timer. Its header read timeout would arm
    /// and drop a timer for every request; `conn` enforces it lazily instead.
    pub(crate) h1: http1::Builder,
    /// Admin HTTP/1, with hyper's own header read timeout.
    pub(crate) admin_h1: http1::Builder,
    pub(crate) h2: http2::Builder<TokioExecutor>,
    /// Handed to every request, in its extensions.
    pub(crate) drain: Drain,
    epoch: Instant,
}

impl Shared {
    pub(crate) fn new(config: Config, metrics: Metrics, lifecycle: Lifecycle) -> Self {
        let h1 = http1::Builder::new();
        let mut admin_h1 = http1::Builder::new();
        admin_h1
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout.min(crate::config::LONGEST));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        Self {
            config,
            drain: lifecycle.drain(),
            lifecycle,
            metrics,
            h1,
            admin_h1,
            h2,
            epoch: Instant::now(),
        }
    }

    /// The instant a timestamp from [`Self::nanos_since_epoch`] stands for.
    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// A compact timestamp for per-connection atomics.
    pub(crate) fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What [`Server::serve`] serves: any hyper service, cloneable and sendable
/// across threads, whose response body hyper can send. Implemented for every
/// such service; there is nothing to implement. Wrap a tower service (an axum
/// `Router`, say) with [`from_tower`](crate::from_tower).
pub trait AppService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The response body.
    type Body: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> AppService for S
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Body = B;
}

/// Accepts application connections until `stop`, then drops the listener, so
/// that new connections are refused.
async fn accept(
    listener: TcpListener,
    service: impl AppService,
    shared: Arc<Shared>,
    connections: TaskTracker,
    cut: CancellationToken,
    stop: CancellationToken,
) {
    // Beyond the limit, connections wait in the kernel's backlog.
    let limit = shared
        .config
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS);
    let limit = Arc::new(Semaphore::new(limit));
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            stream = accept_one(&listener, "application") => match stream {
                Some(stream) => stream,
                None => continue,
            },
        };
        set_nodelay(&stream);
        connections.spawn(conn::serve(
            stream,
            service.clone(),
            Arc::clone(&shared),
            cut.clone(),
            permit,
        ));
    }
    // Internal: the kernel has completed the handshake of the connections in
    // the backlog, and their clients may have sent a request already; closing
    // the listener would reset them. Take them out first, then close; each is
    // served once a permit frees up (from now on every connection closes
    // after its next response), or dropped by a forced shutdown.
    let waiting = take_backlog(listener);
    if !waiting.is_empty() {
        debug!(
            connections = waiting.len(),
            "serving the listener's backlog"
        );
    }
    for stream in waiting {
        set_nodelay(&stream);
        let (limit, service, shared, cut) = (
            Arc::clone(&limit),
            service.clone(),
            Arc::clone(&shared),
            cut.clone(),
        );
        connections.spawn(async move {
            let permit = tokio::select! {
                biased;
                () = cut.cancelled() => return,
                permit = limit.acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            conn::serve(stream, service, shared, cut, permit).await;
        });
    }
    debug!("application listener closed");
}

/// At most this many connections are taken from the backlog: more than any
/// listen backlog holds, so that only a flood of new connections can reach
/// it, and the listener still closes.
const BACKLOG_LIMIT: usize = 65_536;

/// Accepts what the kernel has queued on `listener` without waiting, then
/// closes it.
fn take_backlog(listener: TcpListener) -> Vec<TcpStream> {
    // Internal: straight `accept` calls, not tokio's, which trust a readiness
    // flag that may not have caught up with the queue yet.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            debug!(%error, "cannot take the listener's backlog");
            return Vec::new();
        }
    };
    let mut streams = Vec::new();
    while streams.len() < BACKLOG_LIMIT {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let stream = stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream));
                match stream {
                    Ok(stream) => streams.push(stream),
                    Err(error) => debug!(%error, "cannot serve a connection from the backlog"),
                }
            }
            Err(error) if is_connection_error(&error) => {}
            // `WouldBlock`: the backlog is empty.
            Err(_) => break,
        }
    }
    streams
}

fn set_nodelay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// Accepts one connection. `None` after an error: at once when it concerned
/// only that connection, after a pause when it concerns the listener (out of
/// file descriptors, typically), so that the loop does not spin.
pub(crate) async fn accept_one(listener: &TcpListener, which: &str) -> Option<TcpStream> {
    match listener.accept().await {
        Ok((stream, _peer)) => Some(stream),
        Err(error) if is_connection_error(&error) => None,
        Err(error) => {
            error!(%error, "{which} accept failed; retrying in 100ms");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Errors that concern one connection only, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
