//! An HTTP server that shuts down without failing a single request.
//!
//! lameduck serves any hyper or tower service (an axum `Router` included)
//! behind a shutdown sequence made for Kubernetes rolling updates:
//!
//! 1. **Serving** until the shutdown future completes (SIGTERM, say).
//! 2. **Draining** for [`Config::drain_delay`]: `/readyz` answers 503, the
//!    listener stays open because the routing layer still sends traffic, every
//!    HTTP/1.1 response carries `Connection: close`, HTTP/2 connections get
//!    GOAWAY; idle keep-alive connections are left alone.
//! 3. **Closing** for at most [`Config::shutdown_timeout`]: the listener is
//!    closed, in-flight requests finish, keep-alive connections close once
//!    idle for [`Config::idle_grace`] (a connection used more recently gets
//!    one more response, with `Connection: close`, rather than a race).
//! 4. **Done** when the last connection closed, or **Forced** when the
//!    timeout expired or a second signal came.
//!
//! The admin listener answers `/livez`, `/readyz` and `/metrics` throughout,
//! and last: once the final figures are set, it waits, at most
//! [`Config::final_scrape_timeout`], for whoever has been scraping `/metrics`
//! to read them once more.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Incoming, service::service_fn};
//! use tokio::net::TcpListener;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let hello = service_fn(|_request: Request<Incoming>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello\n"))))
//!     });
//!     let (shutdown, force) = lameduck::signals::shutdown_signals()?;
//!     let listeners = lameduck::Listeners {
//!         app: TcpListener::bind("0.0.0.0:8080").await?,
//!         admin: TcpListener::bind("0.0.0.0:8081").await?,
//!     };
//!     let report = lameduck::Server::new(lameduck::Config::default())
//!         .force_on(force)
//!         .serve(listeners, hello, shutdown)
//!         .await?;
//!     std::process::exit(if report.is_forced() { 1 } else { 0 });
//! }
//! ```
//!
//! ## Long-lived responses
//!
//! A Server-Sent Events stream or a streamed body is a request in flight
//! until its body ends, and a WebSocket (any upgraded connection) is an open
//! connection until the application drops it: both hold the shutdown, up to
//! [`Config::shutdown_timeout`], after which they are cut off and counted.
//! To end them cleanly instead, a handler asks the [`Drain`] that every
//! request carries in its extensions (or [`Server::drain`]) when to stop:
//! send a last event and end the body, or close a WebSocket with 1001 "going
//! away". Its client then reconnects, to another replica.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use axum::response::sse::{Event, Sse};
//! use axum::{Extension, Router, routing::get};
//! use futures_util::stream::{self, Stream};
//! use lameduck::Drain;
//!
//! /// A tick a second until the server drains, then `event: shutdown`.
//! async fn ticks(
//!     Extension(drain): Extension<Drain>,
//! ) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
//!     Sse::new(stream::unfold(Some(drain), |drain| async move {
//!         let drain = drain?;
//!         tokio::select! {
//!             () = drain.stream_should_end() => {
//!                 Some((Ok(Event::default().event("shutdown").data("bye")), None))
//!             }
//!             () = tokio::time::sleep(Duration::from_secs(1)) => {
//!                 Some((Ok(Event::default().event("tick").data("tick")), Some(drain)))
//!             }
//!         }
//!     }))
//! }
//!
//! let app: Router = Router::new().route("/events", get(ticks));
//! # let _ = lameduck::from_tower(app);
//! ```
//!
//! The crate has no default features and pulls in no command-line parser,
//! logging setup or allocator: the `lameduck` binary, its command line and
//! its demo application live in the `lameduck-cli` crate.

#![warn(missing_docs)]

mod accept;
mod admin;
mod config;
mod conn;
mod context;
mod drain;
mod error;
mod lifecycle;
mod metrics;
mod quiet;
mod scrapers;
mod server;
mod service;
mod shutdown;

pub mod signals;

pub use config::Config;
pub use drain::Drain;
pub use error::Error;
pub use lifecycle::Phase;
pub use server::{Listeners, Server};
pub use service::{AppService, BoxError};
pub use shutdown::{Linger, Scraper, ShutdownReport};

/// Adapts a tower service, such as an axum `Router`, for [`Server::serve`].
pub fn from_tower<S>(service: S) -> hyper_util::service::TowerToHyperService<S> {
    hyper_util::service::TowerToHyperService::new(service)
}
