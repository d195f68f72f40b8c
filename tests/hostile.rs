//! Hostile and unusual input to the protocol state machine: argument counts,
//! lifecycle event names from the peer, JSON that JavaScript accepts but
//! serde_json's defaults refuse, and messages the peer keeps refusing.

mod common;

use common::{config, output_texts};
use serde_json::{json, Value};
use std::time::Instant;
use uhura::protocol::framing::DEFAULT_MAX_DEPTH;
use uhura::protocol::peer::{Config, Event, Peer, Role, REFUSALS_BEFORE_DROP};

const START: &str = "[\n[\"_set\",{}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true}]";

fn events(peer: &mut Peer) -> Vec<Event> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

/// A server peer (old-client config) that completed a new-session handshake.
fn ready_server(config: Config) -> Peer {
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, config, now);
    server.handle_open(now);
    server.handle_receive(START.as_bytes(), now);
    assert!(server.is_ready());
    output_texts(&mut server);
    events(&mut server);
    server
}

fn errors(evs: &[Event]) -> Vec<String> {
    evs.iter().filter_map(|e| if let Event::Error(m) = e { Some(m.clone()) } else { None }).collect()
}

fn messages(evs: &[Event]) -> Vec<String> {
    evs.iter().filter_map(|e| if let Event::Message(m) = e { Some(m.clone()) } else { None }).collect()
}

#[test]
fn more_arguments_than_max_args_is_a_protocol_error_of_that_connection() {
    let ten = Config { max_args: 10, ..config() };
    let mut server = ready_server(ten.clone());
    let ok = format!("\n,\n{}", json!(["e", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    server.handle_receive(ok.as_bytes(), Instant::now());
    let evs = events(&mut server);
    assert_eq!(messages(&evs).len(), 1, "10 arguments are within maxArgs 10");
    assert!(errors(&evs).is_empty());

    for bad in [json!(["e", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), json!(["_set", "k", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])] {
        let mut server = ready_server(ten.clone());
        let text = format!("\n,\n{{\"args\":{bad},\"id\":\"x\"}}");
        server.handle_receive(text.as_bytes(), Instant::now());
        let evs = events(&mut server);
        assert!(messages(&evs).is_empty() && !evs.iter().any(|e| matches!(e, Event::Set(_))), "{evs:?}");
        let errs = errors(&evs);
        assert_eq!(errs.len(), 1, "{evs:?}");
        assert!(errs[0].contains("maxArgs"), "{errs:?}");
        assert!(server.has_failed() && server.close_requested());
    }

    // The default: 200,000 arguments (a 400 KB message) never reach the application.
    let mut server = ready_server(config());
    let mut big = String::from("\n,\n[\"e\"");
    for _ in 0..200_000 {
        big.push_str(",1");
    }
    big.push(']');
    server.handle_receive(big.as_bytes(), Instant::now());
    let evs = events(&mut server);
    assert!(messages(&evs).is_empty());
    let errs = errors(&evs);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("maxArgs"), "{errs:?}");
}

#[test]
fn a_client_refuses_too_many_arguments_from_its_server() {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, Config { max_args: 4, ..config() }, now);
    client.handle_open(now);
    output_texts(&mut client);
    let reply = "[\n[\"_set\",\"sessionID\",\"aaaaaaaaaaaaaaaaaaaaaaaa\"]\n,\n[\"connect\",{\"objectMode\":true,\"enableAcks\":true}]\n,\n[\"e\",1,2,3,4,5]";
    client.handle_receive(reply.as_bytes(), now);
    let evs = events(&mut client);
    assert!(messages(&evs).is_empty());
    assert!(errors(&evs)[0].contains("maxArgs"));
}

#[test]
fn lifecycle_names_from_the_peer_are_acked_and_ignored() {
    for name in [
        "error",
        "connect",
        "disconnect",
        "drop",
        "reconnecting",
        "newListener",
        "removeListener",
        "start",
        "invalidateSession",
    ] {
        let mut server = ready_server(config());
        // Escaped spellings are the same name.
        let escaped = name.replacen('e', "\\u0065", 1);
        let text =
            format!("\n,\n{{\"args\":[\"{escaped}\",null],\"id\":\"m-{name}\"}}\n,\n[\"{name}\"]\n,\n[\"after\"]");
        server.handle_receive(text.as_bytes(), Instant::now());
        let evs = events(&mut server);
        assert!(errors(&evs).is_empty(), "{name}: {evs:?}");
        assert_eq!(messages(&evs), vec!["[\"after\"]".to_owned()], "{name}: only the ordinary event is delivered");
        let out = output_texts(&mut server);
        assert_eq!(out, vec![format!("{{\"args\":[\"ack::m-{name}\"]}}")], "{name}: acked, so never resent");
    }
    // A second `connect` from a server after the handshake is no event either.
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    let reply = "[\n[\"connect\",{\"objectMode\":true,\"enableAcks\":true}]\n,\n[\"connect\",{}]\n,\n[\"error\",null]\n,\n[\"invalidateSession\"]";
    client.handle_receive(reply.as_bytes(), now);
    let evs = events(&mut client);
    assert_eq!(evs.iter().filter(|e| matches!(e, Event::Connected { .. })).count(), 1);
    assert_eq!(messages(&evs), vec!["[\"invalidateSession\"]".to_owned()], "invalidateSession is the server's to send");
}

#[test]
fn what_json_parse_accepts_is_accepted_in_sets_names_and_ids() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let mut server = ready_server(config());
    let text = format!(
        "\n,\n[\"_set\",\"lone\",\"\\ud800\"]\n,\n[\"_set\",{{\"big\":1e400,\"deep\":{}}}]\n,\n{{\"args\":[\"\\udc00name\",\"\\ud800\",-1e400,{}],\"id\":\"id\\ud800\"}}",
        deep(500),
        deep(DEFAULT_MAX_DEPTH - 1)
    );
    server.handle_receive(text.as_bytes(), Instant::now());
    let evs = events(&mut server);
    assert!(errors(&evs).is_empty(), "{:?}", errors(&evs));
    assert_eq!(evs.iter().filter(|e| matches!(e, Event::Set(_))).count(), 2);
    let msgs = messages(&evs);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].starts_with("[\"\\udc00name\",\"\\ud800\",-1e400,"), "arguments stay the exact text");
    assert_eq!(server.session().get("lone"), Some(&json!("\u{fffd}")));
    assert_eq!(server.session().get("big"), Some(&Value::Null));
    let session = server.session();
    let mut d = session.get("deep").unwrap();
    for _ in 0..500 {
        d = &d[0];
    }
    assert_eq!(d, &json!(1));
    // The ack echoes the id byte for byte (JavaScript matches it exactly).
    let out = output_texts(&mut server);
    assert_eq!(out, vec!["{\"args\":[\"ack::id\\ud800\"]}".to_owned()]);

    // One level deeper than maxDepth is a protocol error, in either shape.
    for text in [
        format!("\n,\n[\"e\",{}]", deep(DEFAULT_MAX_DEPTH)),
        format!("\n,\n{{\"args\":[\"e\",{}]}}", deep(DEFAULT_MAX_DEPTH)),
    ] {
        let mut server = ready_server(config());
        server.handle_receive(text.as_bytes(), Instant::now());
        let errs = errors(&events(&mut server));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("maxDepth"), "{errs:?}");
    }
}

