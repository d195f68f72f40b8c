//! A `Link` is one application-visible connection (a client, or one
//! server-side connection) and the tasks that drive its current transport:
//! a reader that feeds the protocol state machine (parked without a task
//! while Node's loop reads the socket and nothing ends it), and, while
//! there is output a direct write could not take, a writer that flushes it. Reading
//! and writing are separate tasks so a peer that is busy writing to us can
//! never deadlock against our writes.
//!
//! One concept per file, each an `impl Link` block or a type the link holds:
//!
//! * `calls.rs`: application calls (`write`, the Node binding's
//!   `write_lines`, `write_raw`), typed as `Write`.
//! * `transport_ctl.rs`: `Transport`, the control block of one socket
//!   (kill, end, wake the writer, addresses, the parked reader).
//! * `io.rs`: `drive` and the reader loop (`read_loop`, parked in its
//!   transport while idle on Node's loop), the writer task (`start_writer`),
//!   direct writes from the caller's thread (`wake_writer`), feeding input
//!   (`receive`).
//! * `external_read.rs`: reads on the application's own loop (Node's libuv).
//! * `pump.rs`: draining the peer's events into the delivery buffer, timers.
//! * `acks.rs`: acks that wait until the application handled their events.
//! * `persist.rs`: session and delivery-state saves to the store.
//! * `takeover.rs`: server-side resume: taking over an earlier connection of
//!   the session (kept in `Retention`), and letting one go.
//!
//! # Lock order
//!
//! Locks are `std::sync::Mutex`, held briefly, never across an `.await`.
//! Where two are held at once, the outer one is taken first:
//!
//! 1. `Retention`'s map of kept connections (only `takeover::keep`, which
//!    absorbs an older connection under it).
//! 2. `Link::peer`, the main lock: every change to protocol state takes it,
//!    which is what keeps bytes and events in order. Two links' `peer`
//!    locks are never held at once (`absorb` takes the old one, lets it go,
//!    then takes its own).
//! 3. Under `peer`: `successor`, `resuming` (these, `durable` and `aliases`
//!    are in `rare`, made on first use), `transport` (the slot), then
//!    that transport's `addresses`, `writer_busy` or `writer`; `deferred`;
//!    `unsaved_session`; `durable`, then `unsaved`; `Retention`'s map of active sessions.
//! 4. Leaves, taken last and alone: the memory store's map (under `peer`
//!    by `share_session_text`), the delivery buffer (held under
//!    `deferred` only by `pump`, for a run of received messages), `Shared`'s maps,
//!    a transport's `parked` slot,
//!    the timer heap (`scheduled` is taken before it, never under `peer`),
//!    `aliases`.

mod acks;
mod calls;
pub(crate) mod external_read;
mod io;
mod persist;
mod pump;
pub(crate) mod takeover;
pub(crate) mod transport_ctl;

use super::delivery::{lock, Delivery};
use super::diag::{self, Ns};
use super::metrics::LinkMetrics;
use super::retention::Retention;
use super::store::SessionStore;
use super::timers::Timers;
use super::Shared;
use crate::protocol::peer::Peer;
use acks::DeferredAcks;
pub(crate) use io::Then;
use persist::{DeltaSlot, SaveSlot};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::sync::Notify;
use transport_ctl::Transport;

/// Once this much has arrived on a transport, the peer keeps its input
/// buffers a moment after input drains (`Link::input_drained`).
const LINGER_AFTER_BYTES: u64 = 64 * 1024;

