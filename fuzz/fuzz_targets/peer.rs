//! `Peer` (src/protocol/peer/) driven by a structured sequence of steps: inbound messages
//! of every shape (plus raw garbage), time steps, timeouts, closes, reopens, server-side
//! resumes (`take_retained` / `adopt_retained` into a fresh peer), local sends and sets.
//!
//! Checked after every step:
//! * no panic;
//! * bounded state: pending events within `max_queue_length` / `max_queue_bytes` (one
//!   oversized event may stay), at most 8192 in flight, `pending_bytes` zero when nothing is
//!   pending, no output while closed;
//! * `wants_write` says whether `poll_transmit` has bytes; `write_to` cut short keeps the
//!   rest, so the stream stays well framed;
//! * every ack written (and every `AckDue`) names an id that actually arrived;
//! * acks due are written per batch with `write_acks`: a cumulative ack (`_uhura_ack`) is
//!   only written to a peer that negotiated it, names the last of the acks it stands for,
//!   and never stands for a duplicate's ack;
//! * with `defer_acks` (the engine's setting), an acked application event was delivered;
//! * duplicate suppression: an id of ours delivered while extensions were on is never
//!   delivered again while they are on;
//! * each send callback hears its fate at most once (acked, dropped or timed out).
//!
//! One file (over 400 lines): cargo fuzz builds each file of fuzz_targets/ as a target of its
//! own, so the steps, the harness and its checks, which must be read together, stay here.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uhura::protocol::entropy::Entropy;
use uhura::protocol::framing::Reader;
use uhura::protocol::message::{self, Incoming};
use uhura::protocol::peer::{Config, Event, Notify, Peer, Role};

const MAX_IN_FLIGHT: usize = 8192;

/// `UHURA_FUZZ_TRACE=1` prints each step, input, event and output message (to read a
/// crash: `$B/peer artifacts/<file>`).
static TRACE: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var_os("UHURA_FUZZ_TRACE").is_some());

macro_rules! trace {
    ($($t:tt)*) => {
        if *TRACE {
            eprintln!($($t)*);
        }
    };
}
const MAX_SEEN_SENDERS: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    server: bool,
    limits: Limits,
    extensions: bool,
    heartbeat_ms: Option<u16>,
    ack_timeout_ms: Option<u16>,
    persist_delivery: bool,
    defer_acks: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Limits {
    max_queue_length: Option<u8>,
    max_queue_bytes: Option<u16>,
    max_message_size: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Recv(Msg),
    /// Several messages in one read.
    RecvMany(Vec<Msg>),
    /// Bytes that need not be JSON at all, outside the framing.
    Garbage(Vec<u8>),
    Advance(u16),
    Timeout,
    TakeOutput,
    Close,
    Open,
    /// Server: the connection drops and a new one resumes the session.
    Resume,
    Send {
        name: u8,
        size: u8,
        callback: bool,
    },
    Set(SetArgs),
    SendMessage(u8),
    SessionLoaded(Option<u8>),
    SetMaxQueueLength(u8),
    /// A non-blocking write that takes this many bytes (0: would block).
    WriteSome(u16),
}

#[derive(Arbitrary, Debug)]
enum SetArgs {
    Key(u8, Option<u8>),
    Object(Vec<(u8, u8)>),
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IdKind {
    /// `<12 hex>-<seq>`: one of four senders of ours.
    Ours {
        sender: u8,
        seq: u8,
    },
    Uuid(u8),
    Empty,
    Null,
    Number,
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Event {
        name: u8,
        id: Option<IdKind>,
        object: bool,
    },
    Ack(IdKind),
    /// Acks one of the ids we have seen the peer send.
    AckOurs(u16),
    /// `["_uhura_ack", id]`: that id and everything sent before it.
    CumulativeAck(IdKind),
    /// The same for one of the ids we have seen the peer send.
    CumulativeAckOurs(u16),
    Start(Option<HandshakeConfig>),
    Connect(Option<HandshakeConfig>),
    SetKey(u8, u8),
    SetObject(Vec<(u8, u8)>),
    SetSession(Option<u8>),
    Invalidate {
        object: bool,
        id: Option<IdKind>,
    },
    Heartbeat,
    /// Any JSON text as one message.
    Text(String),
    /// A message of the recorded traffic (tests/vectors/).
    Recorded(u8),
}

#[derive(Arbitrary, Debug)]
struct HandshakeConfig {
    object_mode: Option<bool>,
    enable_acks: Option<bool>,
    uhura: Option<u8>,
    heartbeat: Option<u32>,
}

include!("recorded.rs");

/// An id as the peer reports it (its raw JSON literal), decoded.
fn decoded_id(raw: &str) -> String {
    serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned())
}

