//! The library API in-process: an axum `Router` served with the same
//! shutdown, a caller-supplied registry, and the report `serve` returns.

use std::time::Duration;

use axum::{Extension, Router, routing::get};
use lameduck::{AppService, Config, Drain, Listeners, Phase, Server, ShutdownReport, from_tower};
use prometheus::{Encoder, Registry, TextEncoder};
use testkit::{Conn, Metrics, PATIENCE};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "axum\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow\n"
            }),
        )
        .route(
            "/until-drained",
            get(|Extension(drain): Extension<Drain>| async move {
                drain.draining().await;
                "drained\n"
            }),
        )
        .route(
            "/stuck",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "never\n"
            }),
        )
}

struct Running {
    app: std::net::SocketAddr,
    registry: Registry,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<ShutdownReport, lameduck::Error>>,
}

async fn start(server: Server) -> Running {
    start_serving(server, from_tower(router())).await
}

async fn start_serving(server: Server, service: impl AppService) -> Running {
    let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = app_listener.local_addr().unwrap();
    let registry = Registry::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let listeners = Listeners {
        app: app_listener,
        admin,
    };
    let served = tokio::spawn(server.with_registry(registry.clone()).serve(
        listeners,
        service,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        app,
        registry,
        stop,
        served,
    }
}

fn metrics(registry: &Registry) -> Metrics {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    Metrics(String::from_utf8(text).unwrap())
}

/// Waits, off the runtime's workers, until `registry` shows `series` at `value`.
async fn wait_for_metric(registry: &Registry, series: &'static str, value: f64) {
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || {
        testkit::wait_for_metric(series, value, || metrics(&registry));
    })
    .await
    .unwrap();
}

