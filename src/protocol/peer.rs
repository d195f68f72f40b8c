//! One side of a uhura connection as a state machine without I/O: the driver
//! feeds it received bytes, API calls and the time, and takes out bytes to
//! write and events to deliver. A client's `Peer` outlives its sockets (the
//! session, the queue and the unacknowledged events carry across
//! reconnects); a server hands a closed peer's outbound state to the peer of
//! the connection that resumes the session (`take_retained` /
//! `adopt_retained`). Handshake, acks and the session: docs/PROTOCOL.md
//! §3-§5; legacy array mode: §10.
//!
//! Beyond the old protocol, two peers of ours negotiate extensions inside
//! the `start` / `connect` config objects (old servers echo back only
//! `objectMode` and `enableAcks`, old clients never ask): duplicate
//! suppression by message id, and heartbeats (docs/PROTOCOL.md §9).

use super::framing::{FrameError, Reader, Writer, DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_SIZE};
use super::message::{self, Incoming};
use super::session::{self, Session};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Version of our extensions, sent as `"uhura"` in the config objects.
pub const EXTENSIONS_VERSION: u64 = 1;
/// Name of the heartbeat message; only sent to peers that negotiated it.
pub const HEARTBEAT: &str = "_uhura_hb";
/// Sent, to peers that negotiated our extensions, right before closing the
/// connection over a protocol error in what the peer sent.
pub const REFUSED: &str = "_uhura_refused";
/// Past this much unwritten output, events wait in the queue instead, so a
/// peer that stops reading makes the queue (which is bounded) grow, not the
/// output buffer.
const OUTPUT_HIGH_WATER: usize = 1024 * 1024;
/// At most this many events are sent and not yet acknowledged. Bounds
/// what a drop makes us resend (so frequent drops cannot starve progress)
/// and what an old peer must search per ack (0.1.2's lookup is linear).
const MAX_IN_FLIGHT: usize = 8192;
/// How many senders' duplicate-suppression watermarks a peer remembers.
const MAX_SEEN_SENDERS: usize = 64;
/// An event that is the oldest unacknowledged one each time the peer
/// refuses our input (`REFUSED`) and closes the connection, this many times
/// in a row with nothing acknowledged in between, is taken as refused by the
/// peer (its reader rejects it) and dropped instead of being resent forever
/// (docs/PROTOCOL.md §9).
pub const REFUSALS_BEFORE_DROP: u32 = 3;

/// Event names the peer can never raise: local lifecycle events of the
/// emitter (and `start`, `invalidateSession` where they are not the protocol
/// messages of that name). Such a message is acknowledged and ignored
/// (docs/PROTOCOL.md §2).
pub const RESERVED_EVENTS: &[&str] =
    &["error", "connect", "disconnect", "drop", "reconnecting", "newListener", "removeListener", "start"];

#[derive(Debug, Clone)]
pub struct Config {
    pub max_message_size: usize,
    /// At most this many arguments after the event name (`maxArgs`).
    pub max_args: usize,
    /// At most this deep an argument array, itself level 1 (`maxDepth`).
    pub max_depth: usize,
    /// Pending events (queued plus unacknowledged) beyond this count drop the oldest.
    pub max_queue_length: usize,
    /// Pending events beyond this many bytes of JSON drop the oldest.
    pub max_queue_bytes: usize,
    /// Server: the `cookie` field of new sessions (the old server's connect Cookie).
    pub cookie: Value,
    /// Offer / accept our protocol extensions.
    pub extensions: bool,
    /// Send a heartbeat when nothing else was sent for this long (with our peers).
    pub heartbeat_interval: Option<Duration>,
    /// Declare the connection dead when nothing arrived for this long (with our peers).
    pub heartbeat_timeout: Duration,
    /// Report an error to an ack callback not acknowledged this long after `send`.
    pub ack_timeout: Option<Duration>,
    /// A transport whose handshake has not completed by then is closed (a
    /// hung server, or a client that never sends `start`).
    pub handshake_timeout: Duration,
    /// Server: bytes of events held before the handshake completes. Before
    /// `start` no client of any version sends events, so more is a protocol
    /// error; while a resumed session loads, more pauses reading instead
    /// (`input_paused`), since an old client sends its queue right then.
    pub max_handshake_bytes: usize,
    /// A `_set` (either side's) that would make the session larger than
    /// this many bytes of JSON is refused.
    pub max_session_bytes: usize,
    /// Client: the resume secret of the session it starts with (kept by the
    /// application from an earlier run; see `Peer::resume_secret`).
    pub resume_secret: Option<String>,
    /// Server: report `Persist` / `Unpersist` / `Seen` so a shared store can
    /// carry delivery state to another server.
    pub persist_delivery: bool,
    /// Report `AckDue` instead of acknowledging on arrival (see `ack`).
    pub defer_acks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_args: message::DEFAULT_MAX_ARGS,
            max_depth: DEFAULT_MAX_DEPTH,
            max_queue_length: usize::MAX,
            max_queue_bytes: 64 * 1024 * 1024,
            cookie: session::default_cookie(),
            extensions: true,
            heartbeat_interval: Some(Duration::from_secs(15)),
            heartbeat_timeout: Duration::from_secs(30),
            ack_timeout: None,
            handshake_timeout: Duration::from_secs(30),
            max_handshake_bytes: 1024 * 1024,
            max_session_bytes: 1024 * 1024,
            resume_secret: None,
            persist_delivery: false,
            defer_acks: false,
        }
    }
}

