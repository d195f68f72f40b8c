//! The engine behind the Rust API, and the dispatcher that turns its
//! delivery batches into typed events.
//!
//! One `Engine` (one tokio runtime, `UHURA_THREADS` workers, default 2)
//! serves every client and server of the process, started on first use and
//! never shut down (so dropping the API's objects is allowed anywhere, also
//! inside another async runtime). Links push their events into the engine's
//! shared delivery buffer as JSON entries, exactly as for the Node binding;
//! one dispatcher task takes each batch, parses it, settles `send` futures
//! (acks, ack timeouts, drops) at once, and appends the other events to the
//! queue (`Inbox`) of their client or connection. Entry kinds and JSON stay
//! in here.

use super::connection::Connection;
use super::error::{Error, ErrorKind};
use super::event::Event;
use super::inbox::{Flow, Inbox, Queued};
use super::server::ServerInbox;
use crate::engine::delivery::lock;
use crate::engine::events::Kind;
use crate::engine::Engine;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

pub(crate) type AckSender = oneshot::Sender<Result<(), Error>>;

pub(crate) struct Hub {
    pub(crate) engine: Engine,
    pub(crate) flow: Arc<Flow>,
    /// Clients and server-side connections, by link handle.
    inboxes: Mutex<HashMap<u32, Arc<Inbox>>>,
    servers: Mutex<HashMap<u32, Arc<ServerInbox>>>,
    /// `send` futures waiting for their ack: sequence number -> (handle, sender).
    pending: Mutex<HashMap<u64, (u32, AckSender)>>,
    next_seq: AtomicU64,
}

static HUB: OnceLock<Hub> = OnceLock::new();

/// The process's engine for the Rust API, started on first use.
pub(crate) fn hub() -> Result<&'static Hub, Error> {
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    let _once = lock(&INIT);
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    let wake = Arc::new(Notify::new());
    let woken = wake.clone();
    // Called from any thread, possibly under a link's lock: only a notify.
    let engine = Engine::new(move || woken.notify_one())
        .map_err(|e| Error::new(ErrorKind::Runtime, format!("uhura: cannot start the runtime: {e}")))?;
    let rt = engine.shared().rt.clone();
    let hub = Hub {
        engine,
        flow: Arc::new(Flow::default()),
        inboxes: Mutex::new(HashMap::new()),
        servers: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        next_seq: AtomicU64::new(0),
    };
    let hub = HUB.get_or_init(|| hub);
    rt.spawn(dispatch(hub, wake));
    Ok(hub)
}

async fn dispatch(hub: &'static Hub, wake: Arc<Notify>) {
    let mut prune_above = 1024;
    loop {
        wake.notified().await;
        loop {
            // Consumers behind: leave the batch in the engine, whose readers
            // stop reading once its buffer is full.
            hub.flow.room().await;
            let Some((text, gen)) = hub.engine.take_batch() else { break };
            // A bug in routing must not stop every connection's events.
            let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hub.route(&text, gen)));
            if routed.is_err() {
                hub.flow.routed.fetch_max(gen, Ordering::AcqRel);
            }
            if let Some(left) = hub.engine.shared().prune_ack_waiters(prune_above) {
                prune_above = (left * 2).max(1024);
            }
        }
    }
}

/// The argument arrays of a `MESSAGES` entry's elements (`Kind::Messages`):
/// a count and that many values, or 0 and an array.
fn run_messages(mut elements: impl Iterator<Item = Value>) -> Vec<Value> {
    let mut bodies = Vec::new();
    while let Some(n) = elements.next().and_then(|n| n.as_u64()) {
        bodies.push(match n {
            0 => elements.next().unwrap_or(Value::Null),
            n => Value::Array(elements.by_ref().take(n as usize).collect()),
        });
    }
    bodies
}

impl Hub {
    pub(crate) fn add_inbox(&self, handle: u32, inbox: Arc<Inbox>) {
        lock(&self.inboxes).insert(handle, inbox);
    }

    pub(crate) fn remove_inbox(&self, handle: u32) {
        lock(&self.inboxes).remove(&handle);
    }

    pub(crate) fn has_inbox(&self, handle: u32) -> bool {
        lock(&self.inboxes).contains_key(&handle)
    }

    fn inbox(&self, handle: u32) -> Option<Arc<Inbox>> {
        lock(&self.inboxes).get(&handle).cloned()
    }

    pub(crate) fn add_server(&self, handle: u32, server: Arc<ServerInbox>) {
        lock(&self.servers).insert(handle, server);
    }

