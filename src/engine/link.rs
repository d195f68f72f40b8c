//! A `Link` is one application-visible connection (a client, or one
//! server-side connection) and the task pair that drives its current
//! transport: a reader that feeds the protocol state machine, and a writer
//! that flushes what it produced. Reading and writing are separate tasks so
//! a peer that is busy writing to us can never deadlock against our writes.

use super::delivery::{lock, Delivery};
use super::diag::{self, Ns};
use super::events::Kind;
use super::lines::{parse_line, Line};
use super::retention::Retention;
use super::store::{DeliveryDelta, SessionStore};
use super::timers::Timers;
use super::transport::{io_code, Addresses, DirectWrite};
use super::Shared;
use crate::protocol::peer::{Event, Notify as PeerNotify, Peer};
use crate::protocol::session;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// How long a graceful close waits for the peer to finish before dropping.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a connection that failed (protocol error, heartbeat timeout) may
/// take to flush before it is dropped.
const FAIL_GRACE: Duration = Duration::from_millis(250);
/// How long a resuming connection waits for the session's previous
/// connection to close and hand over its state.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);
/// Bounds of a connection's read buffer.
const READ_MIN: usize = 4 * 1024;
/// At most this much is read per readiness callback on the application's
/// loop, so one busy socket does not starve the loop's other work.
const EXTERNAL_READ_BUDGET: usize = 256 * 1024;
const READ_MAX: usize = 64 * 1024;
/// Readers stop reading while this much output is waiting (a peer that
/// sends but does not read cannot grow our ack backlog without bound).
const OUTPUT_HIGH_WATER: usize = 16 * 1024 * 1024;

/// Control of the current transport, one per socket.
#[derive(Default)]
pub struct Transport {
    /// Unique per transport, so events about it never apply to a later one.
    pub id: u64,
    /// Set by `destroy()` or a write failure: drop the socket now.
    kill: Notify,
    killed: AtomicBool,
    /// Set by `end()`: flush, send FIN, wait for the peer to close.
    ending: AtomicBool,
    /// Wakes the reader when `ending` is set, so it starts the grace timer.
    ending_wake: Notify,
    writer_wake: Notify,
    pub addresses: Mutex<Addresses>,
    /// The writer task holds bytes it has not finished writing; set and
    /// cleared under the peer lock, so direct writes never overtake them.
    writer_busy: Mutex<bool>,
    pub external: ExternalRead,
}

/// Reading moved to the application's own event loop (Node's libuv, see
/// src/node/uv.rs): the socket's readiness then wakes the thread that runs
/// the listeners, not a tokio thread that must wake it in turn.
#[derive(Default)]
pub struct ExternalRead {
    /// The application's loop is watching the socket.
    requested: AtomicBool,
    /// The reader task has stopped reading: the application's loop reads.
    /// Set by the reader task between reads, so no read of its own is in
    /// flight when the other loop starts.
    active: AtomicBool,
    /// The other loop saw the end of the stream or an error.
    done: AtomicBool,
    /// It was an error.
    failed: AtomicBool,
    /// The other loop stopped watching because our output is backed up (a
    /// peer that sends but does not read); the writer asks it to resume.
    paused: AtomicBool,
    changed: Notify,
}

/// What the application's loop should do with its watch after a read.
#[derive(Debug, PartialEq, Eq)]
pub enum Watch {
    Keep,
    /// Stop until a WATCH event asks again.
    Pause,
    /// The transport is done with the socket.
    Stop,
}

/// One application call on a link, typed: what the Node binding's lines
/// (`write_lines`) and the Rust API (`crate::api`) both reduce to.
pub(crate) enum Write {
    /// An event: the JSON array text of its arguments, name first, and
    /// whom to tell about its ack.
    Event { args: String, notify: Option<PeerNotify> },
    /// `set`: the JSON array of its arguments.
    Set(String),
    /// One whole message as given, outside the queue (the original's `_send`).
    Raw(String),
}

impl Transport {
    /// The socket, when it may be used directly (plain TCP or Unix).
    pub fn direct_socket(&self) -> Option<Arc<dyn DirectWrite>> {
        lock(&self.addresses).direct.clone()
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }
    pub fn end(&self) {
        self.ending.store(true, Ordering::Release);
        self.writer_wake.notify_one();
        self.ending_wake.notify_one();
    }
}

pub struct Link {
    pub handle: u32,
    /// The server this connection belongs to, for server-side links.
    pub server: Option<u32>,
    pub peer: Mutex<Peer>,
    pub delivery: Arc<Delivery>,
    pub store: Option<Arc<dyn SessionStore>>,
    /// Server: where a closed connection's state waits for its session to resume.
    retention: Option<Arc<Retention>>,
    shared: Weak<Shared>,
    timers: Arc<Timers>,
    /// API calls arrive on the JS thread, outside the runtime.
    rt: tokio::runtime::Handle,
    transport: Mutex<Option<Arc<Transport>>>,
    /// `disconnect()` was called: end the transport once the peer is ready.
    end_when_ready: AtomicBool,
    /// Wakes the reader when input may flow again (`Peer::input_paused`).
    input_wake: Notify,
    /// When the timer task is due to wake this link.
    scheduled: Mutex<Option<Instant>>,
    /// Handles of earlier connections of this session, now routed here.
    aliases: Mutex<Vec<u32>>,
    /// Server: the session id this connection asked to resume.
    resuming: Mutex<Option<String>>,
    /// Server: the newer connection of the session that took this one over.
    successor: Mutex<Option<Arc<Link>>>,
    /// Delivery state changes not yet saved to a shared store, and whether
    /// a task is saving them (one at a time, so they apply in order).
    unsaved: Mutex<(DeliveryDelta, bool)>,
    /// The latest session not yet saved, and whether a task is saving. One
    /// save at a time, always of the newest copy, so an older snapshot can
    /// never land after a newer one.
    unsaved_session: Mutex<SaveSlot>,
    deferred: Mutex<DeferredAcks>,
    /// Generation of this link's latest delivered entry.
    last_gen: AtomicU64,
}