/// Whom to tell about an event's fate: an application handle and its own
/// sequence number for the event.
pub type Notify = (u32, u64);

/// What the peer reports to its driver and, through it, to the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed. `resumed`: the server resumed a stored session.
    Connected { resumed: bool },
    /// An application event: raw JSON of its argument array, name first.
    Message(String),
    /// A `_set` from the peer (already merged): raw JSON, `"_set"` first.
    Set(String),
    /// Acknowledged (or written, when acks are off).
    Acked(Notify),
    /// The ack did not come within `ack_timeout`. The event stays queued
    /// for delivery; only the callback is released.
    AckTimeout(Notify),
    /// A pending event was dropped because the queue was over its limits.
    Dropped { notify: Option<Notify> },
    /// A pending event was dropped because the peer refused it: it closed the
    /// connection with this event the oldest unacknowledged one
    /// `REFUSALS_BEFORE_DROP` times in a row.
    Refused { notify: Option<Notify> },
    /// Server: look this id up in the store, then call `session_loaded`.
    LoadSession(String),
    /// Server: the session changed; save it under `session_id()`.
    SaveSession,
    /// Server (`persist_delivery`): an outbound event to keep until acked.
    Persist { id: String, args: String },
    /// Server (`persist_delivery`): that event was acknowledged or dropped.
    Unpersist { id: String },
    /// Server (`persist_delivery`): the highest message seen from a sender.
    Seen { sender: String, seq: u64 },
    /// (`defer_acks`) Once the application has handled the events before
    /// this one, acknowledge message `id` (its raw JSON string literal) with
    /// `write_ack`.
    AckDue(String),
    /// A protocol error, or the peer went silent; the driver closes this transport.
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No transport.
    Closed,
    /// Client: `start` sent, waiting for the server's `connect`.
    AwaitingConnect,
    /// Server: waiting for the client's `start`.
    AwaitingStart,
    /// Server: waiting for the store to answer `LoadSession`.
    LoadingSession,
    Ready,
    /// A protocol error happened; nothing more is read on this transport.
    Failed,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    /// Set for events taken over from another server: their original id.
    foreign_id: Option<String>,
    args: String,
    notify: Option<Notify>,
}

/// Which way a message went, for a [`WireTap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Received,
    Sent,
}

/// Sees the JSON text of every message as it is framed for the wire or
/// taken off it, in wire order (diagnostics: `DEBUG=uhura:protocol`).
pub type WireTap = std::sync::Arc<dyn Fn(Direction, &str) + Send + Sync>;

/// A closed server-side peer's outbound state, handed to the connection
/// that resumes its session.
#[derive(Debug, Default)]
pub struct Retained {
    id_prefix: String,
    next_seq: u64,
    pending: VecDeque<Pending>,
    seen: Vec<(String, u64)>,
    deadlines: VecDeque<(Instant, u64, Notify)>,
    suspect: Option<(u64, u32)>,
}

impl Retained {
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    /// Who to tell that these events will never be delivered.
    pub fn notifies(&self) -> Vec<Notify> {
        self.pending.iter().filter_map(|p| p.notify).collect()
    }
}

pub struct Peer {
    role: Role,
    config: Config,
    phase: Phase,
    reader: Reader,
    writer: Writer,
    out: Vec<u8>,
    scratch: String,
    received: Vec<String>,
    events: VecDeque<Event>,
    /// Server: events that arrived before the handshake completed.
    held: Vec<Event>,
    /// Bytes of the arguments in `held`.
    held_bytes: usize,
    object_mode: bool,
    enable_acks: bool,
    /// Our extensions are on for this transport (the peer is one of ours).
    extended: bool,
    /// Server: whether the client's `start` carried a config object.
    peer_has_config: bool,
    /// The peer's heartbeat interval, if it sends heartbeats.
    peer_heartbeat: Option<Duration>,
    session: Session,
    /// The session's resume secret: the client's, issued by our server; on a
    /// server, what the client presented in `start`.
    resume_secret: Option<String>,
    /// `session::size(&session)`, when known; None after a wholesale change.
    session_size: Option<usize>,
    /// What changed since the driver last took `take_session_changes`.
    session_changes: session::Changes,
    session_id: Option<String>,
    id_prefix: String,
    next_seq: u64,
    queue: VecDeque<Pending>,
    unacked: BTreeMap<u64, Pending>,
    foreign_ids: HashMap<String, u64>,
    pending_bytes: usize,
    /// Per sender id prefix: the highest sequence number delivered.
    seen: Vec<(String, u64)>,
    /// Ack deadlines of events with callbacks, in send order.
    deadlines: VecDeque<(Instant, u64, Notify)>,
    last_rx: Instant,
    /// When the last heartbeat went out.
    last_tx: Instant,
    /// When the current transport opened.
    opened_at: Instant,
    close_requested: bool,
    tap: Option<WireTap>,
    /// The oldest unacknowledged event at the last closes, and how many
    /// closes in a row found it so (see `REFUSALS_BEFORE_DROP`).
    suspect: Option<(u64, u32)>,
    /// Something was acknowledged on the current transport.
    progressed: bool,
    /// The peer said it refused our input on the current transport.
    peer_refused: bool,
}