    pub(crate) fn remove_server(&self, handle: u32) -> Option<Arc<ServerInbox>> {
        lock(&self.servers).remove(&handle)
    }

    /// A sequence number for a `send` whose ack `tx` waits for.
    pub(crate) fn expect_ack(&self, handle: u32, tx: AckSender) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(seq, (handle, tx));
        seq
    }

    pub(crate) fn settle_ack(&self, seq: u64, result: Result<(), Error>) {
        if let Some((_, tx)) = lock(&self.pending).remove(&seq) {
            let _ = tx.send(result);
        }
    }

    /// Fails every `send` of `handle` still waiting (its client was dropped).
    pub(crate) fn fail_pending(&self, handle: u32, error: &Error) {
        let mut pending = lock(&self.pending);
        let seqs: Vec<u64> = pending.iter().filter(|(_, (h, _))| *h == handle).map(|(s, _)| *s).collect();
        for seq in seqs {
            if let Some((_, tx)) = pending.remove(&seq) {
                let _ = tx.send(Err(error.clone()));
            }
        }
    }

    /// One batch: `[[handle, kind, body...], ...]`, all of generation `gen`.
    fn route(&'static self, text: &str, gen: u64) {
        let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(text) else { return };
        let mut groups: HashMap<u32, (Arc<Inbox>, Vec<Queued>)> = HashMap::new();
        let mut queue = |handle: u32, event: Event, bytes: usize| {
            if let Some(inbox) = self.inbox(handle) {
                let group = groups.entry(handle).or_insert_with(|| (inbox, Vec::new()));
                group.1.push(Queued { gen, bytes, event });
            }
        };
        let mut touched: Vec<Arc<Inbox>> = Vec::new();
        let mut ended: Vec<Arc<Inbox>> = Vec::new();
        for raw in entries {
            let bytes = raw.get().len();
            let Ok(Value::Array(mut entry)) = serde_json::from_str::<Value>(raw.get()) else { continue };
            let (Some(h), Some(k)) = (entry.first().and_then(Value::as_u64), entry.get(1).and_then(Value::as_u64))
            else {
                continue;
            };
            let (h, k) = (h as u32, k as u8);
            let inbox = self.inbox(h);
            if let Some(inbox) = &inbox {
                if !touched.iter().any(|t| Arc::ptr_eq(t, inbox)) {
                    touched.push(inbox.clone());
                }
            }
            let bodies = match Kind::from_u8(k) {
                Some(Kind::Message) => entry.drain(2..).take(1).collect(),
                Some(Kind::Messages) => run_messages(entry.drain(2..)),
                _ => Vec::new(),
            };
            if !bodies.is_empty() {
                // The entry's bytes shared among its messages.
                let count = bodies.len();
                for body in bodies {
                    let event = match (&body, &inbox) {
                        (Value::Array(a), Some(i)) if a.len() == 1 && a[0] == "invalidateSession" && i.is_client() => {
                            Event::InvalidateSession
                        }
                        _ => Event::message(body),
                    };
                    queue(h, event, bytes / count);
                }
                continue;
            }
            let body = if entry.len() > 2 { entry.swap_remove(2) } else { Value::Null };
            let seq = || body.as_u64();
            match Kind::from_u8(k) {
                // Taken above.
                Some(Kind::Message | Kind::Messages) => {}
                Some(Kind::Set) => queue(h, Event::set(body), bytes),
                Some(Kind::Acked) => {
                    // `[handle, 1, seq]` or a range, `[handle, 1, from, to]`,
                    // whose `to` `swap_remove` moved to index 2.
                    if let Some(from) = seq() {
                        let to = entry.get(2).and_then(Value::as_u64).unwrap_or(from);
                        (from..=to).for_each(|s| self.settle_ack(s, Ok(())));
                    }
                }
                Some(Kind::AckTimeout) => seq().into_iter().for_each(|s| {
                    self.settle_ack(
                        s,
                        Err(Error::new(
                            ErrorKind::AckTimeout,
                            "uhura: no acknowledgement within ackTimeout; the event stays queued for delivery",
                        )),
                    )
                }),
                Some(Kind::Dropped) => {
                    if let Some(s) = seq() {
                        self.settle_ack(s, Err(Error::new(ErrorKind::Dropped, "uhura: the event was dropped: the send queue was over maxQueueLength or maxQueueBytes, or its session expired")));
                    }
                    queue(h, Event::Drop, bytes);
                }
                Some(Kind::Connected) => match body.get("server").and_then(Value::as_u64) {
                    Some(server) => self.accepted(server as u32, h, &body),
                    None => {
                        if let Some(inbox) = &inbox {
                            let sid = body["session"]["sessionID"].as_str().map(str::to_owned);
                            let mut resumed = false;
                            inbox.update(|s| {
                                resumed = s.session_id.is_some() && s.session_id == sid;
                                s.session_id = sid;
                                s.connected = true;
                                s.connects += 1;
                                s.last_error = None;
                            });
                            queue(h, Event::Connect { resumed }, bytes);
                        }
                    }
                },
                Some(Kind::Disconnected) => {
                    let Some(inbox) = &inbox else { continue };
                    let again = body.as_bool().unwrap_or(false);
                    let was_connected = inbox.status.borrow().connected;
                    inbox.update(|s| {
                        s.connected = false;
                        if !was_connected && !again {
                            s.gave_up += 1;
                        }
                    });
                    if was_connected {
                        queue(h, Event::Disconnect { reconnecting: again }, bytes);
                    }
                    if !inbox.is_client() {
                        // A server-side connection never comes back: its session
                        // resumes on a new connection, which `accept` returns.
                        self.remove_inbox(h);
                        ended.push(inbox.clone());
                    }
                }
                Some(Kind::Error) => {
                    if let Some(server) = lock(&self.servers).get(&h).cloned() {
                        server.failed(error_of(&body, ErrorKind::Listen));
                    } else if let Some(inbox) = &inbox {
                        if !inbox.status.borrow().connected {
                            inbox.update(|s| s.last_error = Some(error_of(&body, ErrorKind::Connect)));
                        }
                        queue(h, Event::error(&body), bytes);
                    }
                }
                Some(Kind::Reconnecting) => {
                    let attempt = body["attempt"].as_u64().unwrap_or(0).min(u32::MAX as u64) as u32;
                    let ms = body["delay"].as_f64().unwrap_or(0.0);
                    let delay = Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default();
                    queue(h, Event::Reconnecting { attempt, delay }, bytes);
                }
                Some(Kind::Stopped) => {
                    if let Some(inbox) = &inbox {
                        inbox.update(|s| {
                            s.stops += 1;
                            s.stopped = true;
                        });
                    }
                }
                Some(Kind::Persisted) => {
                    // A server's `send_to` / `broadcast`: `[server, PERSISTED,
                    // seq]`, or with the failure, which `swap_remove` moved
                    // to index 2.
                    if let Some(s) = seq() {
                        let result = match entry.get(2) {
                            Some(info @ Value::Object(_)) => Err(error_of(info, ErrorKind::NoSession)),
                            _ => Ok(()),
                        };
                        self.settle_ack(s, result);
                    }
                }
                Some(Kind::Listening) => {
                    if let Some(server) = lock(&self.servers).get(&h).cloned() {
                        server.listening(&body);
                    }
                }
                Some(Kind::Closed) => {
                    if let Some(server) = lock(&self.servers).get(&h).cloned() {
                        server.closed();
                    }
                }
                // Node-only kinds (JS streams and stores, reads on Node's
                // loop, DEBUG lines) and accept notices: nothing to do here.
                _ => {}
            }
        }
        for (inbox, items) in groups.into_values() {
            inbox.append(items);
        }
        for inbox in ended {
            inbox.close();
        }
        self.flow.routed.fetch_max(gen, Ordering::AcqRel);
        for inbox in touched {
            inbox.settle(gen);
        }
    }

    /// A server-side connection completed its handshake: a `Connection`
    /// for `accept()`, with an inbox from now on.
    fn accepted(&'static self, server: u32, handle: u32, info: &Value) {
        let Some(server) = lock(&self.servers).get(&server).cloned() else {
            // Its Server was dropped: nobody can accept this connection.
            self.engine.end(handle);
            return;
        };
        // Still this link's own handle (routes move only older handles).
        let Some(link) = self.engine.shared().link(handle).filter(|l| l.handle == handle) else { return };
        let inbox = Inbox::new(&link, self.flow.clone(), false);
        inbox.update(|s| {
            s.connected = true;
            s.connects = 1;
        });
        self.add_inbox(handle, inbox.clone());
        server.push(Connection::accepted(self, handle, inbox, info));
    }
}

fn error_of(body: &Value, kind: ErrorKind) -> Error {
    let message = body.get("message").and_then(Value::as_str).unwrap_or("uhura: error");
    Error::new(kind, message).with_code(body.get("code").and_then(Value::as_str).map(str::to_owned))
}
