//! The protocol state machine, driven without I/O: recorded handshakes of the
//! published package, and simulated connections that drop at random.

mod common;

use common::{config, output_texts};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use uhura::protocol::entropy::Entropy;
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

/// Everything the peer wrote, as parsed messages.
fn output(peer: &mut Peer) -> Vec<Value> {
    output_texts(peer).iter().map(|m| serde_json::from_str(m).unwrap()).collect()
}

fn events(peer: &mut Peer) -> Vec<Event> {
    std::iter::from_fn(|| peer.poll_event()).collect()
}

fn ids_of(msgs: &[Value]) -> Vec<String> {
    msgs.iter().filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned)).collect()
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
    server.send_event(r#"["world",1]"#.into(), Some((7, 0)), now);
    assert_eq!(output(&mut server), vec![json!(["world", 1])]);
    assert!(events(&mut server).contains(&Event::Acked((7, 0))), "acks off: the callback runs on write");

    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    output(&mut client);
    client.send_event(r#"["queued"]"#.into(), None, now);
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

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    for bad in [&b"."[..], b"[{\"args\":\"notarray\"}]", b"[null]", b"[1,2]", b"{}", b"[[\"x\"]]]"] {
        let now = Instant::now();
        let mut server = Peer::new(Role::Server, config(), now);
        server.handle_open(now);
        server.handle_receive(bad, now);
        let errors: Vec<_> = events(&mut server).into_iter().filter(|e| matches!(e, Event::Error(_))).collect();
        assert_eq!(errors.len(), 1, "{:?}", String::from_utf8_lossy(bad));
        assert!(server.close_requested());
    }
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, config(), now);
    server.handle_open(now);
    server.handle_receive(b".", now);
    match events(&mut server).pop() {
        Some(Event::Error(m)) => assert!(m.starts_with("Unexpected \".\" at position 0"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn queue_limits_drop_the_oldest_and_say_so() {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, Config { max_queue_length: 3, ..config() }, now);
    for i in 0..5u64 {
        client.send_event(format!("[\"e\",{i}]"), Some((1, i)), now);
    }
    let evs = events(&mut client);
    assert_eq!(evs, vec![Event::Dropped { notify: Some((1, 0)) }, Event::Dropped { notify: Some((1, 1)) }]);
    assert_eq!(client.queued_len(), 3);

    let mut client = Peer::new(Role::Client, Config { max_queue_bytes: 100, ..config() }, now);
    for _ in 0..10 {
        client.send_event(format!("[\"e\",\"{}\"]", "x".repeat(40)), None, now);
    }
    assert!(client.pending_bytes() <= 100);
    assert_eq!(events(&mut client).len(), 8);
}

#[test]
fn ack_timeout_releases_the_callback_but_keeps_the_event() {
    let t0 = Instant::now();
    let mut client = Peer::new(Role::Client, Config { ack_timeout: Some(Duration::from_millis(100)), ..config() }, t0);
    client.send_event(r#"["e"]"#.into(), Some((1, 0)), t0);
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_millis(100)));
    client.handle_timeout(t0 + Duration::from_millis(99));
    assert!(events(&mut client).is_empty());
    client.handle_timeout(t0 + Duration::from_millis(100));
    assert_eq!(events(&mut client), vec![Event::AckTimeout((1, 0))]);
    assert_eq!(client.queued_len(), 1);
}

/// Two of our peers connected in memory.
struct Wire {
    client: Peer,
    server: Peer,
    now: Instant,
    /// Both run with `defer_acks`, as the engine does: the acks due of each
    /// round are written together (`write_acks`) after the round, as the
    /// engine does once JavaScript has handled a batch.
    defer: bool,
    /// Acks due, not written yet: (id, duplicate).
    client_due: Vec<(String, bool)>,
    server_due: Vec<(String, bool)>,
}

impl Wire {
    fn new() -> Self {
        Self::with_config(Config { defer_acks: false, ..config() })
    }

    fn with_config(base: Config) -> Self {
        let now = Instant::now();
        let mut w = Wire {
            client: Peer::new(Role::Client, Config { entropy: config().entropy, ..base.clone() }, now),
            server: Peer::new(Role::Server, Config { entropy: config().entropy, ..base.clone() }, now),
            now,
            defer: base.defer_acks,
            client_due: Vec::new(),
            server_due: Vec::new(),
        };
        w.open();
        w
    }

    fn server_config(&self) -> Config {
        Config { defer_acks: self.defer, ..config() }
    }

    /// Takes the acks due out of `events` into `due`.
    fn note_due(events: &[Event], due: &mut Vec<(String, bool)>) {
        for e in events {
            if let Event::AckDue { id, duplicate } = e {
                due.push((id.clone(), *duplicate));
            }
        }
    }

    /// The application handled what it got: the acks due go out.
    fn write_due(&mut self) {
        let due = std::mem::take(&mut self.client_due);
        self.client.write_acks(due.iter().map(|(id, dup)| (id.as_str(), *dup)));
        let due = std::mem::take(&mut self.server_due);
        self.server.write_acks(due.iter().map(|(id, dup)| (id.as_str(), *dup)));
    }

    fn open(&mut self) {
        self.client.handle_open(self.now);
        self.server.handle_open(self.now);
    }

    /// Moves bytes both ways, `chunk` bytes at a time, until quiet; a store
    /// that knows every session answers the server.
    fn settle(&mut self, chunk: usize, to_client: &mut Vec<Event>, to_server: &mut Vec<Event>) {
        loop {
            let mut c2s = Vec::new();
            self.client.poll_transmit(&mut c2s);
            let mut s2c = Vec::new();
            self.server.poll_transmit(&mut s2c);
            if c2s.is_empty() && s2c.is_empty() {
                break;
            }
            for c in c2s.chunks(chunk.max(1)) {
                self.server.handle_receive(c, self.now);
            }
            for c in s2c.chunks(chunk.max(1)) {
                self.client.handle_receive(c, self.now);
            }
            let (from_server, from_client) = (to_server.len(), to_client.len());
            while let Some(e) = self.server.poll_event() {
                if let Event::LoadSession(_) = e {
                    let s = self.server.session().clone();
                    self.server.handle_session_loaded(Some(s), self.now);
                }
                to_server.push(e);
            }
            to_client.extend(std::iter::from_fn(|| self.client.poll_event()));
            Self::note_due(&to_server[from_server..], &mut self.server_due);
            Self::note_due(&to_client[from_client..], &mut self.client_due);
            self.write_due();
        }
    }

    /// Drops the connection after `deliver` bytes of each direction got
    /// through, and reconnects; the server side resumes from retained state.
    fn drop_and_resume(&mut self, deliver: usize, to_client: &mut Vec<Event>, to_server: &mut Vec<Event>) {
        let mut c2s = Vec::new();
        self.client.poll_transmit(&mut c2s);
        let mut s2c = Vec::new();
        self.server.poll_transmit(&mut s2c);
        self.server.handle_receive(&c2s[..deliver.min(c2s.len())], self.now);
        self.client.handle_receive(&s2c[..deliver.min(s2c.len())], self.now);
        let from_client = to_client.len();
        to_server.extend(std::iter::from_fn(|| self.server.poll_event()));
        to_client.extend(std::iter::from_fn(|| self.client.poll_event()));
        // The client's acks due wait for its next connection, as the engine's
        // do; the server's go with the dropped connection.
        Self::note_due(&to_client[from_client..], &mut self.client_due);
        self.server_due.clear();
        self.client.handle_close();
        self.server.handle_close();
        let retained = self.server.take_retained();
        self.server = Peer::new(Role::Server, self.server_config(), self.now);
        self.server.adopt_retained(retained);
        self.open();
    }
}

fn delivered(events: &[Event], name: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(a) => {
                let v: Value = serde_json::from_str(a).unwrap();
                (v[0] == name).then(|| v[1].as_u64().unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn exactly_once_in_order_across_random_drops() {
    let acked = random_drops(Wire::new());
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "ack callbacks in send order");
}

/// With `defer_acks` (the engine's setting) the acks of each round go out
/// together: between two of our peers as cumulative acks, and still every
/// callback runs exactly once and in order, across drops and resumes.
#[test]
fn cumulative_acks_exactly_once_in_order_across_random_drops() {
    let mut w = Wire::with_config(Config { defer_acks: true, ..config() });
    let cumulative = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = cumulative.clone();
    w.client.set_wire_tap(Some(std::sync::Arc::new(move |dir, text: &str| {
        if dir == uhura::protocol::peer::Direction::Received && text.starts_with("[\"_uhura_ack\",") {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })));
    let acked = random_drops(w);
    assert_eq!(acked, (0..acked.len() as u64).collect::<Vec<_>>(), "ack callbacks once each, in send order");
    assert!(cumulative.load(std::sync::atomic::Ordering::Relaxed) > 10, "the server acked cumulatively");
}

/// Both sides send 3000 events through random drops and resumes; checks
/// exactly-once in-order delivery both ways and returns the client's ack
/// callbacks (their sequence numbers) in the order they ran.
fn random_drops(mut w: Wire) -> Vec<u64> {
    // A fixed-seed generator keeps failures reproducible.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
    w.settle(7, &mut at_client, &mut at_server);
    assert!(w.client.extended() && w.server.extended());
    let total = 3000u64;
    let (mut c_next, mut s_next) = (0u64, 0u64);
    let mut drops = 0;
    while c_next < total || s_next < total {
        for _ in 0..rand(40) {
            if c_next < total {
                w.client.send_event(format!("[\"c2s\",{c_next}]"), Some((1, c_next)), w.now);
                c_next += 1;
            }
            if s_next < total {
                w.server.send_event(format!("[\"s2c\",{s_next}]"), None, w.now);
                s_next += 1;
            }
        }
        if rand(3) == 0 {
            w.drop_and_resume(rand(3000) as usize, &mut at_client, &mut at_server);
            drops += 1;
        }
        w.settle(1 + rand(500) as usize, &mut at_client, &mut at_server);
    }
    w.settle(64, &mut at_client, &mut at_server);
    assert!(drops > 20, "the simulation should drop often ({drops})");
    assert_eq!(delivered(&at_server, "c2s"), (0..total).collect::<Vec<_>>());
    assert_eq!(delivered(&at_client, "s2c"), (0..total).collect::<Vec<_>>());
    let acked: Vec<u64> =
        at_client.iter().filter_map(|e| if let Event::Acked((1, s)) = e { Some(*s) } else { None }).collect();
    assert_eq!(acked.len() as u64, total, "every client ack callback ran once");
    assert_eq!(w.client.unacked_len() + w.client.queued_len(), 0);
    acked
}

#[test]
fn heartbeats_flow_and_silence_is_detected() {
    let mut w = Wire::new();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    w.settle(64, &mut a, &mut b);
    let t = w.client.poll_timeout().expect("a heartbeat is scheduled");
    assert!(t <= w.now + Duration::from_secs(15));
    w.now += Duration::from_secs(16);
    w.client.handle_timeout(w.now);
    w.server.handle_timeout(w.now);
    let mut hb = Vec::new();
    w.client.poll_transmit(&mut hb);
    assert!(String::from_utf8_lossy(&hb).contains("_uhura_hb"));
    w.server.handle_receive(&hb, w.now);
    assert!(w.server.poll_event().is_none(), "heartbeats are not delivered");
    // Then the client goes silent for longer than the server's limit.
    w.now += Duration::from_secs(46);
    w.server.handle_timeout(w.now);
    match w.server.poll_event() {
        Some(Event::Error(m)) => assert!(m.contains("heartbeat timeout"), "{m}"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_closed_connection_absorbing_an_older_one_loses_and_reorders_nothing() {
    let mut w = Wire::new();
    let (mut at_client, mut at_server) = (Vec::new(), Vec::new());
    w.settle(64, &mut at_client, &mut at_server);
    let mut lost = Vec::new();
    // Connection 1 drops with three events written but never received.
    for i in 0..3 {
        w.server.send_event(format!("[\"s2c\",{i}]"), None, w.now);
    }
    w.server.poll_transmit(&mut lost);
    w.client.handle_close();
    w.server.handle_close();
    let older = w.server.take_retained();
    // Connection 2 resumes before the server saw connection 1 go (so it
    // adopted nothing), sends two more, and drops the same way.
    w.server = Peer::new(Role::Server, config(), w.now);
    w.open();
    w.settle(64, &mut at_client, &mut at_server);
    for i in 3..5 {
        w.server.send_event(format!("[\"s2c\",{i}]"), Some((9, i)), w.now);
    }
    w.server.poll_transmit(&mut lost);
    w.client.handle_close();
    w.server.handle_close();
    // Retention finds both closed: the newer absorbs the older.
    w.server.adopt_retained(older);
    let merged = w.server.take_retained();
    // Connection 3 resumes with everything.
    w.server = Peer::new(Role::Server, config(), w.now);
    w.server.adopt_retained(merged);
    assert_eq!(w.server.queued_len(), 5);
    w.open();
    w.settle(64, &mut at_client, &mut at_server);
    assert_eq!(delivered(&at_client, "s2c"), vec![0, 1, 2, 3, 4]);
    assert_eq!(w.server.unacked_len() + w.server.queued_len(), 0, "every resent event was acknowledged");
    let acked: Vec<_> = at_server.iter().filter(|e| matches!(e, Event::Acked((9, _)))).collect();
    assert_eq!(
        acked,
        vec![&Event::Acked((9, 3)), &Event::Acked((9, 4))],
        "callbacks of the newer connection's sends still run"
    );
}

#[test]
fn a_handshake_that_never_completes_times_out() {
    let t0 = Instant::now();
    let config = Config { handshake_timeout: Duration::from_secs(5), ..config() };
    for role in [Role::Client, Role::Server] {
        let mut peer = Peer::new(role, config.clone(), t0);
        peer.handle_open(t0);
        assert_eq!(peer.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        peer.handle_timeout(t0 + Duration::from_secs(4));
        assert!(!peer.has_failed());
        peer.handle_timeout(t0 + Duration::from_secs(5));
        assert!(peer.has_failed(), "{role:?}");
        match events(&mut peer).pop() {
            Some(Event::Error(m)) => assert!(m.starts_with("handshake timeout"), "{m}"),
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn the_wire_tap_sees_every_message_in_wire_order() {
    use std::sync::{Arc, Mutex};
    use uhura::protocol::peer::{Direction, WireTap};
    let now = Instant::now();
    let log: Arc<Mutex<Vec<(Role, Direction, String)>>> = Arc::default();
    let tap = |role: Role| -> WireTap {
        let log = log.clone();
        Arc::new(move |dir, text| log.lock().unwrap().push((role, dir, text.to_owned())))
    };
    let mut client = Peer::new(Role::Client, config(), now);
    let mut server = Peer::new(Role::Server, config(), now);
    client.set_wire_tap(Some(tap(Role::Client)));
    server.set_wire_tap(Some(tap(Role::Server)));
    client.handle_open(now);
    server.handle_open(now);
    client.send_event(r#"["ev",1,"two"]"#.into(), Some((1, 0)), now);
    client.set(r#"["k","v"]"#).unwrap();
    let mut client_bytes = Vec::new();
    for _ in 0..4 {
        let mut b = Vec::new();
        client.poll_transmit(&mut b);
        client_bytes.extend_from_slice(&b);
        server.handle_receive(&b, now);
        let mut b = Vec::new();
        server.poll_transmit(&mut b);
        client.handle_receive(&b, now);
    }
    let log = log.lock().unwrap();
    let texts = |role, dir| -> Vec<String> {
        log.iter().filter(|(r, d, _)| *r == role && *d == dir).map(|(_, _, t)| t.clone()).collect()
    };
    // What one side logs as sent, the other logs as received, in the same order...
    let c2s = texts(Role::Client, Direction::Sent);
    assert_eq!(c2s, texts(Role::Server, Direction::Received));
    assert_eq!(texts(Role::Server, Direction::Sent), texts(Role::Client, Direction::Received));
    // ...and it is exactly what went over the wire.
    let mut framed = Vec::new();
    Reader::new(1 << 20).feed(&client_bytes, &mut framed).unwrap();
    assert_eq!(c2s, framed);
    let names: Vec<String> = c2s
        .iter()
        .map(|t| {
            let v: Value = serde_json::from_str(t).unwrap();
            let name = v.get("args").map_or(&v[0], |a| &a[0]).as_str().unwrap().to_owned();
            if name.starts_with("ack::") {
                "ack".into()
            } else {
                name
            }
        })
        .collect();
    // `set` goes out at once; the event waits for `connect`, which is acked after it.
    assert_eq!(names, ["_set", "start", "_set", "ev", "ack"]);
}

/// Ids come from the injected entropy alone: the same seeds make the same
/// message ids, session id and resume secret, byte for byte.
#[test]
fn the_same_seeds_make_the_same_ids() {
    type Run = (Value, Option<String>, Vec<u8>, Vec<u8>);
    let run = |client_seed: u8, server_seed: u8| -> Run {
        let now = Instant::now();
        let seeded = |s| Config { entropy: Some(Entropy::seeded([s; 32])), ..Config::default() };
        let mut client = Peer::new(Role::Client, seeded(client_seed), now);
        let mut server = Peer::new(Role::Server, seeded(server_seed), now);
        client.handle_open(now);
        server.handle_open(now);
        client.send_event(r#"["c2s"]"#.into(), None, now);
        server.send_event(r#"["s2c"]"#.into(), None, now);
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let n = c2s.len();
            client.poll_transmit(&mut c2s);
            server.handle_receive(&c2s[n..], now);
            let n = s2c.len();
            server.poll_transmit(&mut s2c);
            client.handle_receive(&s2c[n..], now);
        }
        assert!(client.is_ready() && server.is_ready() && client.extended());
        assert_eq!(client.unacked_len() + server.unacked_len(), 0);
        let sid = client.session()["sessionID"].clone();
        (sid, client.resume_secret().map(str::to_owned), c2s, s2c)
    };
    let first = run(1, 2);
    assert!(is_well_formed_id(first.0.as_str().unwrap()) && first.1.is_some());
    assert_eq!(run(1, 2), first);
    // Another server seed: another session, secret and server ids; the
    // client's bytes differ only by what the server gave it (its acks).
    let other = run(1, 3);
    assert_ne!(other.0, first.0);
    assert_ne!(other.1, first.1);
    assert_ne!(other.3, first.3);
    // Another client seed: other ids on the client's events.
    let other = run(4, 2);
    assert_eq!((&other.0, &other.1), (&first.0, &first.1));
    assert_ne!(other.2, first.2);
}

/// `write_to` writes what the writer takes and keeps the rest, in order,
/// ahead of anything framed later; `wants_read` turns false past the
/// output's high water mark and true again once written below its low one.
#[test]
fn write_to_keeps_what_was_not_written_and_backlog_stops_reading() {
    struct Takes(usize, Vec<u8>);
    impl std::io::Write for Takes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = self.0.min(buf.len());
            self.1.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let now = Instant::now();
    let seeded = || Config { entropy: Some(Entropy::seeded([9; 32])), ..Config::default() };
    let (mut a, mut b) = (Peer::new(Role::Client, seeded(), now), Peer::new(Role::Client, seeded(), now));
    assert!(!b.wants_write());
    a.handle_open(now);
    b.handle_open(now);
    assert!(b.wants_write() && b.wants_read());
    let mut whole = Vec::new();
    a.poll_transmit(&mut whole);
    let mut w = Takes(10, Vec::new());
    while b.wants_write() {
        let left = whole.len() - w.1.len();
        assert_eq!(b.write_to(&mut w).unwrap(), left.min(10));
    }
    assert_eq!(w.1, whole);
    // Blocked: nothing taken, nothing lost.
    b.send_message("[\"raw\"]");
    let mut blocked = Takes(0, Vec::new());
    assert_eq!(b.write_to(&mut blocked).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    let mut rest = Vec::new();
    b.poll_transmit(&mut rest);
    assert_eq!(rest, b"\n,\n[\"raw\"]");

    const MIB: usize = 1 << 20;
    b.write_raw(&vec![b' '; 17 * MIB]);
    assert!(!b.wants_read(), "past 16 MiB unwritten");
    b.write_to(&mut Takes(2 * MIB, Vec::new())).unwrap();
    assert!(!b.wants_read(), "15 MiB: still above the low water mark");
    b.write_to(&mut Takes(8 * MIB, Vec::new())).unwrap();
    assert!(b.wants_read(), "7 MiB: below it");
    assert_eq!(b.pending_output(), 7 * MIB);
}

/// A server of ours with `defer_acks`, after a client's handshake offering
/// extensions `version`, and the events `ids` from it; returns the acks it
/// writes for them in one batch.
fn acks_for_batch(version: u64, ids: &[&str], duplicate_at: Option<usize>) -> Vec<String> {
    let now = Instant::now();
    let mut server = Peer::new(Role::Server, Config { defer_acks: true, ..config() }, now);
    server.handle_open(now);
    let start =
        format!("[\n[\"_set\",{{}}]\n,\n[\"start\",{{\"objectMode\":true,\"enableAcks\":true,\"uhura\":{version}}}]");
    server.handle_receive(start.as_bytes(), now);
    let _ = events(&mut server);
    server.handle_session_loaded(None, now);
    let _ = events(&mut server);
    let _ = output_texts(&mut server);
    let mut msgs = String::new();
    for (i, id) in ids.iter().enumerate() {
        let _ = write!(msgs, "\n,\n{{\"args\":[\"e\",{i}],\"id\":\"{id}\"}}");
        if duplicate_at == Some(i) {
            let _ = write!(msgs, "\n,\n{{\"args\":[\"e\",{i}],\"id\":\"{id}\"}}");
        }
    }
    server.handle_receive(msgs.as_bytes(), now);
    let due: Vec<(String, bool)> = events(&mut server)
        .into_iter()
        .filter_map(|e| if let Event::AckDue { id, duplicate } = e { Some((id, duplicate)) } else { None })
        .collect();
    server.write_acks(due.iter().map(|(id, dup)| (id.as_str(), *dup)));
    output_texts(&mut server)
}

#[test]
fn a_batch_of_acks_is_one_cumulative_ack_only_for_peers_that_negotiated_it() {
    let ids = ["0123456789ab-1", "0123456789ab-2", "0123456789ab-3", "0123456789ab-4"];
    assert_eq!(acks_for_batch(2, &ids, None), vec![r#"["_uhura_ack","0123456789ab-4"]"#]);
    // Extensions 1 (our older releases) and old peers: one ack per message.
    let one_each: Vec<String> = ids.iter().map(|id| format!(r#"{{"args":["ack::{id}"]}}"#)).collect();
    assert_eq!(acks_for_batch(1, &ids, None), one_each);
    assert_eq!(acks_for_batch(0, &ids, None), one_each);
    // A single ack stays as it always was.
    assert_eq!(acks_for_batch(2, &ids[..1], None), one_each[..1]);
    // A duplicate's ack is never covered by a cumulative one: it splits the run.
    assert_eq!(
        acks_for_batch(2, &ids, Some(1)),
        vec![
            r#"["_uhura_ack","0123456789ab-2"]"#.to_owned(),
            r#"{"args":["ack::0123456789ab-2"]}"#.to_owned(),
            r#"["_uhura_ack","0123456789ab-4"]"#.to_owned(),
        ]
    );
}

/// A client of ours connected to a server whose `connect` offered
/// extensions `version`, with four events sent and unacknowledged.
fn client_with_four_unacked(version: u64) -> (Peer, Vec<String>) {
    let now = Instant::now();
    let mut client = Peer::new(Role::Client, config(), now);
    client.handle_open(now);
    let connect = format!(
        "[\n[\"_set\",\"sessionID\",\"aaaaaaaaaaaaaaaaaaaaaaaa\"]\n,\n{{\"args\":[\"connect\",{{\"objectMode\":true,\"enableAcks\":true,\"uhura\":{version}}}],\"id\":\"c\"}}"
    );
    client.handle_receive(connect.as_bytes(), now);
    let _ = events(&mut client);
    let _ = output_texts(&mut client);
    for i in 0..4 {
        client.send_event(format!("[\"e\",{i}]"), Some((1, i)), now);
    }
    let ids = ids_of(&output(&mut client));
    (client, ids)
}

#[test]
fn a_cumulative_ack_settles_every_callback_up_to_its_id_in_order() {
    let now = Instant::now();
    let (mut client, ids) = client_with_four_unacked(2);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[2]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Acked((1, 0)), Event::Acked((1, 1)), Event::Acked((1, 2))]);
    assert_eq!(client.unacked_len(), 1);
    // Again, or for an id acknowledged already: nothing more.
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[1]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![]);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[3]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Acked((1, 3))]);

    // An application's own `_uhura_ack` event (object-shaped, with an id) is
    // delivered, not taken for an ack.
    let (mut client, ids) = client_with_four_unacked(2);
    let app = format!("\n,\n{{\"args\":[\"_uhura_ack\",\"{}\"],\"id\":\"x\"}}", ids[3]);
    client.handle_receive(app.as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Message(format!("[\"_uhura_ack\",\"{}\"]", ids[3]))]);
    assert_eq!(client.unacked_len(), 4);

    // A server that did not negotiate it: `_uhura_ack` is an ordinary event.
    let (mut client, ids) = client_with_four_unacked(1);
    client.handle_receive(format!("\n,\n[\"_uhura_ack\",\"{}\"]", ids[3]).as_bytes(), now);
    assert_eq!(events(&mut client), vec![Event::Message(format!("[\"_uhura_ack\",\"{}\"]", ids[3]))]);
    assert_eq!(client.unacked_len(), 4);
}