fn start_config(config: &Config, resume_secret: Option<&str>) -> String {
    let mut s = String::from(r#"{"objectMode":true,"enableAcks":true"#);
    if config.extensions {
        let _ = write!(s, r#","uhura":{EXTENSIONS_VERSION}"#);
        if let Some(hb) = config.heartbeat_interval {
            let _ = write!(s, r#","heartbeat":{}"#, hb.as_millis());
        }
        if let Some(secret) = resume_secret {
            s.push_str(r#","resume":"#);
            message::push_json_string(secret, &mut s);
        }
    }
    s.push('}');
    s
}

/// Splits one of our message ids, `<12 hex>-<seq>`, into sender and sequence.
fn parse_our_id(id: &str) -> Option<(&str, u64)> {
    let (prefix, seq) = id.split_at_checked(13)?;
    if !prefix.ends_with('-') || !prefix[..12].bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((prefix, seq.parse().ok()?))
}

impl Peer {
    pub fn new(role: Role, config: Config, now: Instant) -> Self {
        let mut prefix = [0u8; 6];
        session::fill_random(&mut prefix);
        let id_prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect::<String>() + "-";
        let resume_secret = config.resume_secret.clone();
        Peer {
            role,
            reader: Reader::with_limits(config.max_message_size, config.max_depth),
            config,
            phase: Phase::Closed,
            writer: Writer::new(),
            out: Vec::new(),
            scratch: String::new(),
            received: Vec::new(),
            events: VecDeque::new(),
            held: Vec::new(),
            held_bytes: 0,
            object_mode: false,
            enable_acks: false,
            extended: false,
            peer_has_config: false,
            peer_heartbeat: None,
            session: Session::new(),
            resume_secret,
            session_size: None,
            session_changes: session::Changes::Nothing,
            session_id: None,
            id_prefix,
            next_seq: 0,
            queue: VecDeque::new(),
            unacked: BTreeMap::new(),
            foreign_ids: HashMap::new(),
            pending_bytes: 0,
            seen: Vec::new(),
            deadlines: VecDeque::new(),
            last_rx: now,
            last_tx: now,
            opened_at: now,
            close_requested: false,
            tap: None,
            suspect: None,
            progressed: false,
            peer_refused: false,
        }
    }

    /// Installs (or removes) the observer of every message sent and received.
    pub fn set_wire_tap(&mut self, tap: Option<WireTap>) {
        self.tap = tap;
    }

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }
    pub fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Closed)
    }
    pub fn object_mode(&self) -> bool {
        self.object_mode
    }
    pub fn enable_acks(&self) -> bool {
        self.enable_acks
    }
    /// Whether the peer is one of ours (extensions negotiated).
    pub fn extended(&self) -> bool {
        self.extended
    }
    pub fn session(&self) -> &Session {
        &self.session
    }
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    /// A protocol error or heartbeat timeout ended this transport.
    /// Server: stop reading for now. A resuming session is loading and
    /// more than `max_handshake_bytes` of events wait for it.
    pub fn input_paused(&self) -> bool {
        self.phase == Phase::LoadingSession && self.held_bytes > self.config.max_handshake_bytes
    }

    pub fn has_failed(&self) -> bool {
        self.phase == Phase::Failed
    }
    /// The transport should be closed once the output is written.
    pub fn close_requested(&self) -> bool {
        self.close_requested
    }
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }
    /// Bytes of JSON held for pending (queued or unacknowledged) events.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
    pub fn set_max_queue_length(&mut self, n: usize) {
        self.config.max_queue_length = n;
        self.enforce_limits();
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Moves the bytes to write into `buf`, then lets queued events that
    /// waited for room into the output.
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
            self.out.clear();
        }
        self.refill();
    }

    /// Puts back, in front of anything newer, output that could not be written.
    pub fn unshift_output(&mut self, bytes: &[u8]) {
        self.out.splice(0..0, bytes.iter().copied());
    }

    /// Raw bytes onto the wire, outside the framing (`socket.write`).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A new transport is up. The client starts the handshake.
    pub fn on_open(&mut self, now: Instant) {
        self.reader = Reader::with_limits(self.config.max_message_size, self.config.max_depth);
        self.progressed = false;
        self.peer_refused = false;
        self.writer = Writer::new();
        self.out.clear();
        self.close_requested = false;
        self.object_mode = false;
        self.enable_acks = false;
        self.extended = false;
        self.peer_heartbeat = None;
        self.last_rx = now;
        self.last_tx = now;
        self.opened_at = now;
        match self.role {
            Role::Client => {
                self.phase = Phase::AwaitingConnect;
                let session = Value::Object(self.session.clone()).to_string();
                self.frame_str(&format!("[\"_set\",{session}]"));
                let start = start_config(&self.config, self.resume_secret.as_deref());
                self.frame_str(&format!("[\"start\",{start}]"));
            }
            Role::Server => {
                self.phase = Phase::AwaitingStart;
                self.resume_secret = None;
                self.session = Session::new();
                self.session.insert("cookie".into(), session::new_cookie(&self.config.cookie, session::now_millis()));
                self.session_replaced();
            }
        }
    }

    /// The transport closed. Unacknowledged events go back to the head of the
    /// queue, in order, to be sent again after the next handshake.
    pub fn on_close(&mut self) {
        let refused = self.phase == Phase::Ready && std::mem::take(&mut self.peer_refused);
        self.phase = Phase::Closed;
        self.out.clear();
        self.note_refusal(refused);
        self.held.clear();
        self.held_bytes = 0;
        if !self.unacked.is_empty() {
            let mut resend: VecDeque<Pending> = std::mem::take(&mut self.unacked).into_values().collect();
            resend.append(&mut self.queue);
            self.queue = resend;
        }
    }

    /// A poison message (one the peer's reader rejects, e.g. too deep for
    /// it) would be resent on every reconnect and block everything behind
    /// it. The peer refusing our input and closing with the same oldest
    /// event unacknowledged, with no ack on the way, `REFUSALS_BEFORE_DROP`
    /// times in a row: drop it. Plain drops (a flaky network, a restarted
    /// server) never count, whatever is in flight.
    fn note_refusal(&mut self, refused: bool) {
        let Some(&oldest) = self.unacked.keys().next() else {
            if self.progressed {
                self.suspect = None;
            }
            return;
        };
        if !refused {
            if self.progressed {
                self.suspect = None;
            }
            return;
        }
        let count = match self.suspect {
            Some((seq, n)) if seq == oldest && !self.progressed => n + 1,
            _ => 1,
        };
        if count < REFUSALS_BEFORE_DROP {
            self.suspect = Some((oldest, count));
            return;
        }
        self.suspect = None;
        if let Some(p) = self.unacked.remove(&oldest) {
            self.forget_pending(&p);
            self.events.push_back(Event::Refused { notify: p.notify });
        }
    }

    /// Server: after `on_close`, takes the outbound state for the connection
    /// that resumes this session. The peer keeps nothing pending.
    pub fn take_retained(&mut self) -> Retained {
        self.pending_bytes = 0;
        self.foreign_ids.clear();
        Retained {
            id_prefix: self.id_prefix.clone(),
            next_seq: self.next_seq,
            pending: std::mem::take(&mut self.queue),
            seen: std::mem::take(&mut self.seen),
            deadlines: std::mem::take(&mut self.deadlines),
            suspect: self.suspect.take(),
        }
    }

    /// Server: continues a resumed session's outbound state. Call before
    /// `session_loaded`, so the resent events follow `connect`.
    pub fn adopt_retained(&mut self, r: Retained) {
        // Our own pending events keep the ids they were (or will be) sent
        // with, and move behind the adopted ones with fresh sequence numbers,
        // so both sets stay ordered and never share a key.
        let mut own: VecDeque<Pending> = std::mem::take(&mut self.unacked).into_values().collect();
        own.append(&mut self.queue);
        let own_deadlines = std::mem::take(&mut self.deadlines);
        self.foreign_ids.clear();
        let mut next = self.next_seq.max(r.next_seq);
        let mut renumbered = HashMap::new();
        for p in &mut own {
            let id = p.foreign_id.take().unwrap_or_else(|| format!("{}{}", self.id_prefix, p.seq));
            renumbered.insert(p.seq, next);
            p.seq = next;
            next += 1;
            p.foreign_id = Some(id);
        }
        self.id_prefix = r.id_prefix;
        self.next_seq = next;
        let mut pending = r.pending;
        for p in &pending {
            self.pending_bytes += p.args.len();
        }
        pending.append(&mut own);
        for p in &pending {
            if let Some(id) = &p.foreign_id {
                self.foreign_ids.insert(id.clone(), p.seq);
            }
        }
        self.queue = pending;
        for (sender, seq) in r.seen {
            self.note_seen(&sender, seq);
        }
        self.deadlines = r.deadlines;
        self.suspect = r.suspect;
        self.deadlines
            .extend(own_deadlines.into_iter().filter_map(|(t, seq, n)| renumbered.get(&seq).map(|s| (t, *s, n))));
        self.deadlines.make_contiguous().sort_by_key(|d| d.0);
    }

    /// Server: events another server accepted for this session and that were
    /// not acknowledged (from a shared store), and the senders it had seen.
    pub fn adopt_foreign(&mut self, outbox: Vec<(String, String)>, seen: Vec<(String, u64)>) {
        for (id, args) in outbox {
            if self.foreign_ids.contains_key(&id) || parse_our_id(&id).is_some_and(|(p, _)| p == self.id_prefix) {
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.foreign_ids.insert(id.clone(), seq);
            self.pending_bytes += args.len();
            self.queue.push_back(Pending { seq, foreign_id: Some(id), args, notify: None });
        }
        for (sender, seq) in seen {
            self.note_seen(&sender, seq);
        }
    }

    /// Feeds received bytes.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Failed | Phase::Closed) {
            return;
        }
        self.last_rx = now;
        let mut msgs = std::mem::take(&mut self.received);
        let framed = self.reader.feed(bytes, &mut msgs);
        for msg in msgs.drain(..) {
            if self.phase == Phase::Failed {
                break;
            }
            let handled = self.handle_message(&msg, now);
            // After handling, so a secret the message carried is known and hidden.
            self.tap(Direction::Received, &msg);
            if let Err(e) = handled {
                self.refuse_input(e.to_string());
            }
        }
        self.received = msgs;
        if let Err(e) = framed {
            if self.phase != Phase::Failed {
                self.refuse_input(frame_error_text(&e));
            }
        }
    }

    /// What the peer sent breaks the protocol or our limits. A peer of ours
    /// is told before the connection closes, so it can tell a refusal from
    /// a network drop (see `note_refusal`).
    fn refuse_input(&mut self, message: String) {
        if self.extended {
            self.frame_str(&format!("[\"{REFUSED}\"]"));
        }
        self.fail(message);
    }

    fn fail(&mut self, message: String) {
        self.phase = Phase::Failed;
        self.close_requested = true;
        self.events.push_back(Event::Error(message));
    }

    fn handle_message(&mut self, text: &str, now: Instant) -> Result<(), message::MessageError> {
        let (name, args, id) = match message::parse_with_limit(text, self.config.max_args)? {
            Incoming::Ack { id } => {
                self.on_ack(&id);
                return Ok(());
            }
            Incoming::Event { name, args, id } => (name, args, id),
        };
        let Some(id) = id else { return self.dispatch(&name, args, now).map(drop) };
        if self.extended && message::decode_string(id).is_some_and(|id| self.is_duplicate(&id)) {
            // Taken before; the ack that follows it may have been lost. Its
            // ack waits like a delivery's: the original may still be held
            // (a session loading) or queued for the application, and an ack
            // must never vouch for an event not yet handled.
            self.ack(id.to_owned(), true);
            return Ok(());
        }
        let delivered = self.dispatch(&name, args, now)?;
        self.ack(id.to_owned(), delivered);
        Ok(())
    }

    /// Acknowledges a message. With `defer_acks`, the ack of a message
    /// handed to the application (or of a duplicate of one) waits (as `Event::AckDue`, right behind the
    /// message) until the driver knows the application has handled it, so an
    /// ack never vouches for an event still in a buffer.
    fn ack(&mut self, id: String, defer: bool) {
        if self.config.defer_acks && defer {
            let due = Event::AckDue(id);
            if self.role == Role::Server && self.phase != Phase::Ready {
                self.held.push(due);
            } else {
                self.events.push_back(due);
            }
            return;
        }
        self.write_ack(&id);
    }

    /// Writes `{"args":["ack::<id>"]}`; `id` is the raw JSON string literal
    /// of the message's id (as `Event::AckDue` holds it).
    pub fn write_ack(&mut self, id: &str) {
        let mut ack = std::mem::take(&mut self.scratch);
        ack.clear();
        message::encode_ack_raw(id, &mut ack);
        self.frame_str(&ack);
        self.scratch = ack;
    }

    /// Acts on one event; returns whether it went to the application.
    fn dispatch(&mut self, name: &str, args: &str, now: Instant) -> Result<bool, message::MessageError> {
        match (name, self.role) {
            (HEARTBEAT, _) if self.extended => {}
            (REFUSED, _) if self.extended => self.peer_refused = true,
            ("_set", _) => {
                // Within the framing's depth rule, so this cannot fail on
                // anything the reader let through (docs/PROTOCOL.md §5).
                let values = session::parse_args(args, self.config.max_depth)
                    .map_err(|_| message::MessageError("unreadable _set message"))?;
                if let Err(e) = self.merge_session(&values[1..]) {
                    // Refused, not fatal: the connection goes on without it.
                    self.events.push_back(Event::Error(e.to_string()));
                    return Ok(false);
                }
                if self.role == Role::Server && self.phase != Phase::Ready {
                    // The application meets this connection at `Connected`,
                    // with the merged session; as in the original, sets
                    // before the handshake raise no event.
                    return Ok(false);
                }
                if self.role == Role::Server {
                    self.events.push_back(Event::SaveSession);
                }
                self.events.push_back(Event::Set(args.to_owned()));
            }
            ("start", Role::Server) if self.phase == Phase::AwaitingStart => {
                let config = second_arg(args, self.config.max_depth)?;
                self.peer_has_config = config.is_object();
                self.object_mode = config.get("objectMode").is_some_and(truthy);
                self.enable_acks = config.get("enableAcks").is_some_and(truthy);
                self.extended = self.config.extensions
                    && self.object_mode
                    && self.enable_acks
                    && config.get("uhura").and_then(Value::as_u64).is_some_and(|v| v >= 1);
                self.peer_heartbeat = heartbeat_of(&config).filter(|_| self.extended);
                if self.extended {
                    self.resume_secret = config.get("resume").and_then(Value::as_str).map(str::to_owned);
                }
                match self.session.get("sessionID") {
                    Some(Value::String(id)) if !id.is_empty() => {
                        let id = id.clone();
                        self.phase = Phase::LoadingSession;
                        self.events.push_back(Event::LoadSession(id));
                    }
                    _ => self.start_new_session(now),
                }
            }
            ("connect", Role::Client) if self.phase == Phase::AwaitingConnect => {
                // A 0.0.x server sends bare `["connect"]` (or `["connect", true]`
                // on resume): no config object means array mode without acks.
                let config = second_arg(args, self.config.max_depth)?;
                self.object_mode = config.get("objectMode").is_some_and(truthy);
                self.enable_acks = self.object_mode && config.get("enableAcks").is_some_and(truthy);
                self.extended = self.config.extensions
                    && self.enable_acks
                    && config.get("uhura").and_then(Value::as_u64).is_some_and(|v| v >= 1);
                self.peer_heartbeat = heartbeat_of(&config).filter(|_| self.extended);
                // A new session's secret; a resumed one keeps the one we have.
                if let Some(secret) = config.get("secret").and_then(Value::as_str).filter(|_| self.extended) {
                    self.resume_secret = Some(secret.to_owned());
                }
                self.become_ready(false, now);
            }
            ("invalidateSession", Role::Client) => {
                self.session.clear();
                self.session_replaced();
                self.resume_secret = None;
                self.close_requested = true;
                self.events.push_back(Event::Message(args.to_owned()));
                return Ok(true);
            }
            // Only the server invalidates; a lifecycle name never comes from
            // the network. Acknowledged (so never resent) and ignored.
            ("invalidateSession", Role::Server) => {}
            _ if RESERVED_EVENTS.contains(&name) => {}
            _ if self.role == Role::Server && self.phase != Phase::Ready => {
                // A resuming 0.1.2 client sends before our `connect`; the
                // application can only take events once it has the connection.
                if self.phase == Phase::AwaitingStart && self.held_bytes + args.len() > self.config.max_handshake_bytes
                {
                    return Err(message::MessageError("more than maxHandshakeBytes of events before the handshake"));
                }
                self.held_bytes += args.len();
                self.held.push(Event::Message(args.to_owned()));
                return Ok(true);
            }
            _ => {
                self.events.push_back(Event::Message(args.to_owned()));
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// With our peers, ids are `<sender>-<seq>` with increasing seq and
    /// resends in order, so one watermark per sender finds every duplicate.
    fn is_duplicate(&mut self, id: &str) -> bool {
        let Some((sender, seq)) = parse_our_id(id) else { return false };
        if self.seen.iter().any(|(s, max)| s == sender && seq <= *max) {
            return true;
        }
        self.note_seen(sender, seq);
        if self.config.persist_delivery {
            self.events.push_back(Event::Seen { sender: sender.to_owned(), seq });
        }
        false
    }

    fn note_seen(&mut self, sender: &str, seq: u64) {
        match self.seen.iter_mut().find(|(s, _)| s == sender) {
            Some((_, max)) => *max = (*max).max(seq),
            None => {
                if self.seen.len() >= MAX_SEEN_SENDERS {
                    self.seen.remove(0);
                }
                self.seen.push((sender.to_owned(), seq));
            }
        }
    }

    fn on_ack(&mut self, id: &str) {
        let seq = match id.strip_prefix(&self.id_prefix).and_then(|s| s.parse::<u64>().ok()) {
            Some(seq) => seq,
            None => match self.foreign_ids.remove(id) {
                Some(seq) => seq,
                None => return,
            },
        };
        if let Some(p) = self.unacked.remove(&seq) {
            self.progressed = true;
            self.pending_bytes -= p.args.len();
            if let Some(n) = p.notify {
                self.events.push_back(Event::Acked(n));
            }
            if self.config.persist_delivery {
                self.events.push_back(Event::Unpersist { id: id.to_owned() });
            }
        }
    }

    fn start_new_session(&mut self, now: Instant) {
        let id = session::new_session_id();
        self.session.insert("sessionID".into(), Value::String(id.clone()));
        // One of our clients gets a secret that it alone can resume with.
        let secret = self.extended.then(session::new_resume_secret);
        if let Some(secret) = &secret {
            self.session.insert(session::RESUME_KEY.into(), Value::String(session::resume_digest(secret)));
        }
        // This session's secret from now on (and hidden from the wire tap).
        self.resume_secret = secret.clone();
        self.session_replaced();
        self.session_id = Some(id.clone());
        self.frame_str(&format!("[\"_set\",\"sessionID\",\"{id}\"]"));
        self.events.push_back(Event::SaveSession);
        self.send_connect(secret.as_deref());
        self.become_ready(false, now);
    }

    /// Server: the store answered `LoadSession`. `None`: unknown id (or a
    /// store failure), which starts a new session as the old server does.
    pub fn session_loaded(&mut self, stored: Option<Session>, now: Instant) {
        if self.phase != Phase::LoadingSession {
            return;
        }
        match stored {
            Some(stored) => {
                let id = self.session.get("sessionID").cloned();
                self.session = stored;
                self.session_replaced();
                if let Some(id) = id {
                    self.session.insert("sessionID".into(), id);
                }
                self.session_id = self.session.get("sessionID").and_then(Value::as_str).map(str::to_owned);
                let session = session::public_view(&self.session).to_string();
                self.frame_str(&format!("[\"_set\",{session}]"));
                self.send_connect(None);
                self.become_ready(true, now);
            }
            None => {
                self.session.shift_remove("sessionID");
                self.session_replaced();
                self.start_new_session(now);
            }
        }
    }

    /// The handshake's reply; `secret`: a new session's resume secret (our peers only).
    fn send_connect(&mut self, secret: Option<&str>) {
        let mut config = format!("{{\"objectMode\":{},\"enableAcks\":{}", self.object_mode, self.enable_acks);
        if self.extended {
            let _ = write!(config, ",\"uhura\":{EXTENSIONS_VERSION}");
            if let Some(hb) = self.config.heartbeat_interval {
                let _ = write!(config, ",\"heartbeat\":{}", hb.as_millis());
            }
            if let Some(secret) = secret {
                config.push_str(",\"secret\":");
                message::push_json_string(secret, &mut config);
            }
        }
        config.push('}');
        let args = format!("[\"connect\",{config}]");
        let mut text = String::new();
        if self.peer_has_config && self.object_mode {
            // Old clients never ack `connect`, so its id is not tracked.
            let id = self.enable_acks.then(|| format!("{}connect", self.id_prefix));
            message::encode_event(&args, true, id.as_deref(), &mut text);
        } else {
            text = args;
        }
        self.frame_str(&text);
    }

    fn become_ready(&mut self, resumed: bool, now: Instant) {
        self.phase = Phase::Ready;
        self.last_rx = now;
        self.events.push_back(Event::Connected { resumed });
        self.events.extend(self.held.drain(..));
        self.held_bytes = 0;
        self.refill();
    }

    fn has_room(&self) -> bool {
        self.out.len() < OUTPUT_HIGH_WATER && self.unacked.len() < MAX_IN_FLIGHT
    }

    /// Moves queued events into the output while there is room.
    pub fn refill(&mut self) {
        if self.phase != Phase::Ready {
            return;
        }
        while self.has_room() {
            let Some(p) = self.queue.pop_front() else { break };
            self.transmit(p);
        }
    }

    /// An application event; `args` is the JSON array text, name first.
    /// `notify`: whom to tell when it is acknowledged. Returns its sequence
    /// number. Queued until the handshake completes (and while the output is
    /// backed up), within the queue limits.
    pub fn send_event(&mut self, args: String, notify: Option<Notify>, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let (Some(n), Some(t)) = (notify, self.config.ack_timeout) {
            self.deadlines.push_back((now + t, seq, n));
        }
        if self.config.persist_delivery && self.role == Role::Server {
            let id = format!("{}{seq}", self.id_prefix);
            self.events.push_back(Event::Persist { id, args: args.clone() });
        }
        self.pending_bytes += args.len();
        let p = Pending { seq, foreign_id: None, args, notify };
        if self.phase == Phase::Ready && self.queue.is_empty() && self.has_room() {
            self.transmit(p);
        } else {
            self.queue.push_back(p);
        }
        self.enforce_limits();
        seq
    }

    fn pending_len(&self) -> usize {
        self.queue.len() + self.unacked.len()
    }

    /// Drops the oldest pending events until the rest fit the limits. An
    /// unacknowledged event may still arrive; its callback hears it was
    /// dropped, since nothing will resend it.
    fn enforce_limits(&mut self) {
        while self.pending_len() > self.config.max_queue_length
            || (self.pending_bytes > self.config.max_queue_bytes && self.pending_len() > 1)
        {
            // The oldest first: unacknowledged events were sent before
            // anything still queued.
            let p = match self.unacked.pop_first() {
                Some((_, p)) => p,
                None => match self.queue.pop_front() {
                    Some(p) => p,
                    None => break,
                },
            };
            self.forget_pending(&p);
            self.events.push_back(Event::Dropped { notify: p.notify });
        }
    }

    /// A pending event leaves for good (dropped or refused): its bytes, its
    /// foreign id and its persisted copy go with it.
    fn forget_pending(&mut self, p: &Pending) {
        self.pending_bytes -= p.args.len();
        let id = match &p.foreign_id {
            Some(id) => {
                self.foreign_ids.remove(id);
                id.clone()
            }
            None => format!("{}{}", self.id_prefix, p.seq),
        };
        if self.config.persist_delivery {
            self.events.push_back(Event::Unpersist { id });
        }
    }

    fn transmit(&mut self, p: Pending) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        if self.object_mode && self.enable_acks {
            let id = match &p.foreign_id {
                Some(id) => id.clone(),
                None => {
                    let mut id = String::with_capacity(self.id_prefix.len() + 12);
                    id.push_str(&self.id_prefix);
                    let _ = write!(id, "{}", p.seq);
                    id
                }
            };
            message::encode_event(&p.args, true, Some(&id), &mut text);
            self.frame_str(&text);
            self.unacked.insert(p.seq, p);
        } else {
            message::encode_event(&p.args, self.object_mode, None, &mut text);
            self.frame_str(&text);
            self.pending_bytes -= p.args.len();
            if let Some(n) = p.notify {
                self.events.push_back(Event::Acked(n));
            }
        }
        self.scratch = text;
    }

    /// `set(key, value)` / `set({...})`: `args` is the JSON array of the
    /// arguments (`["key", value]` or `[{...}]`).
    pub fn set(&mut self, args: &str) -> Result<(), message::MessageError> {
        let values = session::parse_args(args, self.config.max_depth).map_err(|e| match e {
            session::ParseError::TooDeep => message::MessageError("set() value is nested deeper than maxDepth"),
            session::ParseError::Syntax => message::MessageError("set() arguments are not a JSON array"),
        })?;
        self.merge_session(&values)?;
        if matches!(self.phase, Phase::AwaitingConnect | Phase::Ready | Phase::AwaitingStart | Phase::LoadingSession) {
            let inner = args.trim()[1..].trim_start();
            let text = if inner.starts_with(']') { "[\"_set\"]".to_owned() } else { format!("[\"_set\",{inner}") };
            self.frame_str(&text);
        }
        if self.role == Role::Server && self.session_id.is_some() {
            self.events.push_back(Event::SaveSession);
        }
        Ok(())
    }

    /// Merges a `_set`'s arguments unless the session would grow past
    /// `max_session_bytes`; measures only the keys it changes.
    fn merge_session(&mut self, args: &[Value]) -> Result<(), message::MessageError> {
        let now = *self.session_size.get_or_insert_with(|| session::size(&self.session));
        let after = session::size_after_merge(&self.session, args, now);
        if after > self.config.max_session_bytes && after > now {
            return Err(message::MessageError("_set refused: the session would be larger than maxSessionBytes"));
        }
        session::merge(&mut self.session, args);
        if self.role == Role::Server {
            self.session_changes.note(args);
        }
        self.session_size = Some(after);
        Ok(())
    }

    /// The session was replaced, cleared or loaded.
    fn session_replaced(&mut self) {
        self.session_size = None;
        self.session_changes = session::Changes::All;
    }

    /// Server: what changed in the session since the last call (with
    /// `SaveSession`), so a store that can save changed keys does only that.
    pub fn take_session_changes(&mut self) -> session::Changes {
        std::mem::take(&mut self.session_changes)
    }

    /// Client: the secret our server issued for this session; with the
    /// session id, an application can persist it to resume after a restart.
    pub fn resume_secret(&self) -> Option<&str> {
        self.resume_secret.as_deref()
    }

    /// Server: whether this connection may resume `stored` (see
    /// `session::may_resume`); one that may not gets a new session.
    pub fn may_resume(&self, stored: &Session) -> bool {
        session::may_resume(stored, self.resume_secret.as_deref())
    }

    /// Server: forgets the session after `invalidateSession` destroyed it.
    pub fn clear_session(&mut self) {
        self.session.clear();
        self.session_replaced();
        self.session_id = None;
    }

    /// When `handle_timeout` next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.deadlines.front().map(|d| d.0);
        if matches!(self.phase, Phase::AwaitingConnect | Phase::AwaitingStart) {
            let t = self.opened_at + self.config.handshake_timeout;
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if self.phase == Phase::Ready && self.extended {
            let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
            if let Some(hb) = self.config.heartbeat_interval {
                consider(self.last_tx + hb);
            }
            if let Some(peer_hb) = self.peer_heartbeat {
                consider(self.last_rx + self.silence_limit(peer_hb));
            }
        }
        next
    }

    /// A peer that sends heartbeats every `peer_hb` is dead after our
    /// timeout, and never sooner than three of its intervals.
    fn silence_limit(&self, peer_hb: Duration) -> Duration {
        self.config.heartbeat_timeout.max(peer_hb * 3)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, seq, notify)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(p) = self.pending_mut(seq) {
                if p.notify.take().is_some() {
                    self.events.push_back(Event::AckTimeout(notify));
                }
            }
        }
        if matches!(self.phase, Phase::AwaitingConnect | Phase::AwaitingStart)
            && now.duration_since(self.opened_at) >= self.config.handshake_timeout
        {
            let waited = self.config.handshake_timeout.as_millis();
            self.fail(format!("handshake timeout: the peer did not complete the handshake within {waited} ms"));
            return;
        }
        if self.phase != Phase::Ready || !self.extended {
            return;
        }
        if let Some(peer_hb) = self.peer_heartbeat {
            let limit = self.silence_limit(peer_hb);
            if now.duration_since(self.last_rx) >= limit {
                self.fail(format!("heartbeat timeout: nothing received for {} ms", limit.as_millis()));
                return;
            }
        }
        // One tiny message per interval, busy or not: simpler than tracking
        // idleness, and negligible next to real traffic.
        if let Some(hb) = self.config.heartbeat_interval {
            if now.duration_since(self.last_tx) >= hb {
                self.last_tx = now;
                self.frame_str(&format!("[\"{HEARTBEAT}\"]"));
            }
        }
    }

    fn pending_mut(&mut self, seq: u64) -> Option<&mut Pending> {
        if let Some(p) = self.unacked.get_mut(&seq) {
            return Some(p);
        }
        let i = self.queue.binary_search_by_key(&seq, |p| p.seq).ok()?;
        self.queue.get_mut(i)
    }

    /// One whole message as the application wrote it (the original's
    /// `_send`): framed now, outside the event queue, so it is neither
    /// acknowledged nor resent. `json` must be one JSON value.
    pub fn send_message(&mut self, json: &str) {
        self.frame_str(json);
    }

    fn frame_str(&mut self, text: &str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.tap(Direction::Sent, text);
        self.writer.write_raw(text, &mut self.out);
    }

    /// Shows a message to the wire tap (`DEBUG=uhura:protocol`), with the
    /// resume secret hidden: logs must not hand out the credential.
    fn tap(&self, direction: Direction, text: &str) {
        let Some(tap) = &self.tap else { return };
        match self.resume_secret.as_deref().filter(|s| text.contains(s)) {
            Some(secret) => tap(direction, &text.replace(secret, "<secret>")),
            None => tap(direction, text),
        }
    }
}

fn frame_error_text(e: &FrameError) -> String {
    e.to_string()
}

fn heartbeat_of(config: &Value) -> Option<Duration> {
    config.get("heartbeat").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis)
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// The second element of an argument array (the first argument after the name).
fn second_arg(args: &str, max_depth: usize) -> Result<Value, message::MessageError> {
    let values =
        session::parse_args(args, max_depth).map_err(|_| message::MessageError("unreadable message arguments"))?;
    Ok(values.into_iter().nth(1).unwrap_or(Value::Null))
}
