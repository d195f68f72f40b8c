//! Sending across a fleet: `server.sendTo(sessionID, ...)` and
//! `server.broadcast(...)` (docs/ARCHITECTURE.md, "Sending across the
//! fleet").
//!
//! With a Redis store, an event for one session goes into that session's
//! delivery queue in Redis (the `out:` hash that a resume already drains),
//! and a wake-up naming the session is published on the fleet's channel.
//! The server where the session is connected takes in what the queue holds
//! and its peer has not (`Link::requeue_from_store`); a server where it
//! resumes later loads it with the rest of the queue. The queue is the
//! truth, the wake-up only a hint, so a lost wake-up delays an event until
//! the next resume, never loses it. A broadcast is published as it is and
//! sent by every server to the sessions connected to it.
//!
//! Without Redis the same calls reach the sessions of this server only.

use super::delivery::{lock, Delivery};
use super::events::persisted_entry;
use super::link::Link;
use super::redis_store::RedisStore;
use super::retention::Retention;
use super::store::SessionStore;
use super::Shared;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// How long the subscriber waits before connecting again after Redis went
/// away, at most.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(2);
/// How often a subscriber with no messages checks that its server is alive.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// The bound on one subscribe attempt.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// After this long without a message the subscriber PINGs Redis: a
/// connection gone half-open (a peer that vanished without a FIN or RST, a
/// stalled proxy) never errors on its own, and every wake-up published
/// meanwhile would be missed until the session's next resume.
const PING_WHEN_SILENT: Duration = Duration::from_secs(3);
/// A PING unanswered for this long: the subscription is taken for dead and
/// made again on a new connection.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of `sendTo` / `broadcast` arguments waiting for Redis at most:
/// while Redis is slow or down, further sends fail at once rather than pile
/// up in memory.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// Why a `sendTo` or `broadcast` did not reach the fleet: message and code.
type Failure = (String, &'static str);

/// One server's way to the sessions of the fleet.
pub(crate) struct FleetBus {
    /// The server's handle, which the results are addressed to.
    server: u32,
    /// To find this server's connections.
    shared: Weak<Shared>,
    delivery: Arc<Delivery>,
    /// The open connection of each session, when the server keeps them.
    retention: Option<Arc<Retention<Link>>>,
    /// None without a Redis store: this server's sessions only.
    redis: Option<RedisBus>,
}

/// The Redis side of a fleet bus.
struct RedisBus {
    store: Arc<RedisStore>,
    /// The same store as the server's links use it (counted: `metrics.rs`),
    /// to read a session's queue as a resume does.
    sessions: Arc<dyn SessionStore>,
    /// Sends in call order, to the one task that writes them: a session's
    /// queue must get one server's events in the order of their ids, since
    /// duplicate suppression keeps one watermark per sender.
    sends: mpsc::UnboundedSender<Outgoing>,
    /// Bytes of the arguments in `sends` (bounded by `MAX_PENDING_BYTES`).
    pending: Arc<AtomicUsize>,
    /// Sessions of this server whose queue has events to take in.
    dirty: Mutex<HashSet<String>>,
    /// Wakes the task that takes them in (`notify_one`: a wake while it
    /// works is kept for its next wait).
    dirty_wake: Arc<Notify>,
}

impl RedisBus {
    /// Counts `bytes` more waiting for Redis, unless that goes past the bound.
    fn admit(&self, bytes: usize) -> Result<(), Failure> {
        let before = self.pending.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > MAX_PENDING_BYTES && before > 0 {
            self.pending.fetch_sub(bytes, Ordering::AcqRel);
            return Err((
                format!("uhura: sendTo/broadcast: {before} bytes are already waiting for Redis (at most {MAX_PENDING_BYTES}): Redis is slow or down"),
                "ESTORE",
            ));
        }
        Ok(())
    }
}

/// A send on its way to Redis, with the application's number for it.
enum Outgoing {
    To { sid: String, args: String, seq: u64 },
    All { args: String, seq: u64 },
}

impl FleetBus {
    /// A bus for server `server`; with `redis` (the Redis store and the
    /// server's store wrapping it), its tasks (writer, subscriber, queue
    /// reader) run until the bus is dropped.
    pub(crate) fn new(
        server: u32,
        shared: &Arc<Shared>,
        retention: Option<Arc<Retention<Link>>>,
        redis: Option<(Arc<RedisStore>, Arc<dyn SessionStore>)>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let bus = Arc::new(FleetBus {
            server,
            shared: Arc::downgrade(shared),
            delivery: shared.delivery.clone(),
            retention,
            redis: redis.clone().map(|(store, sessions)| RedisBus {
                store,
                sessions,
                sends: tx,
                pending: pending.clone(),
                dirty: Mutex::new(HashSet::new()),
                dirty_wake: Arc::new(Notify::new()),
            }),
        });
        if let Some((store, _)) = redis {
            shared.rt.spawn(write_sends(rx, pending, store, shared.delivery.clone(), server));
            shared.rt.spawn(subscribe(Arc::downgrade(&bus)));
            shared.rt.spawn(take_in(Arc::downgrade(&bus)));
        }
        bus
    }

    /// `server.sendTo`: the event reaches session `sid` wherever it is
    /// connected, or waits in its queue until it resumes. Reported to `seq`
    /// once it is in the queue.
    pub(crate) fn send_to(&self, sid: String, args: String, seq: u64) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.admit(args.len()) {
                return report(&self.delivery, self.server, seq, Err(e));
            }
            let _ = r.sends.send(Outgoing::To { sid, args, seq });
            return;
        }
        // One server: its open connection of the session, or one dropped
        // and kept for the session's return.
        let kept = self.retention.as_ref().and_then(|r| r.peek(&sid));
        match self.session_link(&sid).or(kept) {
            Some(link) => {
                link.send_event(args, None);
                report(&self.delivery, self.server, seq, Ok(()));
            }
            None => report(&self.delivery, self.server, seq, Err(no_session(&sid))),
        }
    }

    /// `server.broadcast`: the event reaches every session connected to a
    /// server of the fleet when that server hears of it.
    pub(crate) fn broadcast(&self, args: String, seq: u64) {
        if let Some(r) = &self.redis {
            if let Err(e) = r.admit(args.len()) {
                return report(&self.delivery, self.server, seq, Err(e));
            }
            let _ = r.sends.send(Outgoing::All { args, seq });
            return;
        }
        self.send_to_all(&args);
        report(&self.delivery, self.server, seq, Ok(()));
    }

    /// Sends `args` on every open connection of this server.
    fn send_to_all(&self, args: &str) {
        for link in self.open_links() {
            link.send_event(args.to_owned(), None);
        }
    }

    /// The open connections of this server, each once.
    fn open_links(&self) -> Vec<Arc<Link>> {
        let Some(shared) = self.shared.upgrade() else { return Vec::new() };
        let mut seen = HashSet::new();
        let links: Vec<Arc<Link>> = lock(&shared.links).values().cloned().collect();
        links
            .into_iter()
            .filter(|l| l.server == Some(self.server) && seen.insert(Arc::as_ptr(l)))
            .filter(|l| l.transport().is_some() && lock(&l.peer).is_ready())
            .collect()
    }

    /// This server's open connection of session `sid`.
    fn session_link(&self, sid: &str) -> Option<Arc<Link>> {
        match &self.retention {
            Some(r) => r.active(sid),
            // No retention, no map of sessions: look.
            None => self.open_links().into_iter().find(|l| lock(&l.peer).session_id() == Some(sid)),
        }
    }

    /// A message on the fleet's channel: `w<sid>`, session `sid` has new
    /// events in its queue; `b<args>`, a broadcast.
    fn on_message(&self, payload: &str) {
        if let Some(sid) = payload.strip_prefix('w') {
            if self.session_link(sid).is_some() {
                self.mark_dirty([sid.to_owned()]);
            }
        } else if let Some(args) = payload.strip_prefix('b') {
            self.send_to_all(args);
        }
    }

    /// Has the queues of these sessions read (those open here by then).
    fn mark_dirty(&self, sids: impl IntoIterator<Item = String>) {
        if let Some(r) = &self.redis {
            lock(&r.dirty).extend(sids);
            r.dirty_wake.notify_one();
        }
    }

    /// Every session open here: after a (re)subscribe, wake-ups published
    /// while this server was not listening may have been missed.
    fn mark_all_dirty(&self) {
        let sids: Vec<String> =
            self.open_links().iter().filter_map(|l| lock(&l.peer).session_id().map(str::to_owned)).collect();
        self.mark_dirty(sids);
    }
}