/// One application-visible connection; it outlives its sockets (a client
/// reconnects over the same link).
pub(crate) struct Link {
    /// The number the application addresses this connection by.
    pub(crate) handle: u32,
    /// The server this connection belongs to, for server-side links.
    pub(crate) server: Option<u32>,
    /// The protocol state machine; its lock is the main one (see the lock
    /// order above).
    pub(crate) peer: Mutex<Peer>,
    /// What this link shares with the other links of its server (or the
    /// other clients of its engine).
    pub(crate) env: Arc<LinkEnv>,
    /// The socket being driven now; none between a client's connections.
    transport: Mutex<Option<Arc<Transport>>>,
    /// `disconnect()` was called: end the transport once the peer is ready.
    end_when_ready: AtomicBool,
    /// When the timer task is due to wake this link.
    scheduled: Mutex<Option<std::time::Instant>>,
    /// What only a resume, a takeover, a durable send or a wait for saves
    /// uses: made on first use, so most links (idle ones above all) keep
    /// 16 bytes here instead of ~140.
    rare: OnceLock<Box<Rare>>,
    /// Delivery state changes not yet saved to a shared store, and whether
    /// a task is saving them (one at a time, so they apply in order); none
    /// while there is nothing to save (most links, most of the time).
    unsaved: Mutex<Option<Box<DeltaSlot>>>,
    /// The latest session not yet saved, and whether a task is saving. One
    /// save at a time, always of the newest copy, so an older snapshot can
    /// never land after a newer one.
    unsaved_session: Mutex<SaveSlot>,
    /// Acks of delivered events, written once the application handled them.
    deferred: Mutex<DeferredAcks>,
    /// Generation of this link's latest delivered entry.
    last_gen: AtomicU64,
    /// Traffic counters (and, for a server-side link, its server's).
    pub(crate) metrics: LinkMetrics,
    /// This link, for the writer task a `&self` caller may have to start.
    me: Weak<Link>,
}

/// What the links of one server, or the clients of one engine, have in
/// common: one `Arc` in each link rather than a copy of each part in every
/// link (~70 bytes each, times every idle connection).
pub(crate) struct LinkEnv {
    /// Where the links' events go; shared by every link of the engine.
    pub(crate) delivery: Arc<Delivery>,
    /// Server: where sessions are loaded from and saved to.
    pub(crate) store: Option<Arc<dyn SessionStore>>,
    /// Server: where a closed connection's state waits for its session to resume.
    retention: Option<Arc<Retention<Link>>>,
    /// To reach the engine's maps and generations without keeping the
    /// engine alive from its own links.
    shared: Weak<Shared>,
    /// The one timer task, told when a link's next deadline moves.
    timers: Arc<Timers>,
    /// API calls arrive on the JS thread, outside the runtime.
    rt: tokio::runtime::Handle,
}

impl LinkEnv {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        store: Option<Arc<dyn SessionStore>>,
        retention: Option<Arc<Retention<Link>>>,
    ) -> Arc<Self> {
        Arc::new(LinkEnv {
            delivery: shared.delivery.clone(),
            store,
            retention,
            shared: Arc::downgrade(shared),
            timers: shared.timers.clone(),
            rt: shared.rt.clone(),
        })
    }
}

/// The parts of a `Link` few links use (`Link::rare`). Each keeps its own
/// lock, at its place in the lock order.
#[derive(Default)]
struct Rare {
    /// Handles of earlier connections of this session, now routed here.
    aliases: Mutex<Vec<u32>>,
    /// Server: the session id this connection asked to resume.
    resuming: Mutex<Option<String>>,
    /// Server: the newer connection of the session that took this one over.
    successor: Mutex<Option<Arc<Link>>>,
    /// Durable sends applied but not yet staged by `pump`: each is told
    /// (PERSISTED) once the delivery state holding its event is saved.
    durable: Mutex<Vec<crate::protocol::peer::Notify>>,
    /// Told when the save task finds nothing left to save, so a connection
    /// taking this session over reads it from the store after our last save.
    /// Only a link made it exists for has waiters (`saves_flushed`).
    session_saved: Notify,
}

impl Link {
    /// The rarely used parts, made now if they were not.
    fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// The newer connection that took this one over, if any.
    fn successor(&self) -> Option<Arc<Link>> {
        self.rare.get().and_then(|r| lock(&r.successor).clone())
    }

