//! Inputs the fuzz targets in fuzz/ found that crashed or broke an invariant, kept as
//! plain tests (`cargo test --no-default-features`). See fuzz/README.md.

use uhura::engine::lines::{parse_line, Line, LineError};

/// `Link::write_lines` sliced each line after its first byte, which panics when the line
/// starts with a multi-byte character (`byte index 1 is not a char boundary`). The
/// decoder now splits after the first character and reports an unknown tag.
#[test]
fn line_starting_with_a_multibyte_character() {
    assert_eq!(parse_line("é[\"x\"]"), Err(LineError::UnknownTag('é')));
    assert_eq!(parse_line("\u{1F600}"), Err(LineError::UnknownTag('\u{1F600}')));
    assert_eq!(parse_line("e\u{e9}"), Ok(Line::Event("\u{e9}")));
}

/// serde_json's `Value` parser (with the `raw_value` feature this crate enables) reads an
/// object whose key is `$serde_json::private::RawValue` as an embedded raw value: such a
/// `_set` failed the connection ("unreadable _set message"), a local `set()` of it failed,
/// and a string under that key was merged as if it were the JSON it contains. JSON.parse
/// takes it as an ordinary key. Found by the `session_merge` target.
#[test]
fn set_with_serde_json_raw_value_key() {
    use serde_json::json;
    use std::time::Instant;
    use uhura::protocol::entropy::Entropy;
    use uhura::protocol::peer::{Config, Event, Peer, Role};

    let key = "$serde_json::private::RawValue";
    let now = Instant::now();
    let mut peer =
        Peer::new(Role::Client, Config { entropy: Some(Entropy::seeded([1; 32])), ..Config::default() }, now);
    peer.handle_open(now);
    peer.handle_receive(b"[\n[\"connect\",{\"objectMode\":true,\"enableAcks\":true}]", now);
    assert!(peer.is_ready());
    while peer.poll_event().is_some() {}

    let set = format!("\n,\n[\"_set\",{{\"{key}\":{{\"a\":1}}}}]\n,\n[\"_set\",{{\"{key}\":\"[\\\"k\\\"]\"}}]");
    peer.handle_receive(set.as_bytes(), now);
    assert!(matches!(peer.poll_event(), Some(Event::Set(_))));
    assert!(matches!(peer.poll_event(), Some(Event::Set(_))));
    assert!(!peer.has_failed());
    assert_eq!(peer.session().get(key), Some(&json!("[\"k\"]")));
    assert_eq!(peer.session().get("k"), None);

    peer.set(&format!("[{{\"{key}\":2}}]")).unwrap();
    peer.set(&format!("[\"x\",{{\"{key}\":3}}]")).unwrap();
    assert_eq!(peer.session().get(key), Some(&json!(2)));
    assert_eq!(peer.session().get("x"), Some(&json!({ key: 3 })));
}

/// A server loading a session holds the events that arrive meanwhile. A resent duplicate
/// of one of them (a peer of ours, extensions on) was acked at once, before the original
/// was handed to the application: a crash then would lose an acknowledged event. The
/// duplicate's ack now waits behind the original, like a delivery's. Found by the `peer`
/// target.
#[test]
fn duplicate_of_a_held_event_is_not_acked_before_it() {
    use std::time::Instant;
    use uhura::protocol::entropy::Entropy;
    use uhura::protocol::peer::{Config, Event, Peer, Role};

    let now = Instant::now();
    let config = Config { defer_acks: true, entropy: Some(Entropy::seeded([2; 32])), ..Config::default() };
    let mut peer = Peer::new(Role::Server, config, now);
    peer.handle_open(now);
    peer.handle_receive(
        b"[\n[\"_set\",{\"sessionID\":\"sess1\"}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]",
        now,
    );
    assert!(matches!(peer.poll_event(), Some(Event::LoadSession(id)) if id == "sess1"));
    let event = "\n,\n{\"args\":[\"ev\",1],\"id\":\"111111111111-1\"}";
    peer.handle_receive(event.as_bytes(), now);
    peer.handle_receive(event.as_bytes(), now);
    let mut out = Vec::new();
    peer.poll_transmit(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("ack::"), "acked while held: {}", String::from_utf8_lossy(&out));

    peer.handle_session_loaded(None, now);
    let mut events = Vec::new();
    while let Some(ev) = peer.poll_event() {
        events.push(ev);
    }
    let message = events.iter().position(|e| matches!(e, Event::Message(a) if a == "[\"ev\",1]"));
    let dues: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| matches!(e, Event::AckDue { .. })).map(|(i, _)| i).collect();
    let message = message.expect("the held event is delivered");
    assert_eq!(dues.len(), 2, "one ack due for the event and one for its duplicate: {events:?}");
    assert!(dues.iter().all(|&d| d > message), "every ack comes after the delivery: {events:?}");
}

/// Events that arrive while a server loads the session are held; if the transport drops
/// before the load completes they are gone, unhandled and unacknowledged, and the client
/// resends them. Their duplicate-suppression marks stayed raised, so the resends were
/// taken for duplicates: acknowledged and never delivered. The marks now go back with the
/// held events (and a `Seen` for the store waits behind them). Found by the `peer` target.
#[test]
fn held_events_dropped_with_their_transport_are_delivered_when_resent() {
    use std::time::Instant;
    use uhura::protocol::entropy::Entropy;
    use uhura::protocol::peer::{Config, Event, Peer, Role};

    let now = Instant::now();
    let config = Config {
        defer_acks: true,
        persist_delivery: true,
        entropy: Some(Entropy::seeded([3; 32])),
        ..Config::default()
    };
    let handshake = b"[\n[\"_set\",{\"sessionID\":\"sess1\"}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]";
    let event = "\n,\n{\"args\":[\"ev\",1],\"id\":\"111111111111-1\"}";

    let mut first = Peer::new(Role::Server, config.clone(), now);
    first.handle_open(now);
    first.handle_receive(handshake, now);
    first.handle_receive(event.as_bytes(), now);
    let mut events = Vec::new();
    while let Some(ev) = first.poll_event() {
        events.push(ev);
    }
    assert!(!events.iter().any(|e| matches!(e, Event::Seen { .. })), "no mark is stored for a held event: {events:?}");
    first.handle_close();

    // The client comes back: the new connection takes the session's state over.
    let mut second = Peer::new(Role::Server, config, now);
    second.adopt_retained(first.take_retained());
    second.handle_open(now);
    second.handle_receive(handshake, now);
    second.handle_session_loaded(None, now);
    second.handle_receive(event.as_bytes(), now);
    let mut events = Vec::new();
    while let Some(ev) = second.poll_event() {
        events.push(ev);
    }
    assert!(
        events.iter().any(|e| matches!(e, Event::Message(a) if a == "[\"ev\",1]")),
        "the resent event is delivered: {events:?}"
    );
}