/// The id a message text carries, if any (it counts as received).
fn text_id(t: &str) -> Option<String> {
    match message::parse(t) {
        Ok(Incoming::Event { id: Some(id), .. }) => Some(decoded_id(id)),
        _ => None,
    }
}

fn id_text(k: IdKind) -> Option<String> {
    Some(match k {
        IdKind::Ours { sender, seq } => format!("{:012x}-{}", u64::from(sender % 4) * 0x1111_1111_1111, seq % 16),
        IdKind::Uuid(n) => format!("0f59ce98-90ca-409d-84c5-98feee1471{n:02x}"),
        IdKind::Empty => String::new(),
        IdKind::Null | IdKind::Number => return None,
    })
}

fn id_json(k: IdKind) -> String {
    match k {
        IdKind::Null => "null".into(),
        IdKind::Number => "5".into(),
        k => serde_json::to_string(&id_text(k).unwrap()).unwrap(),
    }
}

fn config_json(c: &Option<HandshakeConfig>) -> String {
    let Some(c) = c else { return String::new() };
    let mut fields = Vec::new();
    if let Some(b) = c.object_mode {
        fields.push(format!("\"objectMode\":{b}"));
    }
    if let Some(b) = c.enable_acks {
        fields.push(format!("\"enableAcks\":{b}"));
    }
    if let Some(v) = c.uhura {
        fields.push(format!("\"uhura\":{v}"));
    }
    if let Some(v) = c.heartbeat {
        fields.push(format!("\"heartbeat\":{v}"));
    }
    format!(",{{{}}}", fields.join(","))
}

struct Harness {
    role: Role,
    config: Config,
    peer: Peer,
    now: Instant,
    /// The peer's output as the remote side reads it, reset per transport.
    out_reader: Reader,
    /// Ids of every inbound message that carried one.
    received_ids: HashSet<String>,
    /// Ids of application events delivered to the application.
    delivered: HashSet<String>,
    /// Ids delivered while extensions were on (duplicate suppression applies).
    delivered_extended: HashSet<String>,
    senders: HashSet<String>,
    /// Ids of events the peer sent.
    sent_ids: Vec<String>,
    /// Callbacks handed out, and those whose fate was reported.
    notifies: HashSet<Notify>,
    settled: HashSet<Notify>,
    next_notify: u64,
    /// Ids of application events we fed, by the marker in their arguments.
    app_event_ids: HashSet<String>,
    /// The inbound root array was opened on this transport.
    in_started: bool,
    /// Per sender of ours: the highest sequence number fed (events and other messages).
    max_fed: HashMap<String, u64>,
    /// Per sender of ours: the highest sequence number delivered.
    max_delivered: HashMap<String, u64>,
    /// Ids fed (at least once) before extensions were negotiated: not checked for
    /// duplicate deliveries.
    unsuppressed: HashSet<String>,
    /// Per sender of ours: the highest sequence number fed on this transport (events
    /// and other messages).
    transport_max: HashMap<String, u64>,
    /// Ids a sender of ours would never send where they were fed: new ids below its
    /// highest, an undelivered id below one already delivered, or any id below one
    /// already sent on the same transport (its sequence only grows, and resends repeat
    /// old ids in order, from the oldest unacknowledged, before anything newer). Such
    /// an id is taken for a duplicate by design (docs/PROTOCOL.md §9), so it is exempt
    /// from the loss check.
    out_of_order: HashSet<String>,
    /// Ids that other messages (not application events) carried too: a peer that reuses
    /// an id gets that message acked under it, which is not an event's ack.
    other_ids: HashSet<String>,
    /// Acks handed to `write_acks` on this transport and not yet read from the output,
    /// in order: (decoded id, duplicate).
    owed: std::collections::VecDeque<(String, bool)>,
    /// Ids repeated in `owed` made it ambiguous on this transport (see `paid_through`).
    owed_unchecked: bool,
}

