//! The protocol state machine, driven without I/O: two of our peers on a
//! simulated connection that drops at random, heartbeats, the wire tap, and
//! ids made from the injected entropy alone.

mod common;

use common::config;
use serde_json::Value;
use std::time::{Duration, Instant};
use uhura::protocol::entropy::Entropy;
use uhura::protocol::framing::Reader;
use uhura::protocol::peer::{Config, Event, Peer, Role};
use uhura::protocol::session::is_well_formed_id;

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
                    let s = self.server.session().into_owned();
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
                w.client.send_event(&format!("[\"c2s\",{c_next}]"), Some((1, c_next)), w.now);
                c_next += 1;
            }
            if s_next < total {
                w.server.send_event(&format!("[\"s2c\",{s_next}]"), None, w.now);
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
        w.server.send_event(&format!("[\"s2c\",{i}]"), None, w.now);
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
        w.server.send_event(&format!("[\"s2c\",{i}]"), Some((9, i)), w.now);
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
fn the_wire_tap_sees_every_message_in_wire_order() {
    use std::sync::{Arc, Mutex};
    use uhura::protocol::peer::{Direction, WireTap};
    let now = Instant::now();
    let log: Arc<Mutex<Vec<(Role, Direction, String)>>> = Arc::default();
    let tap = |role: Role| -> WireTap {
        let log = log.clone();
        Arc::new(move |dir: Direction, text: &str| log.lock().unwrap().push((role, dir, text.to_owned())))
    };
    let mut client = Peer::new(Role::Client, config(), now);
    let mut server = Peer::new(Role::Server, config(), now);
    client.set_wire_tap(Some(tap(Role::Client)));
    server.set_wire_tap(Some(tap(Role::Server)));
    client.handle_open(now);
    server.handle_open(now);
    client.send_event(r#"["ev",1,"two"]"#, Some((1, 0)), now);
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

/// A tap that is not looking (`Tap::looking`, the engine's while
/// `DEBUG=uhura:protocol` is off) is shown nothing; once it looks, it sees
/// the messages from then on.
#[test]
fn a_tap_not_looking_sees_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use uhura::protocol::peer::{Direction, Tap};
    #[derive(Default)]
    struct Switched {
        on: AtomicBool,
        seen: Mutex<Vec<String>>,
    }
    impl Tap for Switched {
        fn looking(&self) -> bool {
            self.on.load(Ordering::Relaxed)
        }
        fn see(&self, _: Direction, text: &str) {
            self.seen.lock().unwrap().push(text.to_owned());
        }
    }
    let now = Instant::now();
    let tap = Arc::new(Switched::default());
    let mut client = Peer::new(Role::Client, config(), now);
    let mut server = Peer::new(Role::Server, config(), now);
    server.set_wire_tap(Some(tap.clone()));
    client.handle_open(now);
    server.handle_open(now);
    let exchange = |client: &mut Peer, server: &mut Peer| {
        for _ in 0..4 {
            let mut b = Vec::new();
            client.poll_transmit(&mut b);
            server.handle_receive(&b, now);
            let mut b = Vec::new();
            server.poll_transmit(&mut b);
            client.handle_receive(&b, now);
        }
    };
    client.send_event(r#"["off",1]"#, None, now);
    exchange(&mut client, &mut server);
    assert!(server.is_ready());
    assert!(tap.seen.lock().unwrap().is_empty());
    tap.on.store(true, Ordering::Relaxed);
    client.send_event(r#"["on",2]"#, None, now);
    exchange(&mut client, &mut server);
    let seen = tap.seen.lock().unwrap();
    assert!(seen.iter().any(|t| t.contains(r#"["on",2]"#)), "{seen:?}");
    assert!(!seen.iter().any(|t| t.contains("off")), "{seen:?}");
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
        client.send_event(r#"["c2s"]"#, None, now);
        server.send_event(r#"["s2c"]"#, None, now);
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

/// Both directions of an in-memory connection and what each side raised,
/// for running one exchange with and without `release_buffers` after every
/// step (`compact`) and comparing the two.
struct Exchange {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    evs: Vec<String>,
    compact: bool,
}

impl Exchange {
    fn new(compact: bool) -> Self {
        Exchange { c2s: Vec::new(), s2c: Vec::new(), evs: Vec::new(), compact }
    }

    /// A new connection: both peers open, then a step (the handshake).
    fn open(&mut self, client: &mut Peer, server: &mut Peer, now: Instant, on_load: impl FnMut(&mut Peer)) {
        client.handle_open(now);
        server.handle_open(now);
        self.step(client, server, now, on_load);
    }

    /// Three rounds of bytes each way; `on_load` answers the server's
    /// `LoadSession` (what the store gives a resuming connection).
    fn step(&mut self, client: &mut Peer, server: &mut Peer, now: Instant, mut on_load: impl FnMut(&mut Peer)) {
        for _ in 0..3 {
            let n = self.c2s.len();
            client.poll_transmit(&mut self.c2s);
            server.handle_receive(&self.c2s[n..], now);
            while let Some(e) = server.poll_event() {
                if let Event::LoadSession(_) = &e {
                    on_load(server);
                }
                self.evs.push(format!("server {e:?}"));
            }
            let n = self.s2c.len();
            server.poll_transmit(&mut self.s2c);
            client.handle_receive(&self.s2c[n..], now);
            self.evs.extend(std::iter::from_fn(|| client.poll_event()).map(|e| format!("client {e:?}")));
            if self.compact {
                client.release_buffers();
                server.release_buffers();
            }
        }
    }
}

/// Both peers keep their session as JSON text between inputs once the
/// driver calls `release_buffers`: compacted after every step, the same
/// exchange (sets from either side with unicode, nested values and floats,
/// a reconnect that resumes the session) writes the same bytes, raises the
/// same events and ends with the same sessions, key order included.
#[test]
fn compacted_sessions_change_nothing() {
    type Run = (Vec<u8>, Vec<u8>, Vec<String>, String, String);
    let run = |compact: bool| -> Run {
        let now = Instant::now();
        let seeded = |s| Config { entropy: Some(Entropy::seeded([s; 32])), ..Config::default() };
        let mut client = Peer::new(Role::Client, seeded(7), now);
        let mut server = Peer::new(Role::Server, seeded(8), now);
        let mut x = Exchange::new(compact);
        let none = |s: &mut Peer| s.handle_session_loaded(None, now);
        x.open(&mut client, &mut server, now, none);
        client.set(r#"["z", 1]"#).unwrap();
        x.step(&mut client, &mut server, now, none);
        server.set(r#"[{"é": "h\u00e9llo 😀 \"q\"\n", "nested": {"b": [1.5, {"c": null}], "a": 2500.0}}]"#).unwrap();
        x.step(&mut client, &mut server, now, none);
        client.set(r#"[{"a": -0.0, "z": "again", "big": 18446744073709551615, "f": 0.1}]"#).unwrap();
        x.step(&mut client, &mut server, now, none);
        // A new connection resumes the session the server kept.
        client.handle_close();
        server.handle_close();
        let stored_server = server;
        let mut server = Peer::new(Role::Server, seeded(9), now);
        x.open(&mut client, &mut server, now, |s| {
            s.handle_session_loaded(Some(stored_server.session().into_owned()), now)
        });
        assert_eq!(*server.session(), *stored_server.session(), "resumed");
        server.set(r#"["last", {"x": [[]]}]"#).unwrap();
        x.step(&mut client, &mut server, now, none);
        let (c, s) = (client.session().into_owned(), server.session().into_owned());
        (x.c2s, x.s2c, x.evs, Value::Object(c).to_string(), Value::Object(s).to_string())
    };
    let plain = run(false);
    assert!(plain.2.iter().any(|e| e.contains("Connected { resumed: true }")), "{:#?}", plain.2);
    let compacted = run(true);
    assert!(
        plain.3.contains(r#""z":"again","é":"héllo 😀 \"q\"\n","nested":{"b":[1.5,{"c":null}],"a":2500.0}"#),
        "{}",
        plain.3
    );
    assert!(plain.3.ends_with(r#""last":{"x":[[]]}}"#), "{}", plain.3);
    assert_eq!(compacted, plain);
}

/// An outbox idle between inputs gives up its state (`release_buffers`)
/// and makes it again on first use: compacted after every step, an
/// exchange where each side sends after idling, a server's events lost on
/// the wire are taken over by the connection that resumes the session and
/// resent, and a client's lost event is resent after its reconnect, writes
/// the same bytes and raises the same events (acks, ack timeouts) as
/// without compaction.
#[test]
fn idle_outboxes_released_change_nothing() {
    type Run = (Vec<u8>, Vec<u8>, Vec<String>);
    let run = |compact: bool| -> Run {
        let now = Instant::now();
        let seeded = |s| Config {
            entropy: Some(Entropy::seeded([s; 32])),
            ack_timeout: Some(Duration::from_secs(5)),
            ..Config::default()
        };
        let mut client = Peer::new(Role::Client, seeded(7), now);
        let mut server = Peer::new(Role::Server, seeded(8), now);
        let mut x = Exchange::new(compact);
        let none = |s: &mut Peer| s.handle_session_loaded(None, now);
        x.open(&mut client, &mut server, now, none);
        // Idle, then both send.
        server.send_event(r#"["a",1]"#, Some((1, 1)), now);
        client.send_event(r#"["b",2]"#, Some((1, 2)), now);
        x.step(&mut client, &mut server, now, none);
        // The server's next events are lost with the connection; the
        // resuming connection takes them over and resends them.
        server.send_event(r#"["c",3]"#, Some((1, 3)), now);
        server.send_event(r#"["d",4]"#, None, now);
        let mut lost = Vec::new();
        server.poll_transmit(&mut lost);
        assert!(String::from_utf8_lossy(&lost).contains(r#""c",3"#));
        client.handle_close();
        server.handle_close();
        let retained = server.take_retained();
        if compact {
            server.release_buffers();
        }
        let mut server = Peer::new(Role::Server, seeded(9), now);
        let mut retained = Some(retained);
        x.open(&mut client, &mut server, now, |s| {
            let stored = retained.as_ref().map(|_| s.session().into_owned());
            if let Some(r) = retained.take() {
                s.adopt_retained(r);
            }
            s.handle_session_loaded(stored, now);
        });
        // The client's event is lost with the next connection and resent
        // on the one after; one callback's ack times out on the way.
        client.send_event(r#"["e",5]"#, Some((1, 5)), now);
        client.send_event(r#"["f",6]"#, Some((1, 6)), now);
        let mut lost = Vec::new();
        client.poll_transmit(&mut lost);
        client.handle_timeout(now + Duration::from_secs(6));
        let timeouts: Vec<String> =
            std::iter::from_fn(|| client.poll_event()).map(|e| format!("client {e:?}")).collect();
        client.handle_close();
        server.handle_close();
        if compact {
            client.release_buffers();
        }
        let mut server = Peer::new(Role::Server, seeded(10), now);
        x.open(&mut client, &mut server, now, none);
        assert_eq!(client.unacked_len() + client.queued_len() + server.unacked_len() + server.queued_len(), 0);
        x.evs.extend(timeouts);
        (x.c2s, x.s2c, x.evs)
    };
    let plain = run(false);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for e in ["Acked((1, 1))", "Acked((1, 2))", "Acked((1, 3))", "AckTimeout((1, 5))", "Connected { resumed: true }"] {
        assert!(plain.2.iter().any(|x| x.contains(e)), "{e}: {:#?}", plain.2);
    }
    assert!(text(&plain.1).contains(r#""c",3"#) && text(&plain.1).contains(r#""d",4"#), "resent");
    assert!(text(&plain.0).contains(r#""e",5"#) && text(&plain.0).contains(r#""f",6"#), "resent");
    assert_eq!(run(true), plain);
}