    /// A link with no transport yet; `drive` gives it one.
    pub(crate) fn new(
        handle: u32,
        server: Option<u32>,
        mut peer: Peer,
        shared: &Arc<Shared>,
        env: &Arc<LinkEnv>,
    ) -> Arc<Self> {
        peer.set_wire_tap(Some(diag::wire_tap(shared.delivery.clone(), handle)));
        Arc::new_cyclic(|me| Link {
            handle,
            server,
            peer: Mutex::new(peer),
            env: env.clone(),
            transport: Mutex::new(None),
            end_when_ready: AtomicBool::new(false),
            scheduled: Mutex::new(None),
            rare: OnceLock::new(),
            unsaved: Mutex::new(None),
            unsaved_session: Mutex::new(SaveSlot::default()),
            deferred: Mutex::new(DeferredAcks::default()),
            last_gen: AtomicU64::new(0),
            metrics: LinkMetrics::new(server.and_then(|s| shared.server_metrics(s))),
            me: me.clone(),
        })
    }

    /// `disconnect()`: the transport ends once the peer is ready (the
    /// handshake has flushed what was queued), or at once if it is.
    pub(crate) fn end_when_ready(self: &Arc<Self>) {
        self.end_when_ready.store(true, Ordering::Release);
        self.pump();
    }

    /// `reconnect()` after `disconnect()`: the next transport stays up.
    pub(crate) fn cancel_end(&self) {
        self.end_when_ready.store(false, Ordering::Release);
    }

    /// Input drained. On a transport that has carried real traffic (a
    /// burst drains its socket every few hundred microseconds, often with
    /// small reads) the peer keeps its scratch buffers for what comes next,
    /// and the timer lets them go once input has stayed quiet a moment
    /// (`Peer::release_due`): releasing at every drain made them anew, and
    /// regrew them, for every read. Before that (a handshake and a few
    /// messages) they go at once: an idle connection's memory stays as
    /// compact as before (freed later, they left holes between the
    /// allocations of connections opened meanwhile: +0.1 KB per idle
    /// connection at 10,000).
    pub(super) fn input_drained(&self) {
        let next = {
            let mut peer = lock(&self.peer);
            if peer.bytes_received() < LINGER_AFTER_BYTES {
                self.release_buffers(&mut peer);
                return;
            }
            // Already lingering: a timer is due at or before the deadline.
            if !peer.input_drained() {
                return;
            }
            peer.poll_timeout()
        };
        self.schedule_timer(next);
    }

    /// Input stayed quiet after it drained: the peer lets go of its scratch
    /// buffers, and the session it compacts to text shares the store's
    /// equal copy, if the store keeps one in this process.
    /// Called under the peer lock, which the caller took to decide.
    pub(super) fn release_buffers(&self, peer: &mut Peer) {
        if peer.release_buffers() {
            self.share_session_text(peer);
        }
    }

    /// The peer keeps the store's copy of its session text instead of its
    /// own, when they are the same text (after a save, or a compaction);
    /// called under the peer lock.
    pub(super) fn share_session_text(&self, peer: &mut Peer) {
        if let (Some(store), Some(sid)) = (&self.env.store, peer.session_id()) {
            if let Some(text) = store.session_text(sid) {
                peer.share_session_text(&text);
            }
        }
    }

    /// The transport being driven now, if any.
    pub(crate) fn transport(&self) -> Option<Arc<Transport>> {
        lock(&self.transport).clone()
    }

    /// The live transport with this id, if it is still this link's.
    pub(crate) fn transport_by_id(&self, id: u64) -> Option<Arc<Transport>> {
        self.transport().filter(|t| t.id == id)
    }

    /// `#<handle>`, and for a server-side connection its server's handle.
    pub(crate) fn who(&self) -> String {
        match self.server {
            Some(s) => format!("#{} (server #{s})", self.handle),
            None => format!("#{}", self.handle),
        }
    }

    /// A diagnostic line under `ns` (see `diag`); `msg` runs only when it is on.
    pub(crate) fn log(&self, ns: Ns, msg: impl FnOnce() -> String) {
        diag::log(&self.env.delivery, self.handle, ns, msg);
    }
}
