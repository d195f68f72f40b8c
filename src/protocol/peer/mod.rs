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
//!
//! The sub-states live in their modules, as quinn-proto's do: `config`
//! (limits), `event` (what comes out), `negotiate` (what the handshake
//! settled, and its config objects), `handshake`, `inbound` (what comes
//! in), `outbox` (queue, window, resume hand-over), `output` (the bytes to
//! write, back-pressure), `dedup` (duplicate suppression), `timer`,
//! `session_state`, and `session_cell` (the session, kept as its JSON text
//! while not in use).

mod arena;
mod config;
mod dedup;
mod event;
mod handshake;
mod inbound;
mod negotiate;
mod outbox;
mod output;
mod queue;
mod session_cell;
mod session_state;
mod timer;

pub use config::{Config, REFUSALS_BEFORE_DROP, RESERVED_EVENTS};
pub use event::{Direction, Event, Notify, Tap, WireTap};
pub use negotiate::EXTENSIONS_VERSION;
pub use outbox::Retained;
pub use queue::Polled;

use super::entropy::Entropy;
use super::framing::{Framed, Reader, Suspended};
use super::session::{self, Session};
use dedup::Seen;
use negotiate::Negotiated;
use outbox::Outbox;
use output::Output;
use queue::Events;
use session_cell::SessionCell;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;
use timer::Clock;

/// Which end of the connection a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects, sends `start`, gets `connect`.
    Client,
    /// Accepts, gets `start`, answers `connect` and keeps the session.
    Server,
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

