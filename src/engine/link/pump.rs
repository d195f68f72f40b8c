//! Driving the state machine from outside: `pump` drains the peer's events
//! (application events to the delivery buffer, store work spawned, acks
//! deferred), then schedules the next timer and wakes the writer.
//! `on_timer` is the timer task's way in; `guarded` keeps a panic of ours
//! in either to one connection.

use super::acks::DeferredAcks;
use super::persist::StoreWork;
use super::Link;
use crate::engine::delivery::{lock, Delivery, Entries};
use crate::engine::diag::Ns;
use crate::engine::events::Kind;
use crate::engine::store::DeliveryDelta;
use crate::protocol::peer::{Event, Peer, Polled};
use crate::protocol::session;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::time::Instant;

/// How the peer's error for a silent peer begins (`Peer::handle_timeout`).
const HEARTBEAT_TIMEOUT: &str = "heartbeat timeout";

impl Link {
    /// The timer task woke us: ack deadlines, heartbeats.
    pub(crate) fn on_timer(self: &Arc<Self>, now: Instant) {
        *lock(&self.scheduled) = None;
        let handled = self.guarded(|| {
            {
                let mut peer = lock(&self.peer);
                peer.handle_timeout(now);
                if peer.release_due(now) {
                    self.release_buffers(&mut peer);
                }
            }
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
    pub(super) fn guarded<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
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

    /// Drains the state machine's events: application events go to the
    /// delivery buffer, store work is spawned. Then wakes the writer and
    /// schedules the next timer.
    pub(crate) fn pump(self: &Arc<Self>) {
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
            // Consecutive acked sequence numbers of one handle, not yet delivered.
            let mut acked: Option<AckedRun> = None;
            // Consecutive messages received and the acks they ask for, not
            // yet let go; ended before anything else is delivered.
            let mut received: Option<Received> = None;
            // Counted once per pump (see `metrics`).
            let (mut messages, mut drops) = (0, 0);
            while let Some(polled) = peer.next_event() {
                // The events of every message received, their texts lent.
                let ev = match polled {
                    Polled::Event(ev) => ev,
                    Polled::Message(args, argc) => {
                        if let Some(run) = acked.take() {
                            run.deliver(&self.env.delivery);
                        }
                        messages += 1;
                        match &mut received {
                            Some(r) => r.message(args, argc),
                            None => received = Some(self.received(args, argc)),
                        }
                        continue;
                    }
                    Polled::AckDue { id, duplicate } => {
                        if let Some(run) = acked.take() {
                            run.deliver(&self.env.delivery);
                        }
                        match &mut received {
                            Some(r) => r.ack_due(id, duplicate),
                            None => self.defer_ack(id, duplicate),
                        }
                        continue;
                    }
                };
                // Anything else is delivered on its own, after the run.
                drop(received.take());
                if let Event::Acked((h, seq)) = ev {
                    match &mut acked {
                        Some(run) if run.handle == h && run.to + 1 == seq => run.to = seq,
                        _ => {
                            if let Some(run) = acked.replace(AckedRun { handle: h, from: seq, to: seq }) {
                                run.deliver(&self.env.delivery);
                            }
                        }
                    }
                    continue;
                }
                // Entries keep the order of the events.
                if let Some(run) = acked.take() {
                    run.deliver(&self.env.delivery);
                }
                match ev {
                    // Held before the handshake, these come owned.
                    Event::Message(args) => {
                        messages += 1;
                        self.deliver(Kind::Message, |b| b.push_str(&args));
                    }
                    Event::Set(args) => self.deliver(Kind::Set, |b| b.push_str(&args)),
                    Event::Acked(_) => {}
                    Event::AckTimeout((h, seq)) => {
                        deliver_to(&self.env.delivery, h, Kind::AckTimeout, &seq.to_string())
                    }
                    Event::Dropped { notify } => {
                        drops += 1;
                        match notify {
                            Some((h, seq)) => deliver_to(&self.env.delivery, h, Kind::Dropped, &seq.to_string()),
                            None => self.deliver(Kind::Dropped, |b| b.push_str("null")),
                        }
                    }
                    // The same entry with a reason: `[handle, DROPPED, seq, "refused"]`.
                    Event::Refused { notify } => {
                        drops += 1;
                        match notify {
                            Some((h, seq)) => {
                                deliver_to(&self.env.delivery, h, Kind::Dropped, &format!("{seq},\"refused\""))
                            }
                            None => self.deliver(Kind::Dropped, |b| b.push_str("null,\"refused\"")),
                        }
                    }
                    Event::Error(message) => {
                        if message.starts_with(HEARTBEAT_TIMEOUT) {
                            self.metrics.count(|s| &s.heartbeat_timeouts, 1);
                        }
                        self.deliver_error(&message, None)
                    }
                    Event::Connected { resumed } => {
                        self.metrics.count(|s| if resumed { &s.handshakes_resumed } else { &s.handshakes_new }, 1);
                        if let (Some(r), Some(sid)) = (&self.env.retention, peer.session_id_shared()) {
                            r.set_active(sid, self);
                        }
                        let info = self.connected_info(&peer, resumed);
                        self.deliver(Kind::Connected, |b| b.push_str(&info));
                        self.log(Ns::Connection, || {
                            let session = peer.session();
                            let sid = session.get("sessionID").and_then(Value::as_str).unwrap_or("none");
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
                        *lock(&self.rare().resuming) = Some(id.clone());
                        store_work.push(StoreWork::Load(id));
                    }
                    Event::SaveSession => save_due = true,
                    Event::Persist { id, args } => delta.add.push((id, args)),
                    Event::Unpersist { id } => delta.remove.push(id),
                    Event::Seen { sender, seq } => match delta.seen.iter_mut().find(|(s, _)| *s == sender) {
                        Some((_, max)) => *max = seq.max(*max),
                        None => delta.seen.push((sender, seq)),
                    },
                    // Held before the handshake, these come owned.
                    Event::AckDue { id, duplicate } => self.defer_ack(&id, duplicate),
                }
            }
            drop(received);
            if let Some(run) = acked {
                run.deliver(&self.env.delivery);
            }
            self.metrics.received_events(messages);
            self.metrics.count(|s| &s.drops, drops);
            if save_due {
                self.stage_session_save(&mut peer, &mut store_work);
            }
            next_timer = peer.poll_timeout();
            self.stage_delivery_delta(&peer, delta, &mut store_work);
        }
        self.schedule_timer(next_timer);
        self.release_or_wait_acks();
        self.wake_writer();
        for work in store_work {
            self.spawn_store_work(work);
        }
    }

    /// Has the timer task wake us at `at`, unless it already will by then.
    pub(super) fn schedule_timer(&self, at: Option<Instant>) {
        if let Some(at) = at {
            let mut scheduled = lock(&self.scheduled);
            if scheduled.is_none_or(|s| at < s) {
                *scheduled = Some(at);
                self.env.timers.schedule(at, self.handle);
            }
        }
    }

    /// Starts a run of received messages (`Received`) with the message
    /// `args`; under the peer lock.
    fn received(&self, args: &str, argc: Option<usize>) -> Received<'_> {
        // `deferred`, then the delivery buffer: the order of `release_acks`
        // (which never holds the buffer) and of the leaf lock last.
        let deferred = lock(&self.deferred);
        let mut entries = self.env.delivery.entries();
        open_run(&mut entries, self.handle, args, argc);
        Received { deferred, entries, handle: self.handle, last_gen: &self.last_gen }
    }

    /// The body of a CONNECTED entry: modes, session view, addresses.
    fn connected_info(&self, peer: &Peer, resumed: bool) -> String {
        let addrs = self.transport().map(|t| lock(&t.addresses).clone()).unwrap_or_default();
        let mut info = serde_json::Map::new();
        info.insert("resumed".into(), resumed.into());
        info.insert("objectMode".into(), peer.object_mode().into());
        info.insert("enableAcks".into(), peer.enable_acks().into());
        info.insert("extended".into(), peer.extended().into());
        info.insert("session".into(), session::public_view(&peer.session()));
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

    /// Appends an entry `[handle, kind, body]` to the delivery buffer and
    /// remembers its generation (for acks deferred after it).
    pub(crate) fn deliver(&self, kind: Kind, body: impl FnOnce(&mut String)) {
        let handle = self.handle;
        let gen = self.env.delivery.push(|b| write_entry(b, handle, kind, body));
        self.last_gen.fetch_max(gen, Ordering::AcqRel);
    }

    /// An ERROR entry: `{message, code, server}`, as index.js builds the
    /// Error object from it.
    pub(crate) fn deliver_error(&self, message: &str, code: Option<&str>) {
        let mut e = serde_json::Map::new();
        e.insert("message".into(), message.into());
        e.insert("code".into(), code.map_or(Value::Null, Value::from));
        e.insert("server".into(), self.server.map_or(Value::Null, Value::from));
        let text = Value::Object(e).to_string();
        if let Some(s) = &self.metrics.server {
            s.error(self.handle, code, message);
        }
        self.deliver(Kind::Error, |b| b.push_str(&text));
    }
}

/// Writes the entry `[handle, kind, body]`; `[handle,kind,` without `fmt`:
/// once per event delivered.
fn write_entry(b: &mut String, handle: u32, kind: Kind, body: impl FnOnce(&mut String)) {
    let mut digits = itoa::Buffer::new();
    b.push('[');
    b.push_str(digits.format(handle));
    b.push(',');
    b.push_str(digits.format(kind as u8));
    b.push(',');
    body(b);
    b.push(']');
}

/// A run of received messages, as one entry `[handle, MESSAGES, n, name,
/// ...args, n, name, ...]` (`Kind::Messages`), and the acks due for them,
/// added under one lock of the delivery buffer and one of the deferred acks
/// instead of one of each per message (and one entry, which the
/// application parses with no array per message and dispatches in one
/// loop). An entry ends where the buffer's segment does, and the run goes
/// on in a new one. A run starts with a
/// message, so every ack in it is tagged with the run's batch generation,
/// the generation of the messages before it, as `defer_ack` would tag it.
/// Dropping it records that generation (`last_gen`), lets the locks go and
/// wakes the consumer.
struct Received<'a> {
    // Dropped in this order: the acks' lock, then the buffer's (and the wake-up).
    deferred: MutexGuard<'a, DeferredAcks>,
    entries: Entries<'a>,
    handle: u32,
    last_gen: &'a AtomicU64,
}

impl Received<'_> {
    /// One more message of the run: in its entry, or in a new entry of the
    /// next segment once the delivery buffer's segment is full.
    fn message(&mut self, args: &str, argc: Option<usize>) {
        if self.entries.segment_full() {
            self.entries.extend(|b| b.push(']'));
            open_run(&mut self.entries, self.handle, args, argc);
        } else {
            self.entries.extend(|b| {
                b.push(',');
                write_run_element(b, args, argc);
            });
        }
    }

    fn ack_due(&mut self, id: &str, duplicate: bool) {
        self.deferred.push(self.entries.gen(), id, duplicate);
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        self.entries.extend(|b| b.push(']'));
        self.last_gen.fetch_max(self.entries.gen(), Ordering::AcqRel);
    }
}

/// Starts the entry `[handle, MESSAGES, ...` of a run with its first
/// message, left open for more; `Received` closes it.
fn open_run(entries: &mut Entries<'_>, handle: u32, args: &str, argc: Option<usize>) {
    entries.push(|b| {
        write_entry(b, handle, Kind::Messages, |b| write_run_element(b, args, argc));
        b.pop();
    });
}

/// One message of a `MESSAGES` entry: `3,"e",1,"x"` for `["e",1,"x"]` of
/// 3 counted elements, or `0,["e",1,"x"]` uncounted.
fn write_run_element(b: &mut String, args: &str, argc: Option<usize>) {
    let mut digits = itoa::Buffer::new();
    match (argc, args.strip_prefix('[').and_then(|a| a.strip_suffix(']'))) {
        (Some(n), Some(elements)) => {
            b.push_str(digits.format(n));
            b.push(',');
            b.push_str(elements);
        }
        _ => {
            b.push_str("0,");
            b.push_str(args);
        }
    }
}

/// Send callbacks of one handle settled by acks, sequence numbers `from`
/// to `to`: one ACKED entry, `[handle, 1, seq]` or `[handle, 1, from, to]`,
/// so a burst's callbacks cross to the application as one entry per batch.
struct AckedRun {
    handle: u32,
    from: u64,
    to: u64,
}

impl AckedRun {
    fn deliver(self, delivery: &Delivery) {
        let AckedRun { handle, from, to } = self;
        delivery.push(|b| {
            let _ = if from == to {
                write!(b, "[{handle},{},{from}]", Kind::Acked)
            } else {
                write!(b, "[{handle},{},{from},{to}]", Kind::Acked)
            };
        });
    }
}

/// An entry for another handle (an ack callback's owner, which may be an
/// earlier connection of the session).
fn deliver_to(delivery: &Delivery, handle: u32, kind: Kind, body: &str) {
    delivery.push(|b| {
        let _ = write!(b, "[{handle},{kind},{body}]");
    });
}
