//! One side of a uhura connection as a state machine without I/O: the driver
//! feeds it received bytes and API calls, and takes out bytes to write and
//! events to deliver. A client's `Peer` outlives its sockets (the session,
//! the queue and the unacknowledged events carry across reconnects); the
//! driver calls `on_open` / `on_close` around each transport.

use super::framing::{FrameError, Reader, Writer, DEFAULT_MAX_MESSAGE_SIZE};
use super::message::{self, Incoming};
use super::session::{self, Session};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub max_message_size: usize,
    /// Queued (not yet sent) events beyond this count drop the oldest.
    pub max_queue_length: usize,
    /// Server: the `cookie` field of new sessions (the old server's connect Cookie).
    pub cookie: Value,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, max_queue_length: usize::MAX, cookie: session::default_cookie() }
    }
}

/// What the peer reports to its driver and, through it, to the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed. `resumed`: the server resumed a stored session.
    Connected { resumed: bool },
    /// An application event: raw JSON of its argument array, name first.
    Message(String),
    /// A `_set` from the peer (already merged): raw JSON, `"_set"` first.
    Set(String),
    /// The event with this sequence number was acknowledged (or written, when
    /// acks are off). Only for events sent with `notify`.
    Acked(u64),
    /// A queued event was dropped because the queue was full.
    Dropped { seq: u64, notify: bool },
    /// Server: look this id up in the store, then call `session_loaded`.
    LoadSession(String),
    /// Server: the session changed; save it under `session_id()`.
    SaveSession,
    /// A protocol error; the driver closes this transport.
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
    args: String,
    notify: bool,
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
    object_mode: bool,
    enable_acks: bool,
    /// Server: whether the client's `start` carried a config object.
    peer_has_config: bool,
    session: Session,
    session_id: Option<String>,
    id_prefix: String,
    next_seq: u64,
    queue: VecDeque<Pending>,
    unacked: BTreeMap<u64, Pending>,
    close_requested: bool,
}

const START_CONFIG: &str = r#"{"objectMode":true,"enableAcks":true}"#;