/// One side of a connection: the protocol state of one client (across its
/// transports) or of one server-side connection.
///
/// The driver owns it and calls it from one thread at a time (the engine
/// keeps it in a mutex). It does nothing on its own: every change happens
/// inside a call, and time is always a parameter.
///
/// # Inputs
///
/// From the transport and the driver, the `handle_*` methods:
/// - [`handle_open`](Self::handle_open): a new transport is up (a client
///   starts the handshake).
/// - [`handle_receive`](Self::handle_receive): bytes read from it.
/// - [`handle_timeout`](Self::handle_timeout): the instant
///   [`poll_timeout`](Self::poll_timeout) named has come (calling it early
///   or late is harmless).
/// - [`handle_session_loaded`](Self::handle_session_loaded): server, the
///   store answered [`Event::LoadSession`].
/// - [`handle_close`](Self::handle_close): the transport is gone.
///
/// From the application: [`send_event`](Self::send_event), [`set`](Self::set),
/// [`send_message`](Self::send_message) (one message outside the queue),
/// [`write_raw`](Self::write_raw) (bytes outside the framing),
/// [`write_acks`](Self::write_acks) or [`write_ack`](Self::write_ack) (for
/// [`Event::AckDue`]s, once the events before them were handled), [`set_max_queue_length`](Self::set_max_queue_length),
/// [`clear_session`](Self::clear_session). A server resuming a session
/// moves outbound state with [`take_retained`](Self::take_retained) (after
/// `handle_close`), [`adopt_retained`](Self::adopt_retained) and
/// [`adopt_foreign`](Self::adopt_foreign) (before `handle_session_loaded`).
///
/// # Outputs
///
/// - [`poll_transmit`](Self::poll_transmit): appends the bytes to write to
///   the driver's buffer (for a writer that owns them while it writes), or
///   [`write_to`](Self::write_to): writes them to an `io::Write` once and
///   keeps what it did not take (for synchronous, non-blocking writes).
///   [`wants_write`](Self::wants_write) says whether either has bytes.
/// - [`poll_event`](Self::poll_event): what to tell the application or do
///   (deliver, load or save the session, persist, acknowledge, close).
/// - [`poll_timeout`](Self::poll_timeout): when to call `handle_timeout`.
/// - [`wants_read`](Self::wants_read): whether to read at all; false while
///   the output is backed up or a resuming session loads.
///
/// # Call order
///
/// After any input, drain the outputs: [`poll_transmit`](Self::poll_transmit)
/// (or `write_to` while `wants_write`), [`poll_event`](Self::poll_event)
/// until `None`, then re-arm the timer at [`poll_timeout`](Self::poll_timeout),
/// which any input can move. Acting on an event may call inputs again
/// (`write_ack`, `handle_session_loaded`); their output is drained the same
/// way. Read only while `wants_read`; it turns true again only by writing
/// output or loading the session, so the driver waits for one of those,
/// not for time. Once [`has_failed`](Self::has_failed) or
/// [`close_requested`](Self::close_requested), the driver writes what is
/// left, closes the transport and calls `handle_close`.
///
/// # Getters
///
/// State: [`is_open`](Self::is_open), [`is_ready`](Self::is_ready),
/// `has_failed`, `close_requested`. What was negotiated:
/// [`object_mode`](Self::object_mode), [`enable_acks`](Self::enable_acks),
/// [`extended`](Self::extended). The session: [`session`](Self::session),
/// [`session_id`](Self::session_id), [`resume_secret`](Self::resume_secret),
/// [`may_resume`](Self::may_resume), [`take_session_changes`](Self::take_session_changes).
/// Sizes: [`queued_len`](Self::queued_len), [`unacked_len`](Self::unacked_len),
/// [`pending_bytes`](Self::pending_bytes), [`pending_output`](Self::pending_output).
pub struct Peer {
    role: Role,
    /// Shared by a server's connections (`Arc::make_mut` for the rare
    /// per-connection change): ~180 bytes each otherwise.
    /// Its `entropy` is set (`new` checks): the peer's randomness.
    config: Arc<Config>,
    phase: Phase,
    /// Between messages of an idle connection, only where it is (16 bytes,
    /// not 128 and an allocation): `release_buffers` suspends it, the next
    /// bytes resume it.
    reader: ReaderCell,
    output: Output,
    /// Reused buffers: messages read (boxed, and only between a read and
    /// the drain that releases it: 8 bytes in an idle peer, not 48), and
    /// the text of one being framed.
    received: Option<Box<Framed>>,
    scratch: String,
    events: Events,
    /// Server: what arrived before the handshake completed; none once it
    /// has (boxed: ~60 bytes no idle connection uses).
    hold: Option<Box<Hold>>,
    negotiated: Negotiated,
    /// Compacted to its JSON text once input drains (`release_buffers`).
    session: SessionCell,
    /// The session's resume secret: the client's, issued by our server; on a
    /// server, what the client presented in `start`.
    resume_secret: Option<String>,
    /// `session::size(&session)`, when known; None after a wholesale change.
    session_size: Option<usize>,
    /// What changed since the driver last took `take_session_changes`.
    session_changes: session::Changes,
    /// Shared with the driver's map of the connection serving each session
    /// (`session_id_shared`): one copy per connection, not two.
    session_id: Option<Arc<str>>,
    outbox: Outbox,
    seen: Seen,
    clock: Clock,
    close_requested: bool,
    tap: Option<WireTap>,
    /// The peer said it refused our input on the current transport.
    peer_refused: bool,
    /// Input drained with the scratch buffers kept (`input_drained`): they
    /// go once nothing has arrived for `timer::BUFFER_LINGER`.
    buffers_linger: bool,
}

/// The framing reader of the current transport, or where it stands while
/// suspended between messages.
enum ReaderCell {
    Reading(Box<Reader>),
    Between(Suspended),
}

impl Peer {
    /// Where session ids and secrets come from.
    fn entropy(&self) -> &Entropy {
        // `new` refused a config without one, and no change removes it.
        self.config.entropy.as_ref().expect("peer::Config::entropy is set")
    }

    /// The reader, resumed if it was suspended.
    fn reader(&mut self) -> &mut Reader {
        if let ReaderCell::Between(at) = self.reader {
            let r = Reader::resume(self.config.max_message_size, self.config.max_depth, at);
            self.reader = ReaderCell::Reading(Box::new(r));
        }
        match &mut self.reader {
            ReaderCell::Reading(r) => r,
            ReaderCell::Between(_) => unreachable!("just resumed"),
        }
    }
}