#[test]
fn a_session_at_the_depth_limit_is_safe_on_a_small_stack() {
    // Session values are serde_json values: cloned, serialised and dropped
    // recursively. At the highest maxDepth that must fit half the stack of an
    // engine thread (8 MiB), even in a debug build.
    let depth = uhura::protocol::framing::MAX_DEPTH_LIMIT;
    std::thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(move || {
            let mut server = ready_server(Config { max_depth: depth, ..config() });
            let text = format!("\n,\n[\"_set\",\"d\",{}1{}]", "[".repeat(depth - 1), "]".repeat(depth - 1));
            server.handle_receive(text.as_bytes(), Instant::now());
            assert!(errors(&events(&mut server)).is_empty());
            let copy = server.session().into_owned();
            let s = Value::Object(copy.clone()).to_string();
            assert!(s.len() > 2 * depth);
            drop(copy);
            server.handle_close();
            server.handle_open(Instant::now());
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
}

#[test]
fn a_set_our_limits_refuse_is_an_error_and_changes_nothing() {
    let mut server = ready_server(Config { max_depth: 5, ..config() });
    assert!(server.set(r#"["k",[[[[1]]]]]"#).is_ok());
    let e = server.set(r#"["k2",[[[[[1]]]]]]"#).unwrap_err();
    assert!(e.to_string().contains("maxDepth"), "{e}");
    assert!(server.session().get("k2").is_none());
    assert!(server.set(r#"["lone","\ud800"]"#).is_ok());
}

#[test]
fn a_message_the_peer_keeps_refusing_is_dropped_not_resent_forever() {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    let connect = "[\n[\"_set\",\"sessionID\",\"aaaaaaaaaaaaaaaaaaaaaaaa\"]\n,\n{\"args\":[\"connect\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]}";
    client.send_event(r#"["ok",1]"#, Some((1, 0)), now);
    client.send_event(r#"["poison",1]"#, Some((1, 1)), now);
    client.send_event(r#"["after",1]"#, Some((1, 2)), now);
    let mut dropped = None;
    for round in 1..=REFUSALS_BEFORE_DROP + 1 {
        client.handle_open(now);
        client.handle_receive(connect.as_bytes(), now);
        assert!(client.is_ready());
        let sent = output_texts(&mut client);
        // The peer acks what comes before the poison on the first round.
        for m in &sent {
            let v: Value = serde_json::from_str(m).unwrap();
            if v["args"][0] == "ok" {
                let ack = format!("\n,\n{{\"args\":[\"ack::{}\"]}}", v["id"].as_str().unwrap());
                client.handle_receive(ack.as_bytes(), now);
            }
        }
        let evs = events(&mut client);
        if let Some(e) = evs.iter().find(|e| matches!(e, Event::Refused { .. })) {
            dropped = Some((round, e.clone()));
        }
        let names: Vec<Value> =
            sent.iter().map(|m| serde_json::from_str::<Value>(m).unwrap()["args"][0].clone()).collect();
        if round <= REFUSALS_BEFORE_DROP {
            assert!(names.contains(&json!("poison")), "round {round}: {names:?}");
        } else {
            assert!(!names.contains(&json!("poison")), "round {round}: dropped after {REFUSALS_BEFORE_DROP} refusals");
            assert!(names.contains(&json!("after")), "round {round}: what was behind it goes out");
        }
        // The peer's reader fails on the poison, says so and closes.
        client.handle_receive(b"\n,\n[\"_uhura_refused\"]", now);
        client.handle_close();
        if dropped.is_none() {
            dropped = events(&mut client).into_iter().find(|e| matches!(e, Event::Refused { .. })).map(|e| (round, e));
        }
    }
    assert_eq!(dropped, Some((REFUSALS_BEFORE_DROP, Event::Refused { notify: Some((1, 1)) })));
}

#[test]
fn plain_drops_never_drop_an_event() {
    // A flaky network: the same event is the oldest in flight at every drop,
    // but the peer never said it refused anything.
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    let connect = "[\n{\"args\":[\"connect\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]}";
    client.send_event(r#"["e",1]"#, Some((1, 0)), now);
    for _ in 0..10 {
        client.handle_open(now);
        client.handle_receive(connect.as_bytes(), now);
        output_texts(&mut client);
        client.handle_close();
        assert!(!events(&mut client).iter().any(|e| matches!(e, Event::Refused { .. })));
    }
    assert_eq!(client.queued_len(), 1);
}

#[test]
fn a_peer_of_ours_says_it_refused_before_closing() {
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, Config { max_depth: 3, ..config() }, now);
    server.handle_open(now);
    server
        .handle_receive(b"[\n[\"_set\",{}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]", now);
    assert!(server.extended());
    output_texts(&mut server);
    server.handle_receive(b"\n,\n{\"args\":[\"e\",[[[1]]]],\"id\":\"x\"}", now);
    assert!(server.has_failed());
    assert_eq!(output_texts(&mut server), vec!["[\"_uhura_refused\"]".to_owned()]);
}

#[test]
fn closes_with_progress_in_between_drop_nothing() {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    let connect = "[\n{\"args\":[\"connect\",{\"objectMode\":true,\"enableAcks\":true,\"uhura\":1}]}";
    for i in 0..10 {
        client.send_event(&format!("[\"e\",{i}]"), Some((1, i)), now);
    }
    for _ in 0..10 {
        client.handle_open(now);
        client.handle_receive(connect.as_bytes(), now);
        let sent = output_texts(&mut client);
        // Each round the peer acks one event, then the connection drops.
        let v: Value =
            sent.iter().map(|m| serde_json::from_str::<Value>(m).unwrap()).find(|v| v["id"].is_string()).unwrap();
        client.handle_receive(format!("\n,\n{{\"args\":[\"ack::{}\"]}}", v["id"].as_str().unwrap()).as_bytes(), now);
        client.handle_receive(b"\n,\n[\"_uhura_refused\"]", now);
        client.handle_close();
        assert!(!events(&mut client).iter().any(|e| matches!(e, Event::Refused { .. })));
    }
}