impl Harness {
    fn new_peer(&self) -> Peer {
        Peer::new(self.role, self.config.clone(), self.now)
    }

    fn feed(&mut self, msgs: &[Msg]) {
        let mut text = String::new();
        for m in msgs {
            let json = self.message(m);
            // One root array per transport, as the old writers frame it.
            text.push_str(if self.in_started { "\n,\n" } else { "[\n" });
            self.in_started = true;
            text.push_str(&json);
        }
        self.feed_bytes(text.as_bytes());
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        trace!("IN {:?}", String::from_utf8_lossy(bytes));
        let ext_before = self.peer.extended();
        self.peer.handle_receive(bytes, self.now);
        self.drain_events(ext_before);
        // The engine's drained read: scratch freed, the reader suspended
        // between messages, the session compacted; the next bytes resume.
        self.peer.release_buffers();
    }

    fn message(&mut self, m: &Msg) -> String {
        match m {
            Msg::Event { name, id, object } => {
                // Only an object-shaped event carries its id.
                let id_s = if *object { id.and_then(id_text) } else { None };
                let marker = id_s.clone().unwrap_or_default();
                let args = format!("[\"ev{}\",{},1]", name % 4, serde_json::to_string(&marker).unwrap());
                if let Some(s) = &id_s {
                    if !s.is_empty() && !self.peer.extended() {
                        // Before the handshake there is no duplicate suppression yet.
                        self.unsuppressed.insert(s.clone());
                    }
                    if !s.is_empty() {
                        let new = self.received_ids.insert(s.clone());
                        self.app_event_ids.insert(s.clone());
                        if let Some((sender, seq)) = s.split_once('-').filter(|(p, _)| p.len() == 12) {
                            let seq: u64 = seq.parse().unwrap();
                            let max = self.max_fed.entry(sender.to_owned()).or_insert(seq);
                            let below_delivered = self.max_delivered.get(sender).is_some_and(|&m| seq < m);
                            let here = self.transport_max.entry(sender.to_owned()).or_insert(seq);
                            let below_here = seq < *here;
                            *here = (*here).max(seq);
                            if (new && seq < *max) || (below_delivered && !self.delivered.contains(s)) || below_here {
                                self.out_of_order.insert(s.clone());
                            }
                            *max = (*max).max(seq);
                        }
                    }
                }
                match (object, id) {
                    (true, Some(k)) => format!("{{\"args\":{args},\"id\":{}}}", id_json(*k)),
                    (true, None) => format!("{{\"args\":{args}}}"),
                    (false, _) => args,
                }
            }
            Msg::Ack(k) => format!(
                "{{\"args\":[{}]}}",
                serde_json::to_string(&format!("ack::{}", id_text(*k).unwrap_or_default())).unwrap()
            ),
            Msg::AckOurs(i) => {
                let id = self.sent_id(*i);
                format!("{{\"args\":[{}]}}", serde_json::to_string(&format!("ack::{id}")).unwrap())
            }
            Msg::CumulativeAck(k) => match k {
                IdKind::Null | IdKind::Number => format!("[\"_uhura_ack\",{}]", id_json(*k)),
                _ => format!("[\"_uhura_ack\",{}]", serde_json::to_string(&id_text(*k).unwrap_or_default()).unwrap()),
            },
            Msg::CumulativeAckOurs(i) => {
                format!("[\"_uhura_ack\",{}]", serde_json::to_string(&self.sent_id(*i)).unwrap())
            }
            Msg::Start(c) => format!("[\"start\"{}]", config_json(c)),
            Msg::Connect(c) => {
                // As a 0.1.x server sends it: object-shaped with an id when there is a config.
                if c.is_some() {
                    let id = "0f59ce98-90ca-409d-84c5-98feee1471c1";
                    self.note_other_id(id.into());
                    format!("{{\"args\":[\"connect\"{}],\"id\":\"{id}\"}}", config_json(c))
                } else {
                    "[\"connect\"]".into()
                }
            }
            Msg::SetKey(k, v) => format!("[\"_set\",\"k{}\",{v}]", k % 8),
            Msg::SetObject(kv) => {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"k{}\":{v}", k % 8)).collect();
                format!("[\"_set\",{{{}}}]", fields.join(","))
            }
            Msg::SetSession(Some(n)) => format!("[\"_set\",{{\"sessionID\":\"sess{n}\"}}]"),
            Msg::SetSession(None) => "[\"_set\",{}]".into(),
            Msg::Invalidate { object, id } => match (object, id) {
                (true, Some(k)) => {
                    if let Some(s) = id_text(*k).filter(|s| !s.is_empty()) {
                        self.note_other_id(s);
                    }
                    format!("{{\"args\":[\"invalidateSession\"],\"id\":{}}}", id_json(*k))
                }
                _ => "[\"invalidateSession\"]".into(),
            },
            Msg::Heartbeat => "[\"_uhura_hb\"]".into(),
            Msg::Text(t) => self.text_message(t),
            Msg::Recorded(i) => {
                let all = recorded_messages();
                self.text_message(&all[usize::from(*i) % all.len()])
            }
        }
    }

    /// One of the ids we have seen the peer send ("" before any).
    fn sent_id(&self, i: u16) -> String {
        if self.sent_ids.is_empty() {
            String::new()
        } else {
            self.sent_ids[usize::from(i) % self.sent_ids.len()].clone()
        }
    }

    fn text_message(&mut self, t: &str) -> String {
        if let Some(id) = text_id(t) {
            self.note_other_id(id);
        }
        t.to_owned()
    }

    /// An id carried by a message that is not one of our application events.
    fn note_other_id(&mut self, id: String) {
        // A sender of ours numbers these too: later resends below them are out of order,
        // and so are new ids below them on any later transport (the peer keeps their
        // seen mark).
        if let Some((sender, seq)) = id.split_once('-').filter(|(p, _)| p.len() == 12) {
            if let Ok(seq) = seq.parse::<u64>() {
                for max in [&mut self.transport_max, &mut self.max_fed] {
                    let here = max.entry(sender.to_owned()).or_insert(seq);
                    *here = (*here).max(seq);
                }
            }
        }
        self.other_ids.insert(id.clone());
        self.received_ids.insert(id);
    }

    fn drain_events(&mut self, ext_before: bool) {
        let extended = ext_before && self.peer.extended();
        // The acks due in this batch, written together as the engine does once the
        // application has handled it.
        let mut due: Vec<(String, bool)> = Vec::new();
        while let Some(ev) = self.peer.poll_event() {
            trace!("EV {ev:?}");
            match ev {
                Event::Message(args) => {
                    let v: Vec<serde_json::Value> = match serde_json::from_str(&args) {
                        Ok(v) => v,
                        Err(_) => continue,
                    };
                    let name = v.first().and_then(|n| n.as_str()).unwrap_or("");
                    if !(name.starts_with("ev") && name.len() == 3) {
                        continue;
                    }
                    let Some(id) = v.get(1).and_then(|m| m.as_str()).filter(|s| !s.is_empty()) else { continue };
                    if !self.app_event_ids.contains(id) {
                        continue;
                    }
                    self.delivered.insert(id.to_owned());
                    if let Some((sender, seq)) = id.split_once('-').filter(|(s, _)| s.len() == 12) {
                        self.senders.insert(sender.to_owned());
                        let seq: u64 = seq.parse().unwrap_or(0);
                        let max = self.max_delivered.entry(sender.to_owned()).or_insert(seq);
                        *max = (*max).max(seq);
                    }
                    if extended
                        && self.senders.len() <= MAX_SEEN_SENDERS
                        && id.len() > 13
                        && id.as_bytes()[12] == b'-'
                        && !self.unsuppressed.contains(id)
                    {
                        assert!(self.delivered_extended.insert(id.to_owned()), "id {id} delivered twice");
                    }
                }
                Event::AckDue { id, duplicate } => {
                    // The id as it was on the wire: its raw JSON literal.
                    assert!(self.received_ids.contains(&decoded_id(&id)), "AckDue for {id:?}, which never arrived");
                    due.push((id, duplicate));
                }
                Event::Acked(n)
                | Event::AckTimeout(n)
                | Event::Dropped { notify: Some(n) }
                | Event::Refused { notify: Some(n) } => {
                    assert!(self.notifies.contains(&n), "fate of unknown callback {n:?}");
                    assert!(self.settled.insert(n), "callback {n:?} settled twice");
                }
                Event::LoadSession(_) | Event::Dropped { notify: None } | Event::Refused { notify: None } => {}
                Event::Connected { .. }
                | Event::Set(_)
                | Event::SaveSession
                | Event::Persist { .. }
                | Event::Unpersist { .. }
                | Event::Seen { .. }
                | Event::Error(_) => {}
            }
        }
        if !due.is_empty() {
            if self.peer.is_open() {
                self.owed.extend(due.iter().map(|(id, dup)| (decoded_id(id), *dup)));
            }
            self.peer.write_acks(due.iter().map(|(id, dup)| (id.as_str(), *dup)));
        }
    }

    /// An ack read from the output: it pays the first ack owed under that id.
    fn paid(&mut self, id: &str) {
        if self.ambiguous(id) {
            return;
        }
        if let Some(i) = self.owed.iter().position(|(o, _)| o == id) {
            self.owed.remove(i);
        }
    }

    /// A cumulative ack read from the output: it stands for the acks owed up to the one
    /// it names, which ends a run of new messages' acks (none of them a duplicate's).
    /// Not checked once `ambiguous`.
    fn paid_through(&mut self, id: &str) {
        assert!(self.peer.cumulative_acks(), "cumulative ack to a peer that did not negotiate it");
        if self.ambiguous(id) {
            return;
        }
        let run_end = self.owed.iter().position(|(_, dup)| *dup).unwrap_or(self.owed.len());
        match self.owed.iter().take(run_end).rposition(|(o, _)| o == id) {
            Some(i) => drop(self.owed.drain(..=i)),
            None => panic!("cumulative ack {id:?} ends no run of acks owed: {:?}", self.owed),
        }
    }

    /// Whether the acks on this transport can no longer be matched to what is owed:
    /// an id owed twice (a peer reusing ids), or an ack whose id a non-event message
    /// also used (the peer acks those on its own, e.g. a client's `invalidateSession`,
    /// so the ack may be that message's). Once ambiguous, acks are not checked on this
    /// transport any more.
    fn ambiguous(&mut self, id: &str) -> bool {
        let repeated =
            self.owed.iter().enumerate().any(|(i, (o, _))| self.owed.iter().skip(i + 1).any(|(p, _)| p == o));
        if repeated || self.owed_unchecked || self.other_ids.contains(id) {
            self.owed_unchecked = true;
            self.owed.clear();
        }
        self.owed_unchecked
    }

    fn take_output(&mut self) {
        let mut out = Vec::new();
        let wanted = self.peer.wants_write();
        let n = self.peer.poll_transmit(&mut out);
        assert_eq!(wanted, n > 0, "wants_write disagrees with poll_transmit");
        self.read_output(&out);
    }

    /// A socket that takes at most `n` bytes: what it takes is read on, the peer keeps the rest.
    fn write_some(&mut self, n: usize) {
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
        let mut w = Takes(n, Vec::new());
        match self.peer.write_to(&mut w) {
            Ok(written) => assert_eq!(written, w.1.len()),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
        self.read_output(&w.1);
    }

    /// Whether an ack of `id` must follow its delivery: with `defer_acks`, for an
    /// application event of ours, unless a sender of ours would never have sent it there
    /// or other messages reused its id.
    fn loss_checked(&self, id: &str) -> bool {
        self.config.defer_acks
            && self.app_event_ids.contains(id)
            && !self.out_of_order.contains(id)
            && !self.other_ids.contains(id)
    }

    fn read_output(&mut self, out: &[u8]) {
        let mut msgs = Vec::new();
        // Our own output must always be well framed.
        self.out_reader.feed(out, &mut msgs).expect("the peer wrote a malformed stream");
        for m in msgs {
            trace!("OUT {m}");
            match message::parse(&m) {
                Ok(Incoming::Event { name, args, id: None }) if name == "_uhura_ack" => {
                    let id: String = serde_json::from_str::<(String, String)>(args).expect("[\"_uhura_ack\", id]").1;
                    assert!(self.received_ids.contains(&id), "cumulative ack for {id:?}, which never arrived");
                    if self.loss_checked(&id) {
                        assert!(self.delivered.contains(&id), "cumulative ack for {id:?}, never delivered");
                    }
                    self.paid_through(&id);
                }
                Ok(Incoming::Ack { id }) => {
                    assert!(self.received_ids.contains(id.as_ref()), "ack for {id:?}, which never arrived");
                    self.paid(id.as_ref());
                    if self.loss_checked(id.as_ref()) {
                        assert!(self.delivered.contains(id.as_ref()), "ack for {id:?}, never delivered");
                    }
                }
                Ok(Incoming::Event { id: Some(id), .. }) => {
                    if self.sent_ids.len() < 256 {
                        self.sent_ids.push(id.to_owned());
                    }
                }
                Ok(_) => {}
                // `send_message` writes whatever the application gave it.
                Err(_) => {}
            }
        }
        self.drain_events(self.peer.extended());
    }

    fn on_open(&mut self) {
        self.peer.handle_open(self.now);
        self.out_reader = Reader::new(usize::MAX);
        self.in_started = false;
        self.transport_max.clear();
        // What was owed on the last transport went with it.
        self.owed.clear();
        self.owed_unchecked = false;
        self.drain_events(false);
    }

    fn check(&self) {
        let p = &self.peer;
        let pending = p.queued_len() + p.unacked_len();
        assert!(p.unacked_len() <= MAX_IN_FLIGHT);
        assert!(pending <= self.config.max_queue_length, "{pending} pending > max_queue_length");
        if pending > 1 {
            assert!(
                p.pending_bytes() <= self.config.max_queue_bytes,
                "{} pending bytes > {}",
                p.pending_bytes(),
                self.config.max_queue_bytes
            );
        }
        if pending == 0 {
            assert_eq!(p.pending_bytes(), 0, "pending_bytes drifted");
        }
        if !p.is_open() {
            assert_eq!(p.pending_output(), 0, "output while closed");
        }
    }
}

