//! Long-lived responses through a shutdown, with the real binary and real
//! clients: a Server-Sent Events stream and WebSockets, ended cleanly when
//! the server drains, held until they close, cut at the shutdown timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use testkit::{Conn, Lameduck, PATIENCE};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// Reads until `done` holds for what was read, the peer closes, or PATIENCE.
fn read_until(stream: &mut TcpStream, read: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0; 4096];
    while !done(read) {
        assert!(Instant::now() < deadline, "gave up; read so far: {read:?}");
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read failed: {e}; read so far: {read:?}"),
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_sse_stream_gets_a_last_event_and_a_clean_end_after_sigterm() {
    let mut server = Lameduck::start(&["--drain-delay", "300ms"]);
    let mut stream = TcpStream::connect(server.app).unwrap();
    stream
        .write_all(b"GET /events?interval=20ms HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut read = Vec::new();
    read_until(&mut stream, &mut read, |r| {
        contains(r, "data: test-replica 2\n")
    });
    assert!(read.starts_with(b"HTTP/1.1 200 OK\r\n"), "{read:?}");
    assert!(contains(&read, "content-type: text/event-stream\r\n"));

    server.terminate();
    read_until(&mut stream, &mut read, |_| false);
    let text = String::from_utf8_lossy(&read);
    assert!(
        text.ends_with("event: shutdown\ndata: test-replica\n\n\r\n0\r\n\r\n"),
        "no last event and final chunk: {text:?}"
    );
    assert_eq!(server.exit_code(), 0);
}

fn ws_connect(server: &Lameduck) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.app).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let url = format!("ws://{}/ws", server.app);
    let (ws, response) = tungstenite::client(url, stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    ws
}

fn echo(ws: &mut WebSocket<TcpStream>, text: &str) {
    ws.send(Message::text(text)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(text));
}

/// Reads until the server's close frame; returns its code.
fn close_code(ws: &mut WebSocket<TcpStream>) -> CloseCode {
    match ws.read().expect("a close frame") {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// After a close frame: tungstenite answers it, then the server ends TCP.
fn assert_closed(ws: &mut WebSocket<TcpStream>) {
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

#[test]
fn a_websocket_is_closed_with_1001_going_away_after_sigterm() {
    let mut server = Lameduck::start(&["--drain-delay", "300ms"]);
    let mut ws = ws_connect(&server);
    echo(&mut ws, "hello");

    server.terminate();
    assert_eq!(close_code(&mut ws), CloseCode::Away);
    assert_closed(&mut ws);
    assert_eq!(server.exit_code(), 0);
}

#[test]
fn an_open_websocket_keeps_the_process_alive_until_it_closes() {
    let mut server = Lameduck::start(&["--shutdown-timeout", "20s"]);
    let mut ws = ws_connect(&server);
    echo(&mut ws, "hello");
    server.wait_for_metric("lameduck_upgraded_connections", 1.0);
    assert_eq!(server.metrics().get("http_server_open_connections"), 1.0);

    // The client does not read: the server's close frame waits unanswered.
    server.terminate();
    server.wait_log_phase("closing");
    thread::sleep(Duration::from_millis(700));
    assert!(server.running(), "exited under an open WebSocket");
    assert_eq!(server.metrics().get("lameduck_upgraded_connections"), 1.0);

    let answered = Instant::now();
    assert_eq!(close_code(&mut ws), CloseCode::Away);
    assert_closed(&mut ws);
    let (status, exited) = server.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(exited.duration_since(answered) < Duration::from_secs(2));
    assert_eq!(server.wait_log("shutdown finished")["aborted_upgraded"], 0);
}

#[test]
fn a_websocket_that_never_closes_is_cut_at_the_timeout_and_counted() {
    let mut server = Lameduck::start(&["--shutdown-timeout", "500ms"]);
    let mut ws = ws_connect(&server);
    echo(&mut ws, "hello");
    server.wait_for_metric("lameduck_upgraded_connections", 1.0);

    let signalled = server.terminate();
    assert_eq!(server.exit_code(), 1);
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let forced = server.wait_log("shutdown forced: 0 requests aborted");
    assert_eq!(forced["aborted_upgraded"], 1);
    // The close frame came, then the connection was dropped.
    assert_eq!(close_code(&mut ws), CloseCode::Away);
    assert!(ws.read().is_err());
}

#[test]
fn malformed_stream_requests_get_4xx() {
    let server = Lameduck::start(&[]);
    let mut conn = Conn::connect(server.app).unwrap();
    for (path, status) in [
        ("/events?interval=1ms", 400),
        ("/events?interval=2m", 400),
        ("/events?interval=soon", 400),
        ("/ws", 400),
    ] {
        let response = conn.get(path).unwrap();
        assert_eq!(response.status, status, "{path}");
    }
    for (path, allow) in [("/events", "GET"), ("/ws", "GET"), ("/work", "GET, HEAD")] {
        let mut conn = Conn::connect(server.app).unwrap();
        conn.send_raw(
            format!("POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let response = conn.recv().unwrap();
        assert_eq!(response.status, 405, "{path}");
        assert_eq!(response.header("allow"), Some(allow), "{path}");
    }
    let bad_key = "GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
                   sec-websocket-version: 13\r\nsec-websocket-key: not-a-key\r\n\r\n";
    let mut conn = Conn::connect(server.app).unwrap();
    conn.send_raw(bad_key.as_bytes()).unwrap();
    assert_eq!(conn.recv().unwrap().status, 400);
    // The server is unharmed.
    assert_eq!(conn.get("/").unwrap().status, 200);
}

/// `--stream-drain=false`, the negative control's setting: no goodbye on
/// either kind of stream; the shutdown timeout cuts both, and counts them.
#[test]
fn without_stream_drain_streams_get_no_goodbye_and_are_cut_at_the_timeout() {
    let mut server = Lameduck::start(&["--stream-drain=false", "--shutdown-timeout", "500ms"]);
    let mut sse = TcpStream::connect(server.app).unwrap();
    sse.write_all(b"GET /events?interval=20ms HTTP/1.1\r\nhost: test\r\n\r\n")
        .unwrap();
    let mut read = Vec::new();
    read_until(&mut sse, &mut read, |r| {
        contains(r, "data: test-replica 2\n")
    });
    let mut ws = ws_connect(&server);
    echo(&mut ws, "hello");
    server.wait_for_metric("lameduck_upgraded_connections", 1.0);

    server.terminate();
    server.wait_log_phase("closing");
    // Still open and still served after the drain began.
    echo(&mut ws, "still here");
    assert_eq!(server.exit_code(), 1);
    let forced = server.wait_log("shutdown forced: 1 requests aborted");
    assert_eq!(forced["aborted_upgraded"], 1);
    read_until(&mut sse, &mut read, |_| false);
    let text = String::from_utf8_lossy(&read);
    assert!(!text.contains("event: shutdown"), "{text:?}");
    assert!(!text.ends_with("0\r\n\r\n"), "ended cleanly: {text:?}");
    match ws.read() {
        Ok(Message::Close(frame)) => panic!("a close frame: {frame:?}"),
        Ok(other) => panic!("a message: {other:?}"),
        Err(_) => {}
    }
}
