//! HTTP/2 (h2c, prior knowledge): GOAWAY on draining, in-flight streams finish.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Lameduck, PATIENCE};
use h2::client::SendRequest;
use http::Request;

async fn connect(
    server: &Lameduck,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(server.app).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(connection))
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://test{path}")).body(()).unwrap()
}

/// Sends a GET and reads the whole response.
async fn fetch(client: &mut SendRequest<Bytes>, path: &str) -> Result<(u16, Bytes), h2::Error> {
    let (response, _) = client.send_request(get(path), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, Bytes::from(bytes)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_on_draining_and_the_in_flight_stream_completes() {
    let mut server = Lameduck::start(&["--drain-delay", "2s"]);
    let (mut client, connection) = connect(&server).await;
    assert_eq!(fetch(&mut client, "/").await.unwrap().0, 200);

    let mut slow_client = client.clone();
    let slow = tokio::spawn(async move { fetch(&mut slow_client, "/work?ms=800").await });
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + PATIENCE;
        while server.metrics().value("http_server_active_requests") != Some(1.0) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        server.terminate();
    });

    let (status, body) = slow.await.unwrap().expect("the in-flight stream failed");
    assert_eq!(status, 200);
    assert!(body.starts_with(b"worked 800 ms"), "{body:?}");

    // GOAWAY: the connection takes no new streams and ends cleanly, while the
    // server is still draining.
    let refused = tokio::time::timeout(PATIENCE, async {
        match client.ready().await {
            Err(error) => error,
            Ok(mut ready) => fetch(&mut ready, "/").await.unwrap_err(),
        }
    })
    .await
    .expect("a new stream neither failed nor succeeded");
    assert!(refused.is_go_away(), "{refused:?}");
    assert_eq!(refused.reason(), Some(h2::Reason::NO_ERROR), "{refused:?}");
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the connection stayed open after GOAWAY")
        .unwrap()
        .expect("the connection ended with an error");

    // A new connection during the drain is served, then told to go away too.
    let (mut late, late_connection) = connect(&server).await;
    assert_eq!(
        fetch(&mut late, "/").await.unwrap(),
        (200, Bytes::from("test-replica"))
    );
    tokio::time::timeout(PATIENCE, late_connection)
        .await
        .expect("the late connection got no GOAWAY")
        .unwrap()
        .unwrap();

    let code = tokio::task::block_in_place(|| server.exit_code());
    assert_eq!(code, 0);
}