fuzz_target!(|input: Input| {
    let role = if input.server { Role::Server } else { Role::Client };
    let config = Config {
        max_message_size: input.limits.max_message_size.map_or(1 << 20, |n| usize::from(n).max(16)),
        max_queue_length: input.limits.max_queue_length.map_or(usize::MAX, usize::from),
        max_queue_bytes: input.limits.max_queue_bytes.map_or(64 << 20, usize::from),
        extensions: input.extensions,
        heartbeat_interval: input.heartbeat_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        heartbeat_timeout: Duration::from_secs(30),
        ack_timeout: input.ack_timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        handshake_timeout: Duration::from_secs(30),
        persist_delivery: input.persist_delivery,
        defer_acks: input.defer_acks,
        // Reproducible: a crash replays with the same ids.
        entropy: Some(Entropy::seeded([7; 32])),
        ..Config::default()
    };
    let now = Instant::now();
    let mut h = Harness {
        role,
        peer: Peer::new(role, config.clone(), now),
        config,
        now,
        out_reader: Reader::new(usize::MAX),
        received_ids: HashSet::new(),
        delivered: HashSet::new(),
        delivered_extended: HashSet::new(),
        senders: HashSet::new(),
        sent_ids: Vec::new(),
        notifies: HashSet::new(),
        settled: HashSet::new(),
        next_notify: 0,
        app_event_ids: HashSet::new(),
        in_started: false,
        max_fed: HashMap::new(),
        max_delivered: HashMap::new(),
        transport_max: HashMap::new(),
        unsuppressed: HashSet::new(),
        out_of_order: HashSet::new(),
        other_ids: HashSet::new(),
        owed: std::collections::VecDeque::new(),
        owed_unchecked: false,
    };
    h.on_open();
    for step in input.steps.iter().take(256) {
        trace!("STEP {step:?}");
        match step {
            Step::Recv(m) => h.feed(std::slice::from_ref(m)),
            Step::RecvMany(ms) => h.feed(ms),
            Step::Garbage(b) => h.feed_bytes(b),
            Step::Advance(ms) => h.now += Duration::from_millis(u64::from(*ms) * 16),
            Step::Timeout => {
                let ext = h.peer.extended();
                if let Some(t) = h.peer.poll_timeout() {
                    if t <= h.now {
                        h.peer.handle_timeout(h.now);
                    }
                }
                h.peer.handle_timeout(h.now);
                h.drain_events(ext);
            }
            Step::TakeOutput => h.take_output(),
            Step::Close => {
                h.peer.handle_close();
                h.drain_events(false);
            }
            // A client's peer outlives its sockets; a server's peer serves one connection,
            // and the engine hands its state to the connection that resumes its session
            // (only one that has a session id: src/engine/retention.rs).
            Step::Open | Step::Resume => {
                h.peer.handle_close();
                h.drain_events(false);
                if h.role == Role::Server {
                    let retained = h.peer.session_id().is_some().then(|| h.peer.take_retained());
                    h.peer = h.new_peer();
                    h.on_open();
                    match retained {
                        Some(r) => h.peer.adopt_retained(r),
                        // A fresh peer knows no senders: duplicate suppression starts over.
                        None => {
                            h.delivered_extended.clear();
                            h.senders.clear();
                        }
                    }
                } else {
                    h.on_open();
                }
            }
            Step::Send { name, size, callback } => {
                let args = format!("[\"out{}\",\"{}\"]", name % 4, "x".repeat(usize::from(*size)));
                let notify = callback.then(|| {
                    h.next_notify += 1;
                    let n = (1, h.next_notify);
                    h.notifies.insert(n);
                    n
                });
                let ext = h.peer.extended();
                h.peer.send_event(&args, notify, h.now);
                h.drain_events(ext);
            }
            Step::Set(s) => {
                let args = match s {
                    SetArgs::Key(k, Some(v)) => format!("[\"k{}\",{v}]", k % 8),
                    SetArgs::Key(k, None) => format!("[\"k{}\"]", k % 8),
                    SetArgs::Object(kv) => {
                        let f: Vec<String> = kv.iter().map(|(k, v)| format!("\"k{}\":{v}", k % 8)).collect();
                        format!("[{{{}}}]", f.join(","))
                    }
                    SetArgs::Other(n) => format!("[{n}]"),
                };
                h.peer.set(&args).expect("valid set arguments");
                let ext = h.peer.extended();
                h.drain_events(ext);
            }
            Step::SendMessage(n) => {
                h.peer.send_message(&format!("[\"raw\",{n}]"));
            }
            Step::SessionLoaded(s) => {
                let stored = s.map(|n| {
                    let mut m = serde_json::Map::new();
                    m.insert("sessionID".into(), format!("sess{n}").into());
                    m.insert("stored".into(), n.into());
                    m
                });
                let ext = h.peer.extended();
                h.peer.handle_session_loaded(stored, h.now);
                h.drain_events(ext);
            }
            Step::WriteSome(n) => h.write_some(usize::from(*n)),
            Step::SetMaxQueueLength(n) => {
                h.config.max_queue_length = usize::from(*n);
                h.peer.set_max_queue_length(usize::from(*n));
                h.drain_events(h.peer.extended());
            }
        }
        h.check();
    }
});