/// Server: what waits for the handshake to complete (`Peer::holding`).
#[derive(Default)]
struct Hold {
    /// Events that arrived before the handshake completed.
    events: Vec<Event>,
    /// Bytes of the arguments in `events`.
    bytes: usize,
    /// The watermarks as they were before the first event now held (a
    /// session loading) raised them. Held events are dropped with their
    /// transport, unhandled and unacknowledged; their marks go back with
    /// them, or their resends would be taken for duplicates and lost.
    seen_before: Option<Seen>,
}

impl Peer {
    /// A peer with no transport yet (call `handle_open`).
    ///
    /// # Panics
    ///
    /// If `config.entropy` is not set: the protocol core has no randomness
    /// of its own, and ids and secrets must not silently become predictable.
    pub fn new(role: Role, config: impl Into<Arc<Config>>, now: Instant) -> Self {
        let config = config.into();
        let entropy =
            config.entropy.as_ref().expect("peer::Config::entropy must be set (the driver supplies randomness)");
        let mut prefix = [0u8; 6];
        entropy.fill(&mut prefix);
        Peer {
            role,
            reader: ReaderCell::Between(Suspended::default()),
            resume_secret: config.resume_secret.clone(),
            config,
            phase: Phase::Closed,
            output: Output::new(),
            received: None,
            scratch: String::new(),
            events: Events::default(),
            hold: None,
            negotiated: Negotiated::default(),
            session: SessionCell::default(),
            session_size: None,
            session_changes: session::Changes::Nothing,
            session_id: None,
            outbox: Outbox::new(outbox::IdPrefix::new(prefix)),
            seen: Seen::default(),
            clock: Clock::new(now),
            close_requested: false,
            tap: None,
            peer_refused: false,
            buffers_linger: false,
        }
    }

    /// Frees the scratch space kept between inputs (the received messages'
    /// buffer, the text buffer of acks and other small messages, the event
    /// queue's texts once drained) and keeps the session as its JSON text
    /// until it next changes (`session_cell`): the driver
    /// calls it once its input has drained and stayed quiet
    /// ([`input_drained`](Self::input_drained)), so an idle connection holds
    /// no capacity it is not using. The next input allocates them again.
    ///
    /// Returns whether the session became text now: a driver whose store
    /// keeps sessions as text in the same process may then share that copy
    /// ([`share_session_text`](Self::share_session_text)).
    pub fn release_buffers(&mut self) -> bool {
        self.buffers_linger = false;
        self.received = None;
        self.scratch = String::new();
        if let ReaderCell::Reading(r) = &self.reader {
            if let Some(at) = r.suspend() {
                self.reader = ReaderCell::Between(at);
            }
        }
        self.release_event_text();
        self.outbox.release_idle();
        self.session.compact()
    }

    /// Keeps `text` as the session's compact form instead of its own copy,
    /// if the session is compact and its text is the same (a store in the
    /// same process keeps an equal copy: one instead of two per idle
    /// connection). A change later makes its own map, as ever; `text` is
    /// never changed. Returns whether it is shared.
    pub fn share_session_text(&mut self, text: &Arc<str>) -> bool {
        self.session.share(text)
    }

    /// Installs (or removes) the observer of every message sent and received.
    pub fn set_wire_tap(&mut self, tap: Option<WireTap>) {
        self.tap = tap;
    }

    /// A new transport is up. The client starts the handshake.
    pub fn handle_open(&mut self, now: Instant) {
        self.reader = ReaderCell::Between(Suspended::default());
        self.outbox.new_transport();
        self.peer_refused = false;
        self.output.reset();
        self.close_requested = false;
        self.negotiated = Negotiated::default();
        self.clock = Clock::new(now);
        match self.role {
            Role::Client => {
                self.phase = Phase::AwaitingConnect;
                self.send_start();
            }
            Role::Server => {
                self.phase = Phase::AwaitingStart;
                self.resume_secret = None;
                let mut fresh = Session::new();
                fresh.insert("cookie".into(), session::new_cookie(&self.config.cookie, session::now_millis()));
                self.session.set(fresh);
                self.session_replaced();
            }
        }
    }

