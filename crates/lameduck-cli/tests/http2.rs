//! HTTP/2 (h2c, prior knowledge): GOAWAY on draining, in-flight streams finish.

use std::collections::BTreeMap;

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use testkit::{Lameduck, PATIENCE};

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

/// A client that writes HTTP/2 frames by hand, so that a test decides their
/// order and which of them share a packet.
mod raw {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    use super::PATIENCE;

    pub(super) const HEADERS: u8 = 0x1;
    pub(super) const DATA: u8 = 0x0;
    pub(super) const RST_STREAM: u8 = 0x3;
    pub(super) const SETTINGS: u8 = 0x4;
    pub(super) const PING: u8 = 0x6;
    pub(super) const GOAWAY: u8 = 0x7;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const ACK: u8 = 0x1;

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A GET as one HEADERS frame, HPACK-encoded without the dynamic table.
    pub(super) fn get(stream: u32, path: &str) -> Vec<u8> {
        // :method GET, :scheme http (static table), :authority and :path
        // as literals without indexing.
        let mut block = vec![0x82, 0x86, 0x01, 4];
        block.extend_from_slice(b"test");
        block.extend_from_slice(&[0x04, u8::try_from(path.len()).unwrap()]);
        block.extend_from_slice(path.as_bytes());
        frame(HEADERS, END_HEADERS | END_STREAM, stream, &block)
    }

    pub(super) fn ping_ack(payload: &[u8]) -> Vec<u8> {
        frame(PING, ACK, 0, payload)
    }

    #[derive(Debug)]
    pub(super) struct Frame {
        pub(super) kind: u8,
        pub(super) flags: u8,
        pub(super) stream: u32,
        pub(super) payload: Vec<u8>,
    }

    impl Frame {
        pub(super) fn ends_stream(&self) -> bool {
            matches!(self.kind, HEADERS | DATA) && self.flags & END_STREAM != 0
        }
        pub(super) fn goaway_last_stream(&self) -> u32 {
            u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff
        }
    }

    pub(super) struct Client(TcpStream);

    impl Client {
        /// Connects and sends the preface and empty SETTINGS.
        pub(super) fn connect(addr: SocketAddr) -> Self {
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(PATIENCE)).unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut client = Client(tcp);
            let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            hello.extend(frame(SETTINGS, 0, 0, &[]));
            client.write(&hello);
            client
        }

        /// Everything in one write, so it leaves in one packet.
        pub(super) fn write(&mut self, bytes: &[u8]) {
            self.0.write_all(bytes).unwrap();
        }

        /// The next frame; SETTINGS are acknowledged on the way. `None` at
        /// the end of the connection.
        pub(super) fn next(&mut self) -> Option<Frame> {
            let mut header = [0; 9];
            if let Err(e) = self.0.read_exact(&mut header) {
                assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
                return None;
            }
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0; len];
            self.0.read_exact(&mut payload).unwrap();
            let frame = Frame {
                kind: header[3],
                flags: header[4],
                stream: u32::from_be_bytes(header[5..9].try_into().unwrap()) & 0x7fff_ffff,
                payload,
            };
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                self.write(&self::frame(SETTINGS, ACK, 0, &[]));
            }
            Some(frame)
        }

        /// Reads until a frame matches.
        pub(super) fn until(
            &mut self,
            what: &str,
            mut matches: impl FnMut(&Frame) -> bool,
        ) -> Frame {
            loop {
                let frame = self
                    .next()
                    .unwrap_or_else(|| panic!("closed before {what}"));
                if matches(&frame) {
                    return frame;
                }
            }
        }

        /// Reads to the end of the connection: the streams that ended, the
        /// GOAWAYs' last-stream-ids and the streams reset (with their codes).
        pub(super) fn rest(&mut self) -> (Vec<u32>, Vec<u32>, BTreeMap<u32, u32>) {
            let (mut ended, mut goaways, mut resets) = (Vec::new(), Vec::new(), BTreeMap::new());
            while let Some(frame) = self.next() {
                match frame.kind {
                    GOAWAY => goaways.push(frame.goaway_last_stream()),
                    RST_STREAM => {
                        let code = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                        resets.insert(frame.stream, code);
                    }
                    _ if frame.ends_stream() => ended.push(frame.stream),
                    _ => {}
                }
            }
            (ended, goaways, resets)
        }
    }
}

/// Streams whose HEADERS follow the client's acknowledgement of the shutdown
/// PING, in the same packet: the order in which h2's client sends streams it
/// opened just before it read the first GOAWAY. The server must serve them
/// (or refuse them as unprocessed); with the acknowledgement taken at once,
/// the final GOAWAY's last-stream-id left them out and they were lost to
/// clients that do not resend.
fn streams_opened_as_the_goaway_arrives(args: &[&str]) -> (Vec<u32>, Vec<u32>, BTreeMap<u32, u32>) {
    let server = Lameduck::start(args);
    let mut client = raw::Client::connect(server.app);
    // Stream 1 keeps the connection busy across the shutdown.
    client.write(&raw::get(1, "/work?ms=1500"));
    let deadline = std::time::Instant::now() + PATIENCE;
    while server.metrics().value("http_server_active_requests") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "stream 1 never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.terminate();
    let first = client.until("the first GOAWAY", |f| f.kind == raw::GOAWAY);
    assert_eq!(
        first.goaway_last_stream(),
        (1 << 31) - 1,
        "the first GOAWAY announces"
    );
    let ping = client.until("the shutdown PING", |f| f.kind == raw::PING && f.flags == 0);
    let mut packet = raw::ping_ack(&ping.payload);
    packet.extend(raw::get(3, "/"));
    packet.extend(raw::get(5, "/"));
    client.write(&packet);
    client.rest()
}

#[test]
fn streams_sent_right_after_the_shutdown_ping_ack_are_served() {
    let (mut ended, goaways, resets) = streams_opened_as_the_goaway_arrives(&[]);
    ended.sort_unstable();
    assert_eq!(
        ended,
        [1, 3, 5],
        "every stream answered; GOAWAYs {goaways:?}, resets {resets:?}"
    );
    assert_eq!(goaways, [5], "the final GOAWAY covers streams 3 and 5");
    assert!(resets.is_empty(), "{resets:?}");
}

/// The negative control: without the grace (`--idle-grace 0s`), the
/// acknowledgement is taken at once and streams 3 and 5 are above the final
/// GOAWAY's last-stream-id, never answered. Shows the test above can fail.
#[test]
fn without_the_grace_those_streams_are_refused() {
    let (ended, goaways, resets) = streams_opened_as_the_goaway_arrives(&["--idle-grace", "0s"]);
    assert_eq!(ended, [1], "only stream 1 answered; resets {resets:?}");
    assert_eq!(goaways, [1], "the final GOAWAY leaves streams 3 and 5 out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_echoes_over_http2() {
    let server = Lameduck::start(&[]);
    let (mut client, _connection) = connect(&server).await;
    let body = Bytes::from((0..=255u8).cycle().take(20_000).collect::<Vec<u8>>());
    let request = Request::post("http://test/")
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(body.clone(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut echoed = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = echoed.data().await {
        let chunk = chunk.unwrap();
        echoed.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    assert!(bytes == body, "the same {} bytes", body.len());
}
