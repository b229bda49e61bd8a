//! The long-lived clients: clean ends and reconnects, and every cause of a
//! failed stream, against a server that produces it.

mod support;

use std::time::Duration;

use loadgen::{Config, Report, StreamFailure};
use support::fake_streams::{Sse, StreamServer, Ws, streams_add_up};
use support::{refused_addr, run};

/// A second of light request load beside `sse` and `ws` clients, an event
/// or message every 20 ms.
fn config(target: String, sse: usize, ws: usize) -> Config {
    Config {
        rate: 20.0,
        duration: Some(Duration::from_secs(1)),
        timeout: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(5),
        slow_fraction: 0.0,
        keepalive_conns: 1,
        sse_clients: sse,
        ws_clients: ws,
        stream_interval: Duration::from_millis(20),
        // The fake answers every other request with its name; it echoes
        // nothing.
        post_fraction: 0.0,
        ..Config::new(target)
    }
}

async fn run_against(sse: Sse, ws: Ws, clients: (usize, usize)) -> Report {
    let server = StreamServer::start(sse, ws).await;
    let report = run(config(server.target(), clients.0, clients.1)).await;
    streams_add_up(&report);
    report
}

/// Every failure of this kind of stream has `cause`, and there is one.
fn only_cause(s: &loadgen::StreamReport, cause: StreamFailure) {
    assert!(s.failed > 0, "{s:#?}");
    assert!(s.errors.iter().all(|e| e.cause == cause), "{s:#?}");
}

#[tokio::test]
async fn sse_streams_that_say_goodbye_are_followed_by_new_ones() {
    let r = run_against(Sse::Goodbye, Ws::Forever, (2, 0)).await;
    let s = &r.streams.sse;
    assert_eq!(s.failed, 0, "{s:#?}");
    assert!(s.ended_clean >= 4 && s.reconnects >= 4, "{s:#?}");
    assert!(s.events >= 2 * s.ended_clean, "{s:#?}");
    // A stream is named by its first event; one the client closed at the
    // end of the run before that event came stays unnamed.
    let named = s.served_by.get("fake").copied().unwrap_or_default();
    assert_eq!(s.served_by.len(), 1, "{s:#?}");
    assert!(
        named <= s.opened && named >= s.opened - s.closed_by_client,
        "{s:#?}"
    );
    assert_eq!(r.streams.ws.opened, 0);
    assert!(r.is_clean(), "{r:#?}");
}

#[tokio::test]
async fn streams_open_at_the_end_are_closed_by_the_client() {
    let r = run_against(Sse::Forever, Ws::Forever, (3, 3)).await;
    for s in [&r.streams.sse, &r.streams.ws] {
        assert_eq!(
            (s.opened, s.closed_by_client, s.failed),
            (3, 3, 0),
            "{s:#?}"
        );
        assert_eq!(s.reconnects, 0);
    }
    let ws = &r.streams.ws;
    assert!(ws.messages_echoed > 0, "{ws:#?}");
    assert_eq!(ws.messages_echoed, ws.messages_sent, "{ws:#?}");
    assert!(r.is_clean());
}

#[tokio::test]
async fn an_sse_stream_ending_without_its_goodbye_is_truncated() {
    let r = run_against(Sse::EndWithoutGoodbye, Ws::Forever, (2, 0)).await;
    only_cause(&r.streams.sse, StreamFailure::Truncated);
    assert_eq!(r.streams.sse.reconnects, 0, "a failure is not a clean end");
    assert!(!r.is_clean());
    assert_eq!(r.stream_failures, r.streams.sse.failed);
}

#[tokio::test]
async fn a_reset_sse_stream_is_counted_as_reset() {
    let r = run_against(Sse::Reset, Ws::Forever, (2, 0)).await;
    only_cause(&r.streams.sse, StreamFailure::Reset);
}

#[tokio::test]
async fn an_sse_error_status_is_counted_as_status() {
    let r = run_against(Sse::Unavailable, Ws::Forever, (1, 0)).await;
    only_cause(&r.streams.sse, StreamFailure::Status);
    assert_eq!(r.streams.sse.opened, 0);
}

#[tokio::test]
async fn websockets_closed_with_going_away_reconnect() {
    let r = run_against(Sse::Forever, Ws::EchoThenClose(1001), (0, 2)).await;
    let s = &r.streams.ws;
    assert_eq!(s.failed, 0, "{s:#?}");
    assert!(s.ended_clean >= 2 && s.reconnects >= 2, "{s:#?}");
    assert!(s.messages_echoed >= 3 * s.ended_clean, "{s:#?}");
    assert!(r.is_clean());
}

#[tokio::test]
async fn another_close_code_is_a_failure() {
    let r = run_against(Sse::Forever, Ws::EchoThenClose(1011), (0, 2)).await;
    only_cause(&r.streams.ws, StreamFailure::CloseCode);
    assert!(r.streams.ws.errors[0].message.contains("1011"), "{r:#?}");
}

#[tokio::test]
async fn a_message_never_echoed_is_a_failure() {
    let r = run_against(Sse::Forever, Ws::Mute, (0, 1)).await;
    only_cause(&r.streams.ws, StreamFailure::Unechoed);
}

#[tokio::test]
async fn a_websocket_dropped_without_a_close_frame_is_truncated_or_reset() {
    let r = run_against(Sse::Forever, Ws::EchoThenDrop, (0, 2)).await;
    let s = &r.streams.ws;
    assert!(s.failed > 0, "{s:#?}");
    assert_eq!(s.failures.truncated + s.failures.reset, s.failed, "{s:#?}");
}

/// A message that crossed the server's close is sent again on the next
/// stream, where it must be echoed; that is not a failure.
#[tokio::test]
async fn a_message_crossing_the_close_is_resent_once() {
    let r = run_against(Sse::Forever, Ws::SwallowThenGoAway, (0, 1)).await;
    let s = &r.streams.ws;
    assert_eq!(s.failed, 0, "{s:#?}");
    assert_eq!(
        (s.ended_clean, s.reconnects, s.resent_after_close),
        (1, 1, 1),
        "{s:#?}"
    );
    // Everything sent was echoed but the swallowed message's first send; its
    // resend came back first, in order, on the second stream.
    assert_eq!(s.messages_echoed, s.messages_sent - 1, "{s:#?}");
    assert!(r.is_clean());
}

#[tokio::test]
async fn refused_connects_are_counted_and_retried() {
    let target = refused_addr().await.to_string();
    let config = Config {
        fresh_fraction: 1.0,
        keepalive_conns: 0,
        ..config(target, 1, 1)
    };
    let r = run(config).await;
    streams_add_up(&r);
    for s in [&r.streams.sse, &r.streams.ws] {
        only_cause(s, StreamFailure::ConnectRefused);
        // One attempt per interval, not a spin.
        assert!((2..=100).contains(&s.failed), "{s:#?}");
    }
}