/// The fleet's channel: one for all servers, under the auxiliary prefix.
fn channel(store: &RedisStore) -> String {
    format!("{}fleet", store.aux_prefix())
}

fn no_session(sid: &str) -> Failure {
    (format!("uhura: sendTo: no session {sid:?} in the store"), "ERR_UHURA_NO_SESSION")
}

/// Tells the application the fate of its `sendTo` / `broadcast` number `seq`.
fn report(delivery: &Delivery, server: u32, seq: u64, result: Result<(), Failure>) {
    let failure = result.as_ref().err().map(|(message, code)| (message.as_str(), *code));
    delivery.push(|b| persisted_entry(b, server, seq, failure));
}

/// The one task that writes this server's sends to Redis, in call order.
/// Its events carry ids of their own (`<12 hex>-<n>`, a fresh sender per
/// server process), so the clients' duplicate suppression tells them apart
/// from every connection's.
async fn write_sends(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    pending: Arc<AtomicUsize>,
    store: Arc<RedisStore>,
    delivery: Arc<Delivery>,
    server: u32,
) {
    let mut bytes = [0u8; 6];
    super::entropy::os().fill(&mut bytes);
    let prefix = bytes.iter().fold(String::with_capacity(13), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }) + "-";
    let mut next = 1u64;
    // The queue is read in this order: it must grow with the ids even if
    // the clock steps back.
    let mut last_order = 0u64;
    while let Some(out) = rx.recv().await {
        let bytes = match &out {
            Outgoing::To { args, .. } | Outgoing::All { args, .. } => args.len(),
        };
        let (seq, result) = match out {
            Outgoing::To { sid, args, seq } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                last_order = now.max(last_order + 1);
                let id = format!("{prefix}{next}");
                next += 1;
                (seq, enqueue(&store, &sid, &id, last_order, &args).await)
            }
            Outgoing::All { args, seq } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(channel(&store)).arg(format!("b{args}"));
                (
                    seq,
                    store.query(&cmd).await.map(drop).map_err(|e| (format!("uhura: broadcast: redis: {e}"), "ESTORE")),
                )
            }
        };
        pending.fetch_sub(bytes, Ordering::AcqRel);
        report(&delivery, server, seq, result);
    }
}