/// Acks waiting for the application to handle the events before them.
#[derive(Default)]
struct DeferredAcks {
    /// (delivery generation of the last event before the ack, message id).
    acks: VecDeque<(u64, String)>,
    /// Listed in `Shared::ack_waiters`. Kept under the same lock as `acks`,
    /// so a link with acks waiting is always listed.
    listed: bool,
}

impl Link {
    pub fn new(
        handle: u32,
        server: Option<u32>,
        mut peer: Peer,
        shared: &Arc<Shared>,
        store: Option<Arc<dyn SessionStore>>,
        retention: Option<Arc<Retention>>,
    ) -> Arc<Self> {
        peer.set_wire_tap(Some(diag::wire_tap(shared.delivery.clone(), handle)));
        Arc::new(Link {
            handle,
            server,
            peer: Mutex::new(peer),
            delivery: shared.delivery.clone(),
            store,
            retention,
            shared: Arc::downgrade(shared),
            timers: shared.timers.clone(),
            rt: shared.rt.clone(),
            transport: Mutex::new(None),
            end_when_ready: AtomicBool::new(false),
            input_wake: Notify::new(),
            scheduled: Mutex::new(None),
            aliases: Mutex::new(Vec::new()),
            resuming: Mutex::new(None),
            successor: Mutex::new(None),
            unsaved: Mutex::new((DeliveryDelta::default(), false)),
            unsaved_session: Mutex::new(SaveSlot::default()),
            deferred: Mutex::new(DeferredAcks::default()),
            last_gen: AtomicU64::new(0),
        })
    }

    pub fn end_when_ready(self: &Arc<Self>) {
        self.end_when_ready.store(true, Ordering::Release);
        self.pump();
    }

    /// `reconnect()` after `disconnect()`: the next transport stays up.
    pub fn cancel_end(&self) {
        self.end_when_ready.store(false, Ordering::Release);
    }

    pub fn transport(&self) -> Option<Arc<Transport>> {
        lock(&self.transport).clone()
    }

    /// Server: the session this connection serves, or asked to resume.
    pub fn session_key(&self) -> Option<String> {
        let sid = lock(&self.peer).session_id().map(str::to_owned);
        sid.or_else(|| lock(&self.resuming).clone())
    }

    /// A JSON snapshot for diagnostics.
    pub fn debug_state(&self, delivery_backlog: usize) -> String {
        let t = self.transport();
        let peer = lock(&self.peer);
        serde_json::json!({
            "handle": self.handle,
            "transport": t.as_ref().map(|t| serde_json::json!({
                "id": t.id,
                "ending": t.ending.load(Ordering::Acquire),
                "killed": t.killed.load(Ordering::Acquire),
                "external": [t.external.requested.load(Ordering::Acquire), t.external.active.load(Ordering::Acquire), t.external.done.load(Ordering::Acquire), t.external.paused.load(Ordering::Acquire)],
                "writerBusy": *lock(&t.writer_busy),
            })),
            "ready": peer.is_ready(),
            "open": peer.is_open(),
            "queued": peer.queued_len(),
            "unacked": peer.unacked_len(),
            "pendingOutput": peer.pending_output(),
            "deferredAcks": lock(&self.deferred).acks.len(),
            "deliveryBacklog": delivery_backlog,
        })
        .to_string()
    }

    /// Every handle that routes to this link.
    pub fn handles(&self) -> Vec<u32> {
        let mut hs = lock(&self.aliases).clone();
        hs.push(self.handle);
        hs
    }

    /// Applies application calls in order, under one peer lock, then pumps
    /// once. Returns the last `set` error, if any; the other calls still apply.
    pub(crate) fn write<I: IntoIterator<Item = Write>>(self: &Arc<Self>, ops: I) -> Result<(), String> {
        let mut result = Ok(());
        let now = Instant::now();
        {
            let mut peer = lock(&self.peer);
            // Absorbed into a newer connection of the session after the caller
            // looked this link up: the state lives there now.
            if let Some(next) = lock(&self.successor).clone() {
                drop(peer);
                return next.write(ops);
            }
            for op in ops {
                match op {
                    Write::Event { args, notify } => {
                        peer.send_event(args, notify, now);
                    }
                    Write::Set(args) => {
                        if let Err(e) = peer.set(&args) {
                            result = Err(e.to_string());
                        }
                    }
                    Write::Raw(message) => peer.send_message(&message),
                }
            }
        }
        self.pump();
        result
    }

    /// Sends one event: `args` is the JSON array text of its arguments,
    /// name first. `notify` is told its fate (ACKED, ACK_TIMEOUT or DROPPED).
    pub(crate) fn send_event(self: &Arc<Self>, args: String, notify: Option<PeerNotify>) {
        let _ = self.write([Write::Event { args, notify }]);
    }

    /// `set`: `args` is the JSON array of the arguments (`["key", value]`
    /// or `[{...}]`). Fails if the session would grow past its limit.
    pub(crate) fn set(self: &Arc<Self>, args: String) -> Result<(), String> {
        self.write([Write::Set(args)])
    }

