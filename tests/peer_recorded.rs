//! The protocol state machine, driven without I/O, against the recorded
//! handshakes of the published package (tests/vectors): new sessions,
//! resumes, legacy array mode. (Also tests/peer_limits.rs, tests/peer_sim.rs.)

mod common;

use common::{config, events, ids_of, output};
use serde_json::{json, Value};
use std::time::Instant;
use uhura::protocol::framing::Reader;
use uhura::protocol::peer::{Config, Event, Peer, Role};
use uhura::protocol::session::{is_well_formed_id, Session};

fn vector(name: &str) -> (String, String) {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    (v["client_to_server"].as_str().unwrap().to_owned(), v["server_to_client"].as_str().unwrap().to_owned())
}

fn old_config() -> Config {
    Config { extensions: false, ..config() }
}

#[test]
fn client_handshake_bytes_match_the_recording() {
    let (c2s, _) = vector("v0.1.2-new-session.json");
    let mut client = Peer::new(Role::Client, old_config(), Instant::now());
    client.handle_open(Instant::now());
    let mut out = Vec::new();
    client.poll_transmit(&mut out);
    let expected = "[\n[\"_set\",{}]\n,\n[\"start\",{\"objectMode\":true,\"enableAcks\":true}]";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert!(c2s.starts_with(expected));
}

#[test]
fn server_answers_a_recorded_012_client_like_the_012_server() {
    let (c2s, s2c) = vector("v0.1.2-new-session.json");
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, old_config(), now);
    server.handle_open(now);
    // One byte at a time: the state machine must not care about chunking.
    for b in c2s.as_bytes() {
        server.handle_receive(std::slice::from_ref(b), now);
    }
    let ours = output(&mut server);
    let mut recorded = Vec::new();
    Reader::new(1 << 20).feed(s2c.as_bytes(), &mut recorded).unwrap();
    let recorded: Vec<Value> = recorded.iter().map(|m| serde_json::from_str(m).unwrap()).collect();

    // The recorded server also sent its own events ("world", "unicode") and a
    // set; ours only answers the protocol part: sessionID, connect, acks.
    assert_eq!(ours[0][0], "_set");
    assert_eq!(ours[0][1], "sessionID");
    assert!(is_well_formed_id(ours[0][2].as_str().unwrap()));
    assert_eq!(ours[1]["args"], recorded[1]["args"], "connect config as the 0.1.2 server sends it");
    assert!(ours[1]["id"].is_string());
    let acks: Vec<&Value> = ours[2..].iter().map(|m| &m["args"][0]).collect();
    let client_ids = ids_of(&{
        let mut m = Vec::new();
        Reader::new(1 << 20).feed(c2s.as_bytes(), &mut m).unwrap();
        m.iter().map(|x| serde_json::from_str(x).unwrap()).collect::<Vec<Value>>()
    });
    let expected_acks: Vec<Value> = client_ids.iter().map(|id| json!(format!("ack::{id}"))).collect();
    assert_eq!(acks.into_iter().cloned().collect::<Vec<_>>(), expected_acks);

    let evs = events(&mut server);
    assert!(matches!(evs[0], Event::SaveSession));
    assert_eq!(evs[1], Event::Connected { resumed: false });
    let messages: Vec<Value> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Message(a) | Event::Set(a) => Some(serde_json::from_str(a).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        vec![
            json!(["_set", "clientKey", "v1"]),
            json!(["hello", 1, [true, null, 2.5]]),
            json!(["unicode", "héllo ☃ 😀 \"q\" \\ \n"]),
            json!(["bye"]),
        ]
    );
    assert_eq!(server.session().get("clientKey"), Some(&json!("v1")));
}

#[test]
fn client_follows_a_recorded_012_server() {
    let (_, s2c) = vector("v0.1.2-new-session.json");
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    output(&mut client);
    client.handle_receive(s2c.as_bytes(), now);
    assert!(client.is_ready() && client.object_mode() && client.enable_acks());
    assert!(!client.extended(), "a 0.1.2 server echoes no extensions");
    assert_eq!(client.session().get("sessionID"), Some(&json!("F3kg5mpwoh9CJH8WE6ZdgPdT")));
    assert_eq!(client.session().get("k"), Some(&json!(1)));
    let out = output(&mut client);
    // Acks for every server message with an id, connect included.
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|m| m["args"][0].as_str().unwrap().starts_with("ack::")));
}

#[test]
fn legacy_array_mode_both_ways() {
    let (c2s, s2c) = vector("v0.0.10-legacy-array-mode.json");
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, config(), now);
    server.handle_open(now);
    server.handle_receive(c2s.as_bytes(), now);
    let out = output(&mut server);
    assert_eq!(out[1], json!(["connect", {"objectMode": false, "enableAcks": false}]));
    assert!(!server.object_mode());
    server.send_event(r#"["world",1]"#, Some((7, 0)), now);
    assert_eq!(output(&mut server), vec![json!(["world", 1])]);
    assert!(events(&mut server).contains(&Event::Acked((7, 0))), "acks off: the callback runs on write");

    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    output(&mut client);
    client.send_event(r#"["queued"]"#, None, now);
    client.handle_receive(s2c.as_bytes(), now);
    assert!(client.is_ready() && !client.object_mode() && !client.enable_acks());
    assert_eq!(output(&mut client), vec![json!(["queued"])]);
}

#[test]
fn resume_sends_the_stored_session_then_connect() {
    let (c2s, s2c) = vector("v0.1.2-resume-and-invalidate.json");
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, old_config(), now);
    server.handle_open(now);
    server.handle_receive(c2s.as_bytes(), now);
    let evs = events(&mut server);
    assert_eq!(evs, vec![Event::LoadSession("F3kg5mpwoh9CJH8WE6ZdgPdT".into())], "events wait for the handshake");
    let stored: Session =
        serde_json::from_value(json!({"cookie": {"path": "/"}, "sessionID": "F3kg5mpwoh9CJH8WE6ZdgPdT", "k": 1}))
            .unwrap();
    server.handle_session_loaded(Some(stored.clone()), now);
    // Acks of the client's early events went out on arrival; then the session and connect.
    let out: Vec<Value> = output(&mut server)
        .into_iter()
        .filter(|m| !m["args"][0].as_str().is_some_and(|n| n.starts_with("ack::")))
        .collect();
    assert_eq!(out[0], json!(["_set", stored]));
    assert_eq!(out[1]["args"][0], "connect");
    let evs = events(&mut server);
    assert_eq!(evs[0], Event::Connected { resumed: true });
    assert_eq!(evs[1], Event::Message(r#"["hello",1,[true,null,2.5]]"#.into()), "then the held events, in order");
    assert_eq!(evs.len(), 4);

    // The recorded server's answer, fed to our client: resume, then invalidation.
    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    client.handle_receive(s2c.as_bytes(), now);
    assert!(client.close_requested());
    assert!(client.session().is_empty());
}

#[test]
fn unknown_session_id_starts_a_new_session() {
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, config(), now);
    server.handle_open(now);
    server.handle_receive(
        b"[[\"_set\",{\"sessionID\":\"nope\"}],[\"start\",{\"objectMode\":true,\"enableAcks\":true}]",
        now,
    );
    assert!(events(&mut server).contains(&Event::LoadSession("nope".into())));
    server.handle_session_loaded(None, now);
    let id = server.session_id().unwrap().to_owned();
    assert!(is_well_formed_id(&id) && id != "nope");
}