/// Puts one event into session `sid`'s queue, then wakes the server where
/// it is connected. A session the store does not know is refused: its
/// queue would never be read.
async fn enqueue(store: &RedisStore, sid: &str, id: &str, order: u64, args: &str) -> Result<(), Failure> {
    let fail = |e: String| (format!("uhura: sendTo: {e}"), "ESTORE");
    let mut exists = redis::cmd("EXISTS");
    exists.arg(store.key(sid));
    match store.query(&exists).await {
        Ok(redis::Value::Int(0)) => return Err(no_session(sid)),
        Ok(_) => {}
        Err(e) => return Err(fail(format!("redis: {e}"))),
    }
    let (out, _) = store.delivery_keys(sid);
    let mut pipe = redis::pipe();
    pipe.cmd("HSET").arg(&out).arg(id).arg(format!("[{order},{args}]")).ignore();
    pipe.cmd("EXPIRE").arg(&out).arg(store.aux_ttl()).ignore();
    // After the event is in the queue: whoever hears this finds it there.
    let mut publish = redis::cmd("PUBLISH");
    publish.arg(channel(store)).arg(format!("w{sid}"));
    if store.connector().is_cluster() {
        // The cluster client routes PUBLISH by its channel as if a key, so
        // in the pipeline it would cross slots: sent after it instead.
        store.run_pipe(pipe).await.map_err(fail)?;
        return store.query(&publish).await.map(drop).map_err(|e| fail(format!("redis: {e}")));
    }
    pipe.add_command(publish).ignore();
    store.run_pipe(pipe).await.map_err(fail)
}

/// Listens on the fleet's channel for as long as the bus lives, subscribing
/// again whenever the connection drops.
async fn subscribe(bus: Weak<FleetBus>) {
    let mut delay = Duration::from_millis(50);
    loop {
        let Some((conn, channel)) =
            bus.upgrade().and_then(|b| b.redis.as_ref().map(|r| (r.store.connector().clone(), channel(&r.store))))
        else {
            return;
        };
        let attempt = async {
            let mut pubsub = conn.subscriber().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, attempt).await {
            Ok(Ok(p)) => p,
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
                continue;
            }
        };
        delay = Duration::from_millis(50);
        match bus.upgrade() {
            Some(b) => b.mark_all_dirty(),
            None => return,
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut silent = Duration::ZERO;
        loop {
            match tokio::time::timeout(LIVENESS_CHECK, messages.next()).await {
                Err(_) if bus.strong_count() == 0 => return,
                Err(_) => {
                    silent += LIVENESS_CHECK;
                    if silent >= PING_WHEN_SILENT {
                        silent = Duration::ZERO;
                        // In subscribed mode the answer is ["pong", ""]: any
                        // answer will do.
                        match tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => {}
                            _ => break,
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(msg)) => {
                    silent = Duration::ZERO;
                    let Some(b) = bus.upgrade() else { return };
                    if let Ok(payload) = msg.get_payload::<String>() {
                        b.on_message(&payload);
                    }
                }
            }
        }
    }
}

/// Takes into each marked session's connection what its queue holds, one
/// session at a time, so an older read never lands after a newer one.
async fn take_in(bus: Weak<FleetBus>) {
    loop {
        let Some(b) = bus.upgrade() else { return };
        let Some(r) = b.redis.as_ref() else { return };
        let sids: Vec<String> = lock(&r.dirty).drain().collect();
        if sids.is_empty() {
            let wake = r.dirty_wake.clone();
            drop(b);
            // Checked again now and then, so a dropped bus ends this task.
            let _ = tokio::time::timeout(LIVENESS_CHECK, wake.notified()).await;
            continue;
        }
        let store = r.sessions.clone();
        let links: Vec<(String, Arc<Link>)> =
            sids.into_iter().filter_map(|sid| b.session_link(&sid).map(|l| (sid, l))).collect();
        drop(b);
        let mut failed = Vec::new();
        for (sid, link) in links {
            if !link.requeue_from_store(&store, &sid).await {
                failed.push(sid);
            }
        }
        if !failed.is_empty() {
            // Redis did not answer (down, slow, or a connection found dead
            // and replaced): the events wait there; try these again soon.
            tokio::time::sleep(LIVENESS_CHECK).await;
            let Some(b) = bus.upgrade() else { return };
            b.mark_dirty(failed);
        }
    }
}