    /// Applies a batch of API calls that arrived through `caller` (this
    /// link's handle or an alias), one per line: `e<json>` send,
    /// `a<seq><json>` send and report its fate as `seq`, `s<json>` set,
    /// `r<json>` one raw message. This line format is the Node binding's
    /// (index.js); it parses into `Write`s, as the Rust API builds them.
    /// Lines cannot contain newlines: JSON.stringify escapes them.
    pub fn write_lines(self: &Arc<Self>, caller: u32, lines: &str) -> Result<(), String> {
        let mut malformed = None;
        let ops = lines.split('\n').filter(|line| !line.is_empty()).filter_map(|line| match parse_line(line) {
            Ok(Line::Event(args)) => Some(Write::Event { args: args.to_owned(), notify: None }),
            Ok(Line::Acked { seq, args }) => Some(Write::Event { args: args.to_owned(), notify: Some((caller, seq)) }),
            Ok(Line::Set(args)) => Some(Write::Set(args.to_owned())),
            Ok(Line::Raw(json)) => Some(Write::Raw(json.to_owned())),
            Err(e) => {
                malformed = Some(e.to_string());
                None
            }
        });
        let result = self.write(ops);
        match malformed {
            Some(e) => Err(e),
            None => result,
        }
    }

    pub fn write_raw(self: &Arc<Self>, bytes: &[u8]) {
        lock(&self.peer).write_raw(bytes);
        self.wake_writer();
    }

