//! The Rust API (`uhura::Client`, `uhura::Server`) over real sockets on
//! 127.0.0.1 and Unix sockets: events, acks and when they are sent,
//! sessions, resumes, limits, listen errors.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{message, until, within};
use uhura::{Client, ErrorKind, Event, Options, Server, ServerOptions};

async fn server() -> Server {
    within("listen", Server::bind("127.0.0.1:0", ServerOptions::default())).await.expect("listen")
}

#[tokio::test]
async fn a_rust_server_and_client_exchange_events_and_acks() {
    let server = server().await;
    let port = server.local_addr().socket_addr().expect("an IP address").port();
    assert_ne!(port, 0);

    let client = Client::new(server.local_addr(), Options::default()).unwrap();
    // Sent before the handshake: queued, then flushed in order.
    let hello = client.send("hello", ("wörld ☃", json!({"n": [1, 2]})));
    client.set("k", 42).unwrap();

    let conn = within("accept", server.accept()).await.unwrap();
    let sid = conn.session_id().unwrap().to_owned();
    assert_eq!(sid.len(), 24);
    assert!(!conn.resumed());
    assert!(conn.acks());
    assert!(conn.extensions(), "two of our peers negotiate the extensions");
    assert_eq!(conn.peer_addr().map(|a| a.ip().to_string()).as_deref(), Some("127.0.0.1"));

    let args = message("hello", || conn.next_event()).await;
    assert_eq!(args, vec![json!("wörld ☃"), json!({"n": [1, 2]})]);
    // A set made before the client wrote its handshake is merged into the
    // session the server starts with, without an event (docs/PROTOCOL.md
    // §3). `Client::new` connects at once, though: when the handshake went
    // out first, the set follows "hello" as a `_set`, a `Set` event, and
    // may share its delivery batch, whose acks wait until all of it is
    // taken (crate::api, "Delivery guarantee"). Taken here if so.
    while let Some(e) = conn.try_next_event() {
        assert_eq!(e, Event::Set { fields: json!({"k": 42}).as_object().unwrap().clone() });
    }
    within("the client's ack", hello).await.unwrap();
    assert_eq!(conn.get("k"), Some(json!(42)));

    let (connect, _) = until("connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    assert_eq!(connect, Event::Connect { resumed: false });
    assert_eq!(client.session_id().as_deref(), Some(sid.as_str()));
    assert!(client.is_connected());

    // The ack comes once the client has taken the event.
    let back = conn.send("back", (1,));
    assert_eq!(message("back", || client.next_event()).await, vec![json!(1)]);
    within("the server's send", back).await.unwrap();
    conn.emit("bare", ()).unwrap();
    assert_eq!(message("bare", || client.next_event()).await, Vec::<serde_json::Value>::new());

    within("disconnect", client.disconnect()).await;
    assert!(!client.is_connected());
    let (bye, _) =
        until("the server sees the disconnect", || conn.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;
    assert_eq!(bye, Event::Disconnect { reconnecting: false });
    assert_eq!(within("the end of the connection's events", conn.next_event()).await, None);
    within("server closed", server.close()).await;
    assert!(within("accept after close", server.accept()).await.is_none());
}

#[tokio::test]
async fn an_ack_waits_until_the_event_is_taken() {
    let server = server().await;
    let client = Client::connect(server.local_addr(), Options::default()).await.unwrap();
    let conn = within("accept", server.accept()).await.unwrap();

    let mut first = client.send("one", ());
    let mut second = client.send("two", ());
    // Both have arrived (and the server's session saw nothing odd), but
    // nobody took them: no ack may go out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(futures_poll(&mut first).await.is_none(), "acked before the event was taken");
    assert!(futures_poll(&mut second).await.is_none(), "acked before the event was taken");

    // Taking the first may release its ack, or (when both came in one
    // delivery batch) wait for the second to be taken too; the second's
    // ack never goes out before the second is taken.
    assert_eq!(message("one", || conn.next_event()).await, Vec::<serde_json::Value>::new());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(futures_poll(&mut second).await.is_none(), "the second event is not taken yet");
    assert_eq!(conn.try_next_event(), Some(Event::Message { name: "two".into(), args: vec![] }));
    within("the first ack", &mut first).await.unwrap();
    within("the second ack", &mut second).await.unwrap();

    // One event at a time: its ack follows its taking.
    let third = client.send("three", ());
    message("three", || conn.next_event()).await;
    within("the third ack", third).await.unwrap();
}

/// Polls once, without waiting (a timeout polls its future before its deadline).
async fn futures_poll(ack: &mut uhura::Ack) -> Option<Result<(), uhura::Error>> {
    tokio::time::timeout(Duration::ZERO, ack).await.ok()
}

#[tokio::test]
async fn an_ack_timeout_fails_the_send_and_keeps_the_event() {
    let server = server().await;
    let options = Options::default().ack_timeout(Duration::from_millis(200));
    let client = Client::connect(server.local_addr(), options).await.unwrap();
    let conn = within("accept", server.accept()).await.unwrap();
    let err = within("the ack timeout", client.send("late", ())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AckTimeout);
    assert_eq!(err.code(), Some("ERR_UHURA_ACK_TIMEOUT"));
    // The event itself was not given up.
    assert_eq!(message("late", || conn.next_event()).await, Vec::<serde_json::Value>::new());
}

#[tokio::test]
async fn over_max_queue_length_the_oldest_event_is_dropped() {
    // Nothing listens there: the events wait in the queue.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = Client::new(("127.0.0.1", port), Options::default().max_queue_length(1)).unwrap();
    let oldest = client.send("a", ());
    let _newest = client.send("b", ());
    let err = within("the drop", oldest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Dropped);
    until("a Drop event", || client.next_event(), |e| *e == Event::Drop).await;
}

#[tokio::test]
async fn a_failed_connect_is_an_error_with_the_os_code() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = within("connect", Client::connect(("127.0.0.1", port), Options::default())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.code(), Some("ECONNREFUSED"));
    let bad = Client::new("no-port", Options::default()).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn sessions_are_shared_and_resume_after_a_reconnect() {
    let server = server().await;
    let client = Client::connect(server.local_addr(), Options::default()).await.unwrap();
    let first = within("accept", server.accept()).await.unwrap();
    let sid = first.session_id().unwrap().to_owned();

    client.set_fields(json!({"a": 1, "b": [true]})).unwrap();
    first.set("from", "server").unwrap();
    let (set, _) = until("the client's fields", || first.next_event(), |e| matches!(e, Event::Set { .. })).await;
    assert_eq!(set, Event::Set { fields: json!({"a": 1, "b": [true]}).as_object().unwrap().clone() });
    until(
        "the server's set",
        || client.next_event(),
        |e| matches!(e, Event::Set { fields } if fields.get("from") == Some(&json!("server"))),
    )
    .await;
    assert_eq!(client.get("from"), Some(json!("server")));
    assert_eq!(first.session().get("b"), Some(&json!([true])));
    assert!(client.set_fields(json!([1])).is_err(), "set_fields takes an object");

    client.reconnect();
    let second = within("the resumed connection", server.accept()).await.unwrap();
    assert!(second.resumed());
    assert_eq!(second.session_id(), Some(sid.as_str()));
    assert_eq!(second.get("a"), Some(json!(1)));
    assert_eq!(second.get("from"), Some(json!("server")));
    let (resumed, skipped) =
        until("the client's connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    assert_eq!(resumed, Event::Connect { resumed: true });
    // reconnect() closes and connects again at once.
    assert!(skipped.contains(&Event::Disconnect { reconnecting: true }), "{skipped:?}");
    assert_eq!(client.session_id().as_deref(), Some(sid.as_str()));
    until("the old connection's end", || first.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;

    // Sends on the old connection object still reach the session.
    let via_old = first.send("via-old", ());
    message("via-old", || client.next_event()).await;
    within("the ack of a send on the old connection", via_old).await.unwrap();
    let via_new = second.send("via-new", ());
    message("via-new", || client.next_event()).await;
    within("the ack of a send on the new connection", via_new).await.unwrap();

    // invalidateSession: the client empties its session and comes back
    // (auto-reconnect) with a new one.
    client.auto_reconnect(Duration::from_millis(10), Duration::from_millis(50));
    second.invalidate_session();
    until("invalidateSession", || client.next_event(), |e| *e == Event::InvalidateSession).await;
    let third = within("the new session's connection", server.accept()).await.unwrap();
    assert!(!third.resumed());
    assert_ne!(third.session_id(), Some(sid.as_str()));
    let (again, _) = until("the new connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    assert_eq!(again, Event::Connect { resumed: false });
    assert_eq!(client.get("a"), None);
}

/// Emits `n` events of `len` bytes one way, then the other, then an acked
/// send each way. The other side's reader usually keeps up (the Rust API
/// takes what it reads at once), but when a write blocks, nothing coming
/// back (no acks) writes more directly: a writer task must finish it.
async fn exchange_large(client: &Client, conn: &uhura::Connection, n: usize, len: usize, tag: &str) {
    let body = |i: usize| format!("{tag}{i:06}{}", "x".repeat(len));
    for i in 0..n {
        client.emit("up", (body(i),)).unwrap();
    }
    for i in 0..n {
        assert_eq!(message("up", || conn.next_event()).await, vec![json!(body(i))], "event {i} to the server");
    }
    for i in 0..n {
        conn.emit("down", (body(i),)).unwrap();
    }
    for i in 0..n {
        assert_eq!(message("down", || client.next_event()).await, vec![json!(body(i))], "event {i} to the client");
    }
    let (up, down) = (client.send("up", ("last",)), conn.send("down", ("last",)));
    assert_eq!(message("up", || conn.next_event()).await, vec![json!("last")]);
    assert_eq!(message("down", || client.next_event()).await, vec![json!("last")]);
    within("the client's ack", up).await.unwrap();
    within("the server's ack", down).await.unwrap();
}

// A native socket is not split into tokio halves (src/engine/link/io.rs):
// the reader and each writer task read and write it through streams of
// their own. The Rust API reads with tokio (not Node's loop), so its
// reader reads that way all along.
#[tokio::test]
async fn an_unsplit_socket_reads_writes_ends_and_resumes_after_a_reconnect() {
    // No heartbeats: no timer wakes a stalled writer, only its own task.
    let options = ServerOptions::default().heartbeat_interval(None);
    let server = within("listen", Server::bind("127.0.0.1:0", options)).await.expect("listen");
    let client = Client::connect(server.local_addr(), Options::default().heartbeat_interval(None)).await.unwrap();
    let first = within("accept", server.accept()).await.unwrap();
    let sid = first.session_id().unwrap().to_owned();
    // 8 MB each way.
    exchange_large(&client, &first, 64, 128 * 1024, "a").await;
    first.set("k", "v").unwrap();
    until("the set", || client.next_event(), |e| matches!(e, Event::Set { .. })).await;

    // A new socket for the same link and session: its own streams, no
    // write half left from the first one.
    client.reconnect();
    let second = within("the resumed connection", server.accept()).await.unwrap();
    assert!(second.resumed());
    assert_eq!(second.session_id(), Some(sid.as_str()));
    assert_eq!(second.get("k"), Some(json!("v")));
    until("the client's connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    until("the old connection's end", || first.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;
    exchange_large(&client, &second, 64, 128 * 1024, "b").await;
    // Small ones after the large ones: direct writes again.
    exchange_large(&client, &second, 3, 10, "c").await;

    // end(): a writer task flushes and sends FIN, the server closes, and
    // the client's end is done well before its grace period (5 s) for a
    // peer that does not close would end it.
    let started = std::time::Instant::now();
    within("disconnect", client.disconnect()).await;
    assert!(started.elapsed() < Duration::from_millis(2500), "no FIN? {:?}", started.elapsed());
    let (bye, _) =
        until("the server sees the end", || second.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;
    assert_eq!(bye, Event::Disconnect { reconnecting: false });
    assert_eq!(within("the end of the connection's events", second.next_event()).await, None);
}

// Unix sockets exist on Unix only (src/engine/transport/).
#[cfg(all(unix, not(uhura_portable)))]
#[tokio::test]
async fn a_unix_socket_server_replaces_a_stale_socket_file() {
    let dir = std::env::temp_dir().join(format!("uhura-api-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stale.sock");
    // A socket file nobody listens on, as a killed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let server = within("listen", Server::bind(path.as_path(), ServerOptions::default())).await.unwrap();
    assert_eq!(server.local_addr(), &uhura::Addr::unix(&path));

    // A second server on the same live path is refused.
    let err = within("EADDRINUSE", Server::bind(path.as_path(), ServerOptions::default())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Listen);
    assert_eq!(err.code(), Some("EADDRINUSE"));

    // A client over the Unix socket.
    let client = Client::connect(path.clone(), Options::default()).await.unwrap();
    let conn = within("accept", server.accept()).await.unwrap();
    let ack = client.send("unix", ("ok",));
    assert_eq!(message("unix", || conn.next_event()).await, vec![json!("ok")]);
    within("the ack over the Unix socket", ack).await.unwrap();
    drop(client);
    until("the disconnect", || conn.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;

    within("server closed", server.close()).await;
    assert!(!path.exists(), "close() removes the socket file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn send_to_reaches_one_session_and_broadcast_every_connection() {
    let server = server().await;
    let a = Client::connect(server.local_addr(), Options::default()).await.unwrap();
    let b = Client::connect(server.local_addr(), Options::default()).await.unwrap();
    let (sid_a, sid_b) = (a.session_id().unwrap(), b.session_id().unwrap());
    assert_ne!(sid_a, sid_b);

    within("send_to", server.send_to(&sid_b, "dm", ("to b",))).await.unwrap();
    assert_eq!(message("dm", || b.next_event()).await, vec![json!("to b")]);
    within("broadcast", server.broadcast("news", ("all", 1))).await.unwrap();
    for client in [&a, &b] {
        assert_eq!(message("news", || client.next_event()).await, vec![json!("all"), json!(1)]);
    }
    // `a` got the broadcast and nothing else: the dm went to `b` only.
    assert!(a.try_next_event().is_none(), "a's only message was the broadcast");

    let err = within("send_to an unknown session", server.send_to("no such session", "dm", ())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSession);
    assert_eq!(err.code(), Some("ERR_UHURA_NO_SESSION"));
}

/// A resent message the server already took (its ack lost on the way, say)
/// is acked again at once: its ack is queued after the batch it refers to
/// was taken, and must not wait for an event that may never come.
#[tokio::test]
async fn a_duplicate_of_a_taken_event_is_acked_again() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use uhura::protocol::entropy::Entropy;
    use uhura::protocol::peer::{Config, Event as PeerEvent, Peer, Role};

    let server = server().await;
    let addr = server.local_addr().socket_addr().expect("an IP address");
    let mut socket = within("connect", tokio::net::TcpStream::connect(addr)).await.unwrap();
    // A client of this crate's protocol, driven by hand: it can write the
    // same message twice.
    let config = Config { entropy: Some(Entropy::seeded([7; 32])), ..Config::default() };
    let mut peer = Peer::new(Role::Client, config, std::time::Instant::now());
    peer.handle_open(std::time::Instant::now());
    let mut wire = Vec::new();
    // Everything the server wrote, as text.
    let mut heard = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Writes what the peer has, then reads until `done`.
    macro_rules! exchange_until {
        ($what:expr, $done:expr) => {
            within($what, async {
                loop {
                    wire.clear();
                    peer.poll_transmit(&mut wire);
                    socket.write_all(&wire).await.unwrap();
                    let mut done = false;
                    while let Some(e) = peer.poll_event() {
                        done |= $done(&e);
                    }
                    if done {
                        return;
                    }
                    let n = socket.read(&mut buf).await.unwrap();
                    assert_ne!(n, 0, "the server closed");
                    heard.push_str(&String::from_utf8_lossy(&buf[..n]));
                    peer.handle_receive(&buf[..n], std::time::Instant::now());
                }
            })
            .await
        };
    }
    exchange_until!("the handshake", |e: &PeerEvent| matches!(e, PeerEvent::Connected { .. }));
    assert!(peer.extended(), "duplicates are told apart between peers of this crate");
    let conn = within("accept", server.accept()).await.unwrap();

    peer.send_event(r#"["once"]"#, Some((1, 1)), std::time::Instant::now());
    let mut frame = Vec::new();
    peer.poll_transmit(&mut frame);
    socket.write_all(&frame).await.unwrap();
    assert_eq!(message("once", || conn.next_event()).await, Vec::<serde_json::Value>::new());
    exchange_until!("the ack", |e: &PeerEvent| matches!(e, PeerEvent::Acked((1, 1))));
    let acks = |heard: &str| heard.matches("ack::").count();
    assert_eq!(acks(&heard), 1);

    // The same bytes again: a duplicate, not delivered, acked once more.
    socket.write_all(&frame).await.unwrap();
    within("the duplicate's ack", async {
        while acks(&heard) < 2 {
            let n = socket.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "the server closed");
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(conn.try_next_event().is_none(), "a duplicate is not delivered");
}