async fn wait_active(registry: &Registry, n: f64) {
    wait_for_metric(registry, "http_server_active_requests", n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_gets_the_same_graceful_shutdown() {
    let running = start(Server::new(Config::default())).await;
    let addr = running.app;
    let client = tokio::task::spawn_blocking(move || {
        let mut conn = Conn::connect(addr).unwrap();
        let first = conn.get("/").unwrap();
        let slow = conn.get("/slow").unwrap();
        (first, slow, conn.closed_within(PATIENCE))
    });
    wait_active(&running.registry, 1.0).await;
    running.stop.send(()).unwrap();

    let (first, slow, closed) = client.await.unwrap();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"axum\n"[..]));
    assert!(!first.says_close());
    assert_eq!(slow.status, 200);
    assert!(slow.says_close(), "{slow:?}");
    assert!(closed);

    let report = running.served.await.unwrap().unwrap();
    assert_eq!(report.outcome, Phase::Done);
    assert!(!report.is_forced());
    assert_eq!((report.completed, report.aborted), (1, 0));
    let after = metrics(&running.registry);
    assert_eq!(after.get("lameduck_shutdown_phase"), 3.0);
    assert_eq!(
        after.get("lameduck_shutdown_duration_seconds"),
        report.duration.as_secs_f64()
    );
    assert_eq!(
        after.get(r#"http_server_request_duration_seconds_count{code="200",method="GET"}"#),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_shutdown_counts_aborted_requests() {
    let mut config = Config::default();
    config.shutdown_timeout = Duration::from_millis(200);
    let running = start(Server::new(config)).await;
    let addr = running.app;
    let clients: Vec<_> = (0..2)
        .map(|_| {
            tokio::task::spawn_blocking(move || Conn::connect(addr).unwrap().get("/stuck").is_err())
        })
        .collect();
    wait_active(&running.registry, 2.0).await;
    running.stop.send(()).unwrap();

    let report = running.served.await.unwrap().unwrap();
    assert_eq!(report.outcome, Phase::Forced);
    assert_eq!(report.aborted, 2);
    for client in clients {
        assert!(client.await.unwrap(), "a cut-off request got a response");
    }
    let after = metrics(&running.registry);
    assert_eq!(after.get("lameduck_shutdown_aborted_requests_total"), 2.0);
    assert_eq!(after.get("lameduck_shutdown_phase"), 4.0);
}

#[tokio::test]
async fn force_before_shutdown_stops_at_once() {
    let running = start(Server::new(Config::default()).force_on(async {})).await;
    let report = tokio::time::timeout(PATIENCE, running.served)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, Phase::Forced);
    assert_eq!(report.aborted, 0);
    drop(running.stop);
}

#[tokio::test]
async fn two_servers_cannot_share_one_registry() {
    let registry = Registry::new();
    let serve = |registry: Registry| async move {
        let listener = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        Server::new(Config::default())
            .with_registry(registry)
            .serve(
                Listeners {
                    app: listener().await,
                    admin: listener().await,
                },
                from_tower(router()),
                async {},
            )
            .await
    };
    serve(registry.clone()).await.unwrap();
    let error = serve(registry).await.unwrap_err();
    assert!(matches!(error, lameduck::Error::Metrics(_)), "{error}");
}

/// Answers `Upgrade: echo` with 101 and then echoes four bytes; anything else with 200.
async fn echo_upgrade(
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if request.headers().get(http::header::UPGRADE).is_none() {
        return Ok(hyper::Response::new("plain\n".into()));
    }
    tokio::spawn(async move {
        let upgraded = hyper::upgrade::on(&mut request).await.unwrap();
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut bytes = [0; 4];
        io.read_exact(&mut bytes).await.unwrap();
        io.write_all(&bytes).await.unwrap();
    });
    let mut response = hyper::Response::new(http_body_util::Full::default());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(http::header::CONNECTION, "upgrade".parse().unwrap());
    headers.insert(http::header::UPGRADE, "echo".parse().unwrap());
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_handed_over_on_new_and_parked_connections() {
    let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = app_listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(Server::new(Config::default()).serve(
        Listeners {
            app: app_listener,
            admin,
        },
        hyper::service::service_fn(echo_upgrade),
        async {
            let _ = stopped.await;
        },
    ));
    let upgrade = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    tokio::task::spawn_blocking(move || {
        let mut fresh = Conn::connect(addr).unwrap();
        let mut parked = Conn::connect(addr).unwrap();
        assert_eq!(parked.get("/").unwrap().status, 200);
        // Past the idle second after which hyper lets go of the connection.
        std::thread::sleep(Duration::from_millis(1300));
        for conn in [&mut fresh, &mut parked] {
            conn.send_raw(upgrade).unwrap();
            assert_eq!(conn.recv().unwrap().status, 101);
            conn.send_raw(b"ping").unwrap();
            assert_eq!(conn.read_raw(4).unwrap(), b"ping");
        }
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(PATIENCE, served)
        .await
        .expect("upgraded connections are no longer tracked")
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, Phase::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_settings_neither_panic_nor_block() {
    let mut config = Config::default();
    config.header_read_timeout = Duration::MAX;
    config.idle_timeout = Duration::MAX;
    config.idle_grace = Duration::MAX;
    config.max_connections = usize::MAX;
    let running = start(Server::new(config)).await;
    let addr = running.app;
    let response = tokio::task::spawn_blocking(move || Conn::connect(addr).unwrap().get("/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 200);
    running.stop.send(()).unwrap();
    let report = tokio::time::timeout(PATIENCE, running.served)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert_eq!(report.outcome, Phase::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_and_background_tasks_see_the_drain() {
    let server = Server::new(Config::default());
    let drain = server.drain();
    assert!(!drain.is_draining());
    let background = tokio::spawn(async move {
        drain.closing().await;
        drain.phase()
    });
    let running = start(server).await;
    let addr = running.app;
    let client =
        tokio::task::spawn_blocking(move || Conn::connect(addr).unwrap().get("/until-drained"));
    wait_active(&running.registry, 1.0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!client.is_finished() && !background.is_finished());

    running.stop.send(()).unwrap();
    let response = client.await.unwrap().unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"drained\n"[..])
    );
    assert!(response.says_close());
    let phase = tokio::time::timeout(PATIENCE, background)
        .await
        .unwrap()
        .unwrap();
    assert!(phase >= Phase::Closing, "{phase}");
    let report = running.served.await.unwrap().unwrap();
    assert_eq!((report.outcome, report.completed), (Phase::Done, 1));
}

/// Answers any request with 101, then reads the upgraded connection until
/// it fails or ends, and only then drops it: a WebSocket whose client never
/// closes, as far as the server can tell.
async fn hold_upgrade(
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(&mut request).await else {
            return;
        };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut buf = [0; 64];
        while let Ok(1..) = io.read(&mut buf).await {}
    });
    let mut response = hyper::Response::new(http_body_util::Full::default());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(http::header::CONNECTION, "upgrade".parse().unwrap());
    headers.insert(http::header::UPGRADE, "hold".parse().unwrap());
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_shutdown_drops_upgraded_connections_and_counts_them() {
    let mut config = Config::default();
    config.shutdown_timeout = Duration::from_millis(300);
    let service = hyper::service::service_fn(hold_upgrade);
    let running = start_serving(Server::new(config), service).await;
    let addr = running.app;
    let mut conn = tokio::task::spawn_blocking(move || {
        let mut conn = Conn::connect(addr).unwrap();
        conn.send_raw(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: hold\r\n\r\n")
            .unwrap();
        assert_eq!(conn.recv().unwrap().status, 101);
        conn
    })
    .await
    .unwrap();
    wait_for_metric(&running.registry, "lameduck_upgraded_connections", 1.0).await;
    assert_eq!(
        metrics(&running.registry).get("http_server_open_connections"),
        1.0
    );

    running.stop.send(()).unwrap();
    let report = running.served.await.unwrap().unwrap();
    assert_eq!(
        (report.outcome, report.aborted, report.aborted_upgraded),
        (Phase::Forced, 0, 1)
    );
    let after = metrics(&running.registry);
    assert_eq!(
        after.get("lameduck_shutdown_aborted_upgraded_connections_total"),
        1.0
    );
    assert_eq!(after.get("lameduck_upgraded_connections"), 0.0);
    assert_eq!(after.get("http_server_open_connections"), 0.0);

    // The socket is closed, although the runtime, and the task that owned
    // it, live on.
    let closed = tokio::task::spawn_blocking(move || conn.closed_within(PATIENCE))
        .await
        .unwrap();
    assert!(closed, "the upgraded connection was not dropped");
}