    /// Gets pending output onto the wire: straight from this thread when the
    /// socket allows it and the writer task is idle, else through that task.
    pub fn wake_writer(&self) {
        let Some(t) = self.transport() else { return };
        let direct = lock(&t.addresses).direct.clone();
        if let Some(direct) = direct.filter(|_| !t.ending.load(Ordering::Acquire)) {
            let mut peer = lock(&self.peer);
            // Acks that just arrived may have made room in the window.
            peer.refill();
            if peer.pending_output() == 0 {
                return;
            }
            if !*lock(&t.writer_busy) {
                let mut out = Vec::new();
                peer.take_output(&mut out);
                match direct.try_write(&out) {
                    Ok(n) if n == out.len() && peer.pending_output() == 0 => return,
                    Ok(n) => peer.unshift_output(&out[n..]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => peer.unshift_output(&out),
                    Err(_) => {
                        drop(peer);
                        t.kill();
                        return;
                    }
                }
            }
        }
        t.writer_wake.notify_one();
    }

    /// The timer task woke us: ack deadlines, heartbeats.
    pub fn on_timer(self: &Arc<Self>, now: Instant) {
        *lock(&self.scheduled) = None;
        let handled = self.guarded(|| {
            lock(&self.peer).handle_timeout(now);
            self.pump();
        });
        if handled.is_none() {
            if let Some(t) = self.transport() {
                t.kill();
            }
        }
    }

    /// Runs input or timer handling. A panic there is a bug of ours; it must
    /// not leave a dead connection, kill the reader or timer task, or reach
    /// Node's loop (src/node/uv.rs): the connection gets an
    /// `ERR_UHURA_INTERNAL` error and the caller closes it (None).
    fn guarded<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                self.deliver_error(
                    &format!("uhura: internal error, connection closed: {what}"),
                    Some("ERR_UHURA_INTERNAL"),
                );
                None
            }
        }
    }

    /// Hands bytes read from `transport` to the peer; false if that
    /// panicked. Bytes of a transport that is no longer the link's are
    /// dropped: read on Node's loop while a tokio thread closed it and opened
    /// the next, they would be fed to the next one's reader, mid-stream.
    fn receive(self: &Arc<Self>, transport: u64, bytes: &[u8]) -> bool {
        self.guarded(|| {
            super::fault::inject(bytes);
            {
                let mut peer = lock(&self.peer);
                if self.transport_by_id(transport).is_none() {
                    return;
                }
                peer.receive(bytes, Instant::now());
            }
            self.pump();
        })
        .is_some()
    }

    /// Drains the state machine's events: application events go to the
    /// delivery buffer, store work is spawned. Then wakes the writer and
    /// schedules the next timer.
    pub fn pump(self: &Arc<Self>) {
        let mut store_work = Vec::new();
        let mut delta = DeliveryDelta::default();
        let mut save_due = false;
        let next_timer;
        {
            let mut peer = lock(&self.peer);
            // A timer (heartbeat) or the application can end the transport
            // while its reader sleeps: wake it to close.
            let ending = peer.has_failed()
                || peer.close_requested()
                || (peer.is_ready() && self.end_when_ready.load(Ordering::Acquire));
            if ending {
                if let Some(t) = self.transport() {
                    t.end();
                }
            }
            while let Some(ev) = peer.poll_event() {
                match ev {
                    Event::Message(args) => self.deliver(Kind::Message, |b| b.push_str(&args)),
                    Event::Set(args) => self.deliver(Kind::Set, |b| b.push_str(&args)),
                    Event::Acked((h, seq)) => deliver_to(&self.delivery, h, Kind::Acked, &seq.to_string()),
                    Event::AckTimeout((h, seq)) => deliver_to(&self.delivery, h, Kind::AckTimeout, &seq.to_string()),
                    Event::Dropped { notify } => match notify {
                        Some((h, seq)) => deliver_to(&self.delivery, h, Kind::Dropped, &seq.to_string()),
                        None => self.deliver(Kind::Dropped, |b| b.push_str("null")),
                    },
                    // The same entry with a reason: `[handle, DROPPED, seq, "refused"]`.
                    Event::Refused { notify } => match notify {
                        Some((h, seq)) => deliver_to(&self.delivery, h, Kind::Dropped, &format!("{seq},\"refused\"")),
                        None => self.deliver(Kind::Dropped, |b| b.push_str("null,\"refused\"")),
                    },
                    Event::Error(message) => self.deliver_error(&message, None),
                    Event::Connected { resumed } => {
                        if let (Some(r), Some(sid)) = (&self.retention, peer.session_id()) {
                            r.set_active(sid, self);
                        }
                        let info = self.connected_info(&peer, resumed);
                        self.deliver(Kind::Connected, |b| b.push_str(&info));
                        self.log(Ns::Connection, || {
                            let sid = peer.session().get("sessionID").and_then(Value::as_str).unwrap_or("none");
                            let mode = match (peer.object_mode(), peer.enable_acks(), peer.extended()) {
                                (_, _, true) => "object mode, acks, extensions",
                                (true, true, false) => "object mode, acks",
                                (true, false, false) => "object mode",
                                (false, _, false) => "array mode",
                            };
                            // A client cannot tell whether the server resumed its session.
                            let how = match (self.server, resumed) {
                                (None, _) => "",
                                (Some(_), true) => "resumed ",
                                (Some(_), false) => "new ",
                            };
                            format!("{} handshake done: {how}session {sid} ({mode})", self.who())
                        });
                    }
                    Event::LoadSession(id) => {
                        // Known before the store answers, so a connection that
                        // drops mid-resume is still kept under its session.
                        *lock(&self.resuming) = Some(id.clone());
                        store_work.push(StoreWork::Load(id));
                    }
                    Event::SaveSession => save_due = true,
                    Event::Persist { id, args } => delta.add.push((id, args)),
                    Event::Unpersist { id } => delta.remove.push(id),
                    Event::Seen { sender, seq } => match delta.seen.iter_mut().find(|(s, _)| *s == sender) {
                        Some((_, max)) => *max = seq.max(*max),
                        None => delta.seen.push((sender, seq)),
                    },
                    Event::AckDue(id) => {
                        let gen = self.last_gen.load(Ordering::Acquire);
                        lock(&self.deferred).acks.push_back((gen, id));
                    }
                }
            }
            // One copy of the session per pump, however many `_set`s it
            // handled: a copy per `_set` made a burst of small sets
            // quadratic. The copy goes into the save slot under the peer
            // lock, so copies land there in the order they were taken.
            // A store that saves changed keys gets only those (and the
            // cookie, whose expiry slides with each save).
            if let Some(id) = peer.session_id().filter(|_| save_due).map(str::to_owned) {
                let by_keys = self.store.as_ref().is_some_and(|s| s.saves_changes());
                let save = match peer.take_session_changes() {
                    session::Changes::Keys(keys) if by_keys => {
                        let s = peer.session();
                        let mut changed = session::Session::new();
                        for k in keys.iter().chain(std::iter::once(&"cookie".to_owned())) {
                            if let Some(v) = s.get(k) {
                                changed.insert(k.clone(), v.clone());
                            }
                        }
                        PendingSave::Keys(changed)
                    }
                    _ => PendingSave::Whole(peer.session().clone()),
                };
                let mut slot = lock(&self.unsaved_session);
                slot.add(id, save);
                if !std::mem::replace(&mut slot.running, true) {
                    store_work.push(StoreWork::Save);
                }
            }
            next_timer = peer.poll_timeout();
            if !delta.is_empty() {
                // Appended under the peer lock, so changes reach the store in
                // the order they happened (an ack never before its add).
                let mut unsaved = lock(&self.unsaved);
                let u = &mut unsaved.0;
                u.add.append(&mut delta.add);
                u.remove.append(&mut delta.remove);
                u.seen.append(&mut delta.seen);
                drop(unsaved);
                if let Some(id) = peer.session_id() {
                    store_work.push(StoreWork::Delivery(id.to_owned()));
                }
            }
        }
        if let Some(at) = next_timer {
            let mut scheduled = lock(&self.scheduled);
            if scheduled.is_none_or(|s| at < s) {
                *scheduled = Some(at);
                self.timers.schedule(at, self.handle);
            }
        }
        if let Some(shared) = self.shared.upgrade() {
            if !self.release_acks(shared.delivered_gen(), false) {
                let list = {
                    let mut d = lock(&self.deferred);
                    !d.acks.is_empty() && !std::mem::replace(&mut d.listed, true)
                };
                if list {
                    shared.wait_for_delivery(self);
                    // The application may have finished the batch between
                    // the check and the listing; look once more.
                    self.release_acks(shared.delivered_gen(), false);
                }
            }
        }
        self.wake_writer();
        for work in store_work {
            self.spawn_store_work(work);
        }
    }

    fn connected_info(&self, peer: &Peer, resumed: bool) -> String {
        let addrs = self.transport().map(|t| lock(&t.addresses).clone()).unwrap_or_default();
        let mut info = serde_json::Map::new();
        info.insert("resumed".into(), resumed.into());
        info.insert("objectMode".into(), peer.object_mode().into());
        info.insert("enableAcks".into(), peer.enable_acks().into());
        info.insert("extended".into(), peer.extended().into());
        info.insert("session".into(), session::public_view(peer.session()));
        if let Some(secret) = peer.resume_secret().filter(|_| self.server.is_none()) {
            info.insert("resumeSecret".into(), secret.into());
        }
        info.insert("server".into(), self.server.map_or(Value::Null, Value::from));
        for (prefix, addr) in [("remote", addrs.remote), ("local", addrs.local)] {
            if let Some(a) = addr {
                info.insert(format!("{prefix}Address"), a.ip().to_canonical().to_string().into());
                info.insert(format!("{prefix}Port"), a.port().into());
                info.insert(
                    format!("{prefix}Family"),
                    (if a.ip().to_canonical().is_ipv4() { "IPv4" } else { "IPv6" }).into(),
                );
            }
        }
        Value::Object(info).to_string()
    }

    /// `#<handle>`, and for a server-side connection its server's handle.
    pub fn who(&self) -> String {
        match self.server {
            Some(s) => format!("#{} (server #{s})", self.handle),
            None => format!("#{}", self.handle),
        }
    }

    /// A diagnostic line under `ns` (see `diag`); `msg` runs only when it is on.
    pub fn log(&self, ns: Ns, msg: impl FnOnce() -> String) {
        diag::log(&self.delivery, self.handle, ns, msg);
    }

    pub fn deliver(&self, kind: Kind, body: impl FnOnce(&mut String)) {
        let handle = self.handle;
        let gen = self.delivery.push(|b| {
            let _ = write!(b, "[{handle},{kind},");
            body(b);
            b.push(']');
        });
        self.last_gen.fetch_max(gen, Ordering::AcqRel);
    }

    /// Writes the deferred acks whose events the application has handled
    /// (generation `upto`). Returns whether none are left waiting. With
    /// `unlist` (the caller holds the link's entry in the waiters list), an
    /// empty link counts as unlisted and the caller drops its entry; a
    /// non-empty one the caller must keep listed.
    pub fn release_acks(&self, upto: u64, unlist: bool) -> bool {
        // Taken and written under the peer lock (taken first, as in `pump`),
        // so two threads releasing at once cannot reorder acks on the wire.
        let mut peer = lock(&self.peer);
        let mut d = lock(&self.deferred);
        let mut wrote = false;
        while d.acks.front().is_some_and(|(g, _)| *g <= upto) {
            if let Some((_, id)) = d.acks.pop_front() {
                peer.write_ack(&id);
                wrote = true;
            }
        }
        let empty = d.acks.is_empty();
        if empty && unlist {
            d.listed = false;
        }
        drop(d);
        drop(peer);
        if wrote {
            self.wake_writer();
        }
        empty
    }

    pub fn deliver_error(&self, message: &str, code: Option<&str>) {
        let mut e = serde_json::Map::new();
        e.insert("message".into(), message.into());
        e.insert("code".into(), code.map_or(Value::Null, Value::from));
        e.insert("server".into(), self.server.map_or(Value::Null, Value::from));
        let text = Value::Object(e).to_string();
        self.deliver(Kind::Error, |b| b.push_str(&text));
    }

    fn spawn_store_work(self: &Arc<Self>, work: StoreWork) {
        let Some(store) = self.store.clone() else { return };
        let link = self.clone();
        match work {
            StoreWork::Load(id) => {
                self.rt.spawn(async move { link.resume(&store, &id).await });
            }
            StoreWork::Save => {
                self.rt.spawn(async move {
                    loop {
                        let Some((id, save)) = lock(&link.unsaved_session).next() else { return };
                        // connect's resetMaxAge() before every save: the cookie's
                        // expiry slides to maxAge from now.
                        let saved = match save {
                            PendingSave::Keys(mut changed) => {
                                session::touch_cookie(&mut changed, session::now_millis());
                                match store.update(&id, changed).await {
                                    Ok(true) => Ok(()),
                                    // Not there (expired, evicted): the whole session.
                                    Ok(false) => {
                                        let mut whole = lock(&link.peer).session().clone();
                                        session::touch_cookie(&mut whole, session::now_millis());
                                        store.set(&id, whole).await
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            PendingSave::Whole(mut whole) => {
                                session::touch_cookie(&mut whole, session::now_millis());
                                store.set(&id, whole).await
                            }
                        };
                        match saved {
                            Ok(()) => link.log(Ns::Session, || format!("{} session {id} saved", link.who())),
                            Err(e) => {
                                link.log(Ns::Session, || format!("{} session {id} not saved: {e}", link.who()));
                                link.deliver_error(&format!("session store set failed: {e}"), Some("ESTORE"));
                            }
                        }
                    }
                });
            }
            StoreWork::Delivery(id) => {
                {
                    let mut unsaved = lock(&self.unsaved);
                    if unsaved.1 {
                        return;
                    }
                    unsaved.1 = true;
                }
                self.rt.spawn(async move {
                    loop {
                        let delta = {
                            let mut unsaved = lock(&link.unsaved);
                            if unsaved.0.is_empty() {
                                unsaved.1 = false;
                                return;
                            }
                            std::mem::take(&mut unsaved.0)
                        };
                        if let Err(e) = store.save_delivery(&id, delta).await {
                            link.deliver_error(
                                &format!("session store could not save delivery state: {e}"),
                                Some("ESTORE"),
                            );
                        }
                    }
                });
            }
        }
    }

    /// Server: the client asked to resume session `id`. Takes over what an
    /// earlier connection of that session left (in this process, or in a
    /// shared store), then loads the session itself.
    async fn resume(self: &Arc<Self>, store: &Arc<dyn SessionStore>, id: &str) {
        self.log(Ns::Session, || format!("{} resuming session {id}", self.who()));
        // The credential first: a client that may not resume this session
        // must not close its connection nor take over its events.
        let mut error = None;
        let mut loaded = match store.get(id).await {
            Ok(s) => s,
            Err(e) => {
                error = Some(format!("session store get failed: {e}"));
                None
            }
        };
        let refused = match &loaded {
            Some(stored) => !lock(&self.peer).may_resume(stored),
            // Not in the store (yet: a first save may still be on its way):
            // a connection of this process that holds it has the credential.
            None => self.holder_of(id).is_some_and(|other| {
                let mut digest = session::Session::new();
                if let Some(d) = lock(&other.peer).session().get(session::RESUME_KEY) {
                    digest.insert(session::RESUME_KEY.into(), d.clone());
                }
                !lock(&self.peer).may_resume(&digest)
            }),
        };
        if refused {
            self.log(Ns::Session, || format!("{} session {id}: resume refused, no valid secret", self.who()));
            lock(&self.peer).session_loaded(None, Instant::now());
            self.pump();
            self.loaded();
            // Gone from the store (expired, invalidated), it is just an
            // unknown id; only a stored session refused is worth an error.
            if loaded.is_some() {
                self.deliver_error(
                    &format!("uhura: resume of session {id} refused: it was made for a client that must present its resume secret; a new session was started"),
                    Some("ERR_UHURA_RESUME_REFUSED"),
                );
            }
            return;
        }
        let mut took_over = false;
        if let Some(retention) = self.retention.clone() {
            // The client may be back before this server noticed its old
            // connection drop: end that one and take over what it leaves.
            let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
            loop {
                let changed = retention.changed();
                if let Some(old) = retention.take(id) {
                    self.log(Ns::Session, || {
                        format!("{} session {id}: takes over the pending events of #{}", self.who(), old.handle)
                    });
                    self.absorb(&old);
                    took_over = true;
                    break;
                }
                let Some(other) = retention.active(id).filter(|l| !Arc::ptr_eq(l, self)) else { break };
                self.log(Ns::Session, || {
                    format!("{} session {id} is still open on #{}: closing that one", self.who(), other.handle)
                });
                if let Some(t) = other.transport() {
                    t.kill();
                }
                took_over = true;
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
            }
        }
        if store.keeps_delivery() {
            match store.load_delivery(id).await {
                Ok(state) => lock(&self.peer).adopt_foreign(state.outbox, state.seen),
                Err(e) => error = Some(format!("session store could not load delivery state: {e}")),
            }
        }
        // What the connection taken over saved last is newer than the first read.
        if took_over {
            match store.get(id).await {
                Ok(Some(s)) => loaded = Some(s),
                Ok(None) => {}
                Err(e) => error = Some(format!("session store get failed: {e}")),
            }
        }
        // A failing store starts a new session (as the original does); the
        // error follows `connect`, so it reaches the connection object.
        self.log(Ns::Session, || match (&loaded, &error) {
            (Some(_), _) => format!("{} session {id} loaded", self.who()),
            (None, Some(e)) => format!("{} session {id} not loaded ({e}): a new session", self.who()),
            (None, None) => format!("{} session {id} unknown to the store: a new session", self.who()),
        });
        lock(&self.peer).session_loaded(loaded, Instant::now());
        self.pump();
        self.loaded();
        if let Some(e) = error {
            self.deliver_error(&e, Some("ESTORE"));
        }
    }

    /// Another connection of this process that holds session `id`: open,
    /// or dropped and kept for its return.
    fn holder_of(self: &Arc<Self>, id: &str) -> Option<Arc<Link>> {
        let retention = self.retention.as_ref()?;
        retention.peek(id).or_else(|| retention.active(id)).filter(|l| !Arc::ptr_eq(l, self))
    }

    /// The session is loaded (or a new one started): reading may have
    /// paused for it (`Peer::input_paused`).
    fn loaded(&self) {
        self.input_wake.notify_one();
        if let Some(t) = self.transport() {
            self.resume_external(t.id);
        }
    }

    /// Server: takes over a closed connection of the same session: its
    /// pending events (resent after ours' older ones), its duplicate
    /// suppression, and its handles, which route here from now on.
    pub fn absorb(self: &Arc<Self>, old: &Arc<Link>) {
        let retained = {
            let mut old_peer = lock(&old.peer);
            // Set under the old peer's lock: a write that gets the lock after
            // this is forwarded, one before it is in what we take.
            *lock(&old.successor) = Some(self.clone());
            old_peer.take_retained()
        };
        lock(&self.peer).adopt_retained(retained);
        let moved = old.handles();
        if let Some(shared) = self.shared.upgrade() {
            for h in &moved {
                shared.route(*h, self.clone());
            }
        }
        lock(&self.aliases).extend(moved);
    }

    /// Server: destroys the stored session, then tells the client.
    pub fn invalidate_session(self: &Arc<Self>) {
        let link = self.clone();
        self.rt.spawn(async move {
            let id = lock(&link.peer).session_id().map(str::to_owned);
            if let (Some(store), Some(id)) = (link.store.clone(), id) {
                match store.destroy(&id).await {
                    Ok(()) => {
                        link.log(Ns::Session, || format!("{} session {id} destroyed (invalidateSession)", link.who()))
                    }
                    Err(e) => {
                        link.log(Ns::Session, || format!("{} session {id} not destroyed: {e}", link.who()));
                        link.deliver_error(&format!("session store destroy failed: {e}"), Some("ESTORE"));
                    }
                }
            }
            {
                let mut peer = lock(&link.peer);
                peer.clear_session();
                *lock(&link.resuming) = None;
                peer.send_event("[\"invalidateSession\"]".to_owned(), None, Instant::now());
            }
            link.pump();
        });
    }

    /// Runs one transport to its end. Returns when the socket is closed.
    pub async fn drive<S>(self: &Arc<Self>, stream: S, addresses: Addresses)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(1);
        let transport =
            Arc::new(Transport { id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed), ..Transport::default() });
        *lock(&transport.addresses) = addresses;
        *lock(&self.transport) = Some(transport.clone());
        self.log(Ns::Connection, || {
            let a = lock(&transport.addresses);
            let addr = |x: Option<std::net::SocketAddr>| x.map_or("a stream".to_owned(), |a| a.to_string());
            match self.server {
                Some(_) => format!("{} accepted from {}", self.who(), addr(a.remote)),
                None => format!("{} connected to {}", self.who(), addr(a.remote)),
            }
        });
        lock(&self.peer).on_open(Instant::now());
        self.pump();

        let watched = self.watch_externally(&transport);
        let (mut rd, wr) = tokio::io::split(stream);
        let writer = tokio::spawn(write_loop(self.clone(), transport.clone(), wr));
        // Small while idle (10,000 idle connections should not hold 64 KiB
        // each), doubled whenever a read fills it.
        let mut buf = vec![0u8; READ_MIN];
        let mut deadline: Option<tokio::time::Instant> = None;
        // Why the loop ended, for `uhura:connection`.
        let reason: std::borrow::Cow<'static, str>;
        loop {
            if deadline.is_none() {
                let (failed, requested) = {
                    let peer = lock(&self.peer);
                    (peer.has_failed(), peer.close_requested())
                };
                if failed || requested || transport.ending.load(Ordering::Acquire) {
                    transport.end();
                    // A broken or silent peer gets only a moment to take the
                    // error's last bytes; a clean end waits for its FIN.
                    let grace = if failed { FAIL_GRACE } else { CLOSE_GRACE };
                    deadline = Some(tokio::time::Instant::now() + grace);
                }
            }
            let grace = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let ext = &transport.external;
            if ext.requested.load(Ordering::Acquire) && !ext.active.load(Ordering::Acquire) {
                ext.active.store(true, Ordering::Release);
            }
            let reading_here = !ext.active.load(Ordering::Acquire);
            if ext.done.load(Ordering::Acquire) {
                reason = if ext.failed.load(Ordering::Acquire) { "socket error" } else { "the peer closed" }.into();
                break;
            }
            let input_open = !lock(&self.peer).input_paused();
            tokio::select! {
                _ = transport.kill.notified() => {
                    reason = "destroyed (or a write failed)".into();
                    break;
                }
                _ = grace => {
                    reason = "the peer did not close in time after our end".into();
                    break;
                }
                _ = transport.ending_wake.notified(), if deadline.is_none() => continue,
                _ = ext.changed.notified() => continue,
                _ = self.input_wake.notified(), if !input_open => continue,
                r = rd.read(&mut buf), if reading_here && input_open => match r {
                    Ok(0) => {
                        reason = "the peer closed".into();
                        break;
                    }
                    Err(e) => {
                        self.deliver_error(&e.to_string(), io_code(&e));
                        reason = format!("socket error: {e}").into();
                        break;
                    }
                    Ok(n) => {
                        if !self.receive(transport.id, &buf[..n]) {
                            reason = "an internal error".into();
                            break;
                        }
                        if n == buf.len() && buf.len() < READ_MAX {
                            buf.resize(buf.len() * 2, 0);
                        } else if n < READ_MIN && buf.len() > READ_MIN {
                            buf = vec![0u8; READ_MIN];
                        }
                    }
                },
            }
            if transport.killed.load(Ordering::Acquire) {
                reason = "destroyed (or a write failed)".into();
                break;
            }
            self.delivery.wait_capacity().await;
            while lock(&self.peer).pending_output() > OUTPUT_HIGH_WATER && !transport.killed.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        writer.abort();
        let _ = writer.await;
        if let Some(socket) = watched {
            // The other loop still holds the fd until it stops watching;
            // the peer must see the close now.
            socket.shutdown();
            let id = transport.id;
            self.deliver(Kind::Unwatch, |b| {
                let _ = write!(b, "{id}");
            });
        }
        self.log(Ns::Connection, || {
            let failed = lock(&self.peer).has_failed();
            let ending = transport.ending.load(Ordering::Acquire);
            let why = if failed {
                " after a protocol error or timeout"
            } else if ending && deadline.is_some() {
                " after our end()"
            } else {
                ""
            };
            format!("{} closed: {reason}{why}", self.who())
        });
        lock(&self.peer).on_close();
        self.pump();
        *lock(&self.transport) = None;
    }

    /// Asks the application's loop to read this transport's socket, when the
    /// engine is set up for it and the socket allows it.
    fn watch_externally(&self, transport: &Transport) -> Option<Arc<dyn DirectWrite>> {
        let shared = self.shared.upgrade()?;
        if !shared.external_reads.load(Ordering::Acquire) {
            return None;
        }
        let socket = lock(&transport.addresses).direct.clone()?;
        let id = transport.id;
        self.deliver(Kind::Watch, |b| {
            let _ = write!(b, "{id}");
        });
        Some(socket)
    }

    /// The application's loop can no longer watch transport `id`: end it.
    pub fn external_failed(&self, id: u64) {
        if let Some(t) = self.transport_by_id(id) {
            t.external.failed.store(true, Ordering::Release);
            t.external.done.store(true, Ordering::Release);
            t.external.changed.notify_one();
        }
    }

    /// Watches transport `id` on the application's loop again, if it paused.
    pub fn resume_external(&self, id: u64) {
        let Some(t) = self.transport_by_id(id) else { return };
        if t.external.paused.swap(false, Ordering::AcqRel) {
            self.deliver(Kind::Watch, |b| {
                let _ = write!(b, "{id}");
            });
        }
    }

    /// The live transport with this id, if it is still this link's.
    pub fn transport_by_id(&self, id: u64) -> Option<Arc<Transport>> {
        self.transport().filter(|t| t.id == id)
    }

    /// The application's loop is watching the socket (called on that loop).
    pub fn external_watch_started(&self, t: &Transport) {
        t.external.requested.store(true, Ordering::Release);
        t.external.changed.notify_one();
    }

    /// Called on the application's loop when the socket is readable: reads
    /// what is there (bounded per call) and feeds it to the state machine.
    /// Only one loop reads a transport at a time (`external.active`).
    /// Returns whether to keep watching.
    pub fn read_external(self: &Arc<Self>, transport: u64, buf: &mut [u8]) -> Watch {
        let Some(t) = self.transport_by_id(transport) else { return Watch::Stop };
        if !t.external.active.load(Ordering::Acquire) {
            // The reader task has not handed over yet; it will shortly.
            return Watch::Keep;
        }
        if t.external.done.load(Ordering::Acquire) {
            return Watch::Stop;
        }
        let Some(socket) = lock(&t.addresses).direct.clone() else { return Watch::Stop };
        let mut total = 0;
        loop {
            let blocked = {
                let peer = lock(&self.peer);
                peer.pending_output() > OUTPUT_HIGH_WATER || peer.input_paused()
            };
            if blocked {
                t.external.paused.store(true, Ordering::Release);
                return Watch::Pause;
            }
            // The application is behind: as the tokio reader waits in
            // `wait_capacity`, stop watching until it takes the batch.
            if self.delivery.over_capacity() {
                if let Some(shared) = self.shared.upgrade() {
                    t.external.paused.store(true, Ordering::Release);
                    shared.pause_for_delivery(self, transport);
                    return Watch::Pause;
                }
            }
            match socket.try_read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !self.receive(transport, &buf[..n]) {
                        break;
                    }
                    total += n;
                    if n < buf.len() || total >= EXTERNAL_READ_BUDGET {
                        return Watch::Keep;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Watch::Keep,
                Err(e) => {
                    self.deliver_error(&e.to_string(), io_code(&e));
                    t.external.failed.store(true, Ordering::Release);
                    break;
                }
            }
        }
        t.external.done.store(true, Ordering::Release);
        t.external.changed.notify_one();
        Watch::Stop
    }
}

/// A session save waiting for the store.
enum PendingSave {
    /// A whole copy of the session.
    Whole(session::Session),
    /// Only these keys changed (for a store that `saves_changes`).
    Keys(session::Session),
}

/// The saves of a session not yet handed to the store: at most one, the
/// later ones folded into it, so the store sees them in order.
#[derive(Default)]
pub(crate) struct SaveSlot {
    pending: Option<(String, PendingSave)>,
    /// A task is saving; it takes `pending` when done with the last.
    running: bool,
}

impl SaveSlot {
    fn add(&mut self, sid: String, save: PendingSave) {
        self.pending = Some(match (self.pending.take(), save) {
            (Some((old, PendingSave::Whole(mut whole))), PendingSave::Keys(changed)) if old == sid => {
                whole.extend(changed);
                (sid, PendingSave::Whole(whole))
            }
            (Some((old, PendingSave::Keys(mut keys))), PendingSave::Keys(changed)) if old == sid => {
                keys.extend(changed);
                (sid, PendingSave::Keys(keys))
            }
            (_, save) => (sid, save),
        });
    }

    /// The next save for the task; clears `running` when there is none.
    fn next(&mut self) -> Option<(String, PendingSave)> {
        let next = self.pending.take();
        self.running = next.is_some();
        next
    }
}

enum StoreWork {
    Load(String),
    /// Save the session copies in `unsaved_session`, newest last.
    Save,
    /// Save this link's unsaved delivery state under the session id.
    Delivery(String),
}

fn deliver_to(delivery: &Delivery, handle: u32, kind: Kind, body: &str) {
    delivery.push(|b| {
        let _ = write!(b, "[{handle},{kind},{body}]");
    });
}

async fn write_loop<W: AsyncWrite>(link: Arc<Link>, transport: Arc<Transport>, wr: W) {
    tokio::pin!(wr);
    let mut out = Vec::new();
    loop {
        {
            let mut peer = lock(&link.peer);
            peer.take_output(&mut out);
            *lock(&transport.writer_busy) = !out.is_empty();
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                transport.kill();
                return;
            }
            out.clear();
            if out.capacity() > 1 << 20 {
                out = Vec::new();
            }
            if transport.external.paused.load(Ordering::Acquire)
                && lock(&link.peer).pending_output() < OUTPUT_HIGH_WATER / 2
            {
                link.resume_external(transport.id);
            }
            continue;
        }
        if transport.ending.load(Ordering::Acquire) {
            let _ = wr.shutdown().await;
            return;
        }
        transport.writer_wake.notified().await;
    }
}
