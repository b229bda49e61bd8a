//! The server: an application listener, an admin listener, one service, one
//! shutdown. Listeners come in already bound, so the caller picks the
//! addresses (tests bind port 0) and reports bind errors in its own words.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::accept::accept;
use crate::admin;
use crate::config::Config;
use crate::context::ServerContext;
use crate::drain::Drain;
use crate::error::Error;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::service::AppService;
use crate::shutdown::{self, ShutdownReport};

/// The two listeners of a server, already bound (tests bind port 0), named
/// so that they cannot be passed the wrong way round.
#[derive(Debug)]
pub struct Listeners {
    /// Serves the application.
    pub app: TcpListener,
    /// Serves `/livez`, `/readyz` and `/metrics`; closes last.
    pub admin: TcpListener,
}

/// Serves an application with lameduck's listeners, probes, metrics and
/// shutdown sequence.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use lameduck::Listeners;
/// use tokio::net::TcpListener;
///
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
/// let listeners = Listeners {
///     app: TcpListener::bind("0.0.0.0:8080").await?,
///     admin: TcpListener::bind("0.0.0.0:8081").await?,
/// };
/// let (shutdown, force) = lameduck::signals::shutdown_signals()?;
/// let report = lameduck::Server::new(lameduck::Config::default())
///     .force_on(force)
///     .serve(listeners, lameduck::from_tower(app), shutdown)
///     .await?;
/// std::process::exit(if report.is_forced() { 1 } else { 0 });
/// # }
/// ```
pub struct Server {
    config: Config,
    registry: Registry,
    force: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    lifecycle: Arc<Lifecycle>,
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
            lifecycle: Arc::default(),
        }
    }

    /// A handle on this server's shutdown, for code that runs beside the
    /// server (a background task, a stream that is not tied to a request).
    /// Requests carry their own copy in their extensions.
    pub fn drain(&self) -> Drain {
        Drain::new(self.lifecycle.subscribe())
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

    /// Serves `service` on the application listener and the probes and
    /// metrics on the admin listener until `shutdown` completes, then drains
    /// and shuts down as configured.
    ///
    /// Returns once every application connection has closed (or was dropped)
    /// and the scrapers of `/metrics` have read the final figures (see
    /// [`Config::final_scrape_timeout`](crate::Config::final_scrape_timeout));
    /// the admin listener is the last thing to close. Any hyper service will
    /// do; wrap a tower service (an axum `Router`, say) with
    /// [`from_tower`](crate::from_tower).
    ///
    /// # Errors
    ///
    /// [`Error::Metrics`] if the registry already holds metrics of the same names.
    pub async fn serve(
        self,
        listeners: Listeners,
        service: impl AppService,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, Error> {
        let Listeners { app, admin } = listeners;
        let metrics = Metrics::new(self.registry, Arc::clone(&self.lifecycle))?;
        let shared = Arc::new(ServerContext::new(self.config, metrics, self.lifecycle));
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