    /// The transport closed. Unacknowledged events go back to the head of the
    /// queue, in order, to be sent again after the next handshake.
    pub fn handle_close(&mut self) {
        let refused = self.phase == Phase::Ready && std::mem::take(&mut self.peer_refused);
        self.phase = Phase::Closed;
        self.output.clear();
        self.note_refusal(refused);
        if let Some(seen) = self.hold.take().and_then(|hold| hold.seen_before) {
            self.seen = seen;
        }
        self.outbox.requeue_unacked();
    }

    pub(super) fn fail(&mut self, message: String) {
        self.phase = Phase::Failed;
        self.close_requested = true;
        self.events.push_back(Event::Error(message));
    }

    /// Server: a resuming session is loading and more than
    /// `max_handshake_bytes` of events wait for it.
    fn input_paused(&self) -> bool {
        self.phase == Phase::LoadingSession
            && self.hold.as_ref().is_some_and(|h| h.bytes > self.config.max_handshake_bytes)
    }

    /// Changes `max_queue_length` (the old client's `maxQueueLength`
    /// setter), dropping the oldest events now over it.
    pub fn set_max_queue_length(&mut self, n: usize) {
        Arc::make_mut(&mut self.config).max_queue_length = n;
        self.enforce_limits();
    }

    /// The handshake completed on this transport.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }
    /// A transport is open (between `handle_open` and `handle_close`).
    pub fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Closed)
    }
    /// A protocol error or heartbeat timeout ended this transport.
    pub fn has_failed(&self) -> bool {
        self.phase == Phase::Failed
    }
    /// The transport should be closed once the output is written.
    pub fn close_requested(&self) -> bool {
        self.close_requested
    }
    /// Negotiated: messages carry ids (`objectMode`).
    pub fn object_mode(&self) -> bool {
        self.negotiated.object_mode
    }
    /// Negotiated: the peer acknowledges messages (`enableAcks`).
    pub fn enable_acks(&self) -> bool {
        self.negotiated.enable_acks
    }
    /// Whether the peer is one of ours (extensions negotiated).
    pub fn extended(&self) -> bool {
        self.negotiated.extended()
    }
    /// Whether the peer negotiated cumulative acks (extensions 2): see
    /// [`write_acks`](Self::write_acks).
    pub fn cumulative_acks(&self) -> bool {
        self.negotiated.cumulative_acks()
    }
    /// The shared key/value session as this side sees it: borrowed while
    /// in use, parsed from its text while compacted (which it stays).
    pub fn session(&self) -> Cow<'_, Session> {
        self.session.get()
    }
    /// The session's id, once known.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The session id, for a driver to keep without a copy of its own.
    pub fn session_id_shared(&self) -> Option<&Arc<str>> {
        self.session_id.as_ref()
    }
    /// Client: the secret our server issued for this session; with the
    /// session id, an application can persist it to resume after a restart.
    pub fn resume_secret(&self) -> Option<&str> {
        self.resume_secret.as_deref()
    }
    /// Events waiting to be sent (outside the in-flight window).
    pub fn queued_len(&self) -> usize {
        self.outbox.queue.len()
    }
    /// Events sent and not yet acknowledged.
    pub fn unacked_len(&self) -> usize {
        self.outbox.unacked.len()
    }
    /// Bytes of JSON held for pending (queued or unacknowledged) events.
    pub fn pending_bytes(&self) -> usize {
        self.outbox.pending_bytes
    }
}

#[cfg(test)]
impl Peer {
    /// Tests: one exchange each way at `now`, the client's output to the
    /// server and the server's back, with the events each side raised
    /// discarded.
    pub(crate) fn exchange(client: &mut Peer, server: &mut Peer, now: Instant) {
        let mut b = Vec::new();
        client.poll_transmit(&mut b);
        server.handle_receive(&b, now);
        while server.poll_event().is_some() {}
        let mut b = Vec::new();
        server.poll_transmit(&mut b);
        client.handle_receive(&b, now);
        while client.poll_event().is_some() {}
    }
}
