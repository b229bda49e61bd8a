//! An axum `Router` behind lameduck's listeners, probes, metrics and shutdown.
//!
//! ```text
//! cargo run -p lameduck --example axum
//! curl localhost:8080/hello; curl localhost:8081/readyz
//! curl localhost:8080/slow & kill -TERM <pid>   # the slow request still completes
//! ```

use std::time::Duration;

use axum::{Router, routing::get};
use lameduck::{Config, Listeners, Server, from_tower, signals};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let app = Router::new()
        .route("/hello", get(|| async { "hello from axum\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "finished, even though shutdown began\n"
            }),
        );

    let mut config = Config::default();
    config.drain_delay = Duration::from_secs(2);
    config.shutdown_timeout = Duration::from_secs(10);

    let (shutdown, force) = signals::shutdown_signals()?;
    let report = Server::new(config)
        .force_on(force)
        .serve(
            Listeners {
                app: TcpListener::bind("127.0.0.1:8080").await?,
                admin: TcpListener::bind("127.0.0.1:8081").await?,
            },
            from_tower(app),
            shutdown,
        )
        .await?;
    println!("{report:?}");
    std::process::exit(i32::from(report.is_forced()));
}