impl Peer {
    pub fn new(role: Role, config: Config) -> Self {
        let mut prefix = [0u8; 6];
        session::fill_random(&mut prefix);
        let id_prefix: String = prefix.iter().map(|b| format!("{b:02x}")).collect::<String>() + "-";
        Peer {
            role,
            reader: Reader::new(config.max_message_size),
            config,
            phase: Phase::Closed,
            writer: Writer::new(),
            out: Vec::new(),
            scratch: String::new(),
            received: Vec::new(),
            events: VecDeque::new(),
            object_mode: false,
            enable_acks: false,
            peer_has_config: false,
            session: Session::new(),
            session_id: None,
            id_prefix,
            next_seq: 0,
            queue: VecDeque::new(),
            unacked: BTreeMap::new(),
            close_requested: false,
        }
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
    pub fn session(&self) -> &Session {
        &self.session
    }
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }
    /// The client was told to go away (`invalidateSession`) or hit an error:
    /// the driver should close the transport once the output is written.
    pub fn close_requested(&self) -> bool {
        self.close_requested
    }
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }
    pub fn set_max_queue_length(&mut self, n: usize) {
        self.config.max_queue_length = n;
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Moves the bytes to write into `buf` (swapping buffers, no copy when `buf` is empty).
    pub fn take_output(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
            self.out.clear();
        }
    }

    /// Raw bytes onto the wire, outside the framing (`socket.write`).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// A new transport is up. The client starts the handshake.
    pub fn on_open(&mut self) {
        self.reader = Reader::new(self.config.max_message_size);
        self.writer = Writer::new();
        self.out.clear();
        self.close_requested = false;
        self.object_mode = false;
        self.enable_acks = false;
        match self.role {
            Role::Client => {
                self.phase = Phase::AwaitingConnect;
                let session = Value::Object(self.session.clone()).to_string();
                self.frame_str(&format!("[\"_set\",{session}]"));
                self.frame_str(&format!("[\"start\",{START_CONFIG}]"));
            }
            Role::Server => {
                self.phase = Phase::AwaitingStart;
                self.session = Session::new();
                self.session.insert("cookie".into(), self.config.cookie.clone());
            }
        }
    }

    /// The transport closed. Unacknowledged events go back to the head of the
    /// queue, in order, to be sent again after the next handshake.
    pub fn on_close(&mut self) {
        self.phase = Phase::Closed;
        self.out.clear();
        if !self.unacked.is_empty() {
            let mut resend: VecDeque<Pending> = std::mem::take(&mut self.unacked).into_values().collect();
            resend.append(&mut self.queue);
            self.queue = resend;
        }
    }

    /// Feeds received bytes.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Failed | Phase::Closed) {
            return;
        }
        let mut msgs = std::mem::take(&mut self.received);
        let framed = self.reader.feed(bytes, &mut msgs);
        for msg in msgs.drain(..) {
            if self.phase == Phase::Failed {
                break;
            }
            if let Err(e) = self.handle_message(&msg) {
                self.fail(e.to_string());
            }
        }
        self.received = msgs;
        if let Err(e) = framed {
            if self.phase != Phase::Failed {
                self.fail(frame_error_text(&e));
            }
        }
    }

    fn fail(&mut self, message: String) {
        self.phase = Phase::Failed;
        self.close_requested = true;
        self.events.push_back(Event::Error(message));
    }

    fn handle_message(&mut self, text: &str) -> Result<(), message::MessageError> {
        let (name, args, id) = match message::parse(text)? {
            Incoming::Ack { id } => {
                self.on_ack(&id);
                return Ok(());
            }
            Incoming::Event { name, args, id } => (name, args, id),
        };
        if let Some(id) = id {
            self.scratch.clear();
            message::encode_ack(&id, &mut self.scratch);
            let ack = std::mem::take(&mut self.scratch);
            self.frame_str(&ack);
            self.scratch = ack;
        }
        match (&*name, self.role) {
            ("_set", _) => {
                let values: Vec<Value> = serde_json::from_str(args)
                    .map_err(|_| message::MessageError("unreadable _set message"))?;
                session::merge(&mut self.session, &values[1..]);
                if self.role == Role::Server && self.phase == Phase::Ready {
                    self.events.push_back(Event::SaveSession);
                }
                self.events.push_back(Event::Set(args.to_owned()));
            }
            ("start", Role::Server) if self.phase == Phase::AwaitingStart => {
                let config = second_arg(args)?;
                self.peer_has_config = config.is_object();
                self.object_mode = config.get("objectMode").is_some_and(truthy);
                self.enable_acks = config.get("enableAcks").is_some_and(truthy);
                match self.session.get("sessionID") {
                    Some(Value::String(id)) if !id.is_empty() => {
                        let id = id.clone();
                        self.phase = Phase::LoadingSession;
                        self.events.push_back(Event::LoadSession(id));
                    }
                    _ => self.start_new_session(),
                }
            }
            ("connect", Role::Client) if self.phase == Phase::AwaitingConnect => {
                // A 0.0.x server sends bare `["connect"]` (or `["connect", true]`
                // on resume): no config object means array mode without acks.
                let config = second_arg(args)?;
                self.object_mode = config.get("objectMode").is_some_and(truthy);
                self.enable_acks = self.object_mode && config.get("enableAcks").is_some_and(truthy);
                self.become_ready(false);
            }
            ("invalidateSession", Role::Client) => {
                self.session.clear();
                self.close_requested = true;
                self.events.push_back(Event::Message(args.to_owned()));
            }
            _ => self.events.push_back(Event::Message(args.to_owned())),
        }
        Ok(())
    }

    fn on_ack(&mut self, id: &str) {
        let Some(seq) = id.strip_prefix(&self.id_prefix).and_then(|s| s.parse::<u64>().ok()) else {
            return;
        };
        if let Some(p) = self.unacked.remove(&seq) {
            if p.notify {
                self.events.push_back(Event::Acked(p.seq));
            }
        }
    }

    fn start_new_session(&mut self) {
        let id = session::new_session_id();
        self.session.insert("sessionID".into(), Value::String(id.clone()));
        self.session_id = Some(id.clone());
        self.frame_str(&format!("[\"_set\",\"sessionID\",\"{id}\"]"));
        self.events.push_back(Event::SaveSession);
        self.send_connect();
        self.become_ready(false);
    }

    /// Server: the store answered `LoadSession`. `None`: unknown id (or a
    /// store failure), which starts a new session as the old server does.
    pub fn session_loaded(&mut self, stored: Option<Session>) {
        if self.phase != Phase::LoadingSession {
            return;
        }
        match stored {
            Some(stored) => {
                self.session = stored;
                let id = match self.session.get("sessionID") {
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
                };
                self.session_id = Some(id);
                let session = Value::Object(self.session.clone()).to_string();
                self.frame_str(&format!("[\"_set\",{session}]"));
                self.send_connect();
                self.become_ready(true);
            }
            None => {
                self.session.shift_remove("sessionID");
                self.start_new_session();
            }
        }
    }

    fn send_connect(&mut self) {
        let config = format!(
            "{{\"objectMode\":{},\"enableAcks\":{}}}",
            self.object_mode, self.enable_acks
        );
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

    fn become_ready(&mut self, resumed: bool) {
        self.phase = Phase::Ready;
        self.events.push_back(Event::Connected { resumed });
        while let Some(p) = self.queue.pop_front() {
            self.transmit(p);
        }
    }

    /// An application event; `args` is the JSON array text, name first.
    /// Returns its sequence number. Queued until the handshake completes.
    pub fn send_event(&mut self, args: String, notify: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let p = Pending { seq, args, notify };
        if self.phase == Phase::Ready {
            self.transmit(p);
        } else {
            if self.queue.len() >= self.config.max_queue_length {
                if let Some(old) = self.queue.pop_front() {
                    self.events.push_back(Event::Dropped { seq: old.seq, notify: old.notify });
                }
            }
            self.queue.push_back(p);
        }
        seq
    }

    fn transmit(&mut self, p: Pending) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        if self.object_mode && self.enable_acks {
            let mut id = String::with_capacity(self.id_prefix.len() + 12);
            id.push_str(&self.id_prefix);
            let _ = write!(id, "{}", p.seq);
            message::encode_event(&p.args, true, Some(&id), &mut text);
            self.frame_str(&text);
            self.unacked.insert(p.seq, p);
        } else {
            message::encode_event(&p.args, self.object_mode, None, &mut text);
            self.frame_str(&text);
            if p.notify {
                self.events.push_back(Event::Acked(p.seq));
            }
        }
        self.scratch = text;
    }

    /// `set(key, value)` / `set({...})`: `args` is the JSON array of the
    /// arguments (`["key", value]` or `[{...}]`).
    pub fn set(&mut self, args: &str) -> Result<(), message::MessageError> {
        let values: Vec<Value> =
            serde_json::from_str(args).map_err(|_| message::MessageError("set() arguments are not a JSON array"))?;
        session::merge(&mut self.session, &values);
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

    /// Server: replaces the session after `invalidateSession` destroyed it.
    pub fn clear_session(&mut self) {
        self.session.clear();
        self.session_id = None;
    }

    fn frame_str(&mut self, text: &str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.writer.write_raw(text, &mut self.out);
    }
}

fn frame_error_text(e: &FrameError) -> String {
    e.to_string()
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
fn second_arg(args: &str) -> Result<Value, message::MessageError> {
    let values: Vec<Value> =
        serde_json::from_str(args).map_err(|_| message::MessageError("unreadable message arguments"))?;
    Ok(values.into_iter().nth(1).unwrap_or(Value::Null))
}
