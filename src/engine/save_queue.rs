//! Session saves (and destroys) that Redis could not take, kept in bounded
//! memory until it can: while Redis is down, restarting or failing over,
//! connected clients go on exchanging events and their sessions go on
//! changing; what the store could not write waits here, and a flusher task
//! writes it once Redis answers again.
//!
//! At most one write waits per session: a later save of the same session
//! replaces the queued one (only the newest copy is worth writing). All
//! queued writes together stay under `max_bytes`; past it the writes queued
//! (or last replaced) longest ago are dropped, and the save that went over
//! fails with an error naming the sessions dropped.
//!
//! A session with a queued write is written by the flusher only, never
//! directly, so an older copy can never land after a newer one: a new save
//! of it replaces the queued one and waits for the flusher's next try, and a
//! read of it (a resume) waits for that too, so it finds the newest copy.
//!
//! The flusher writes oldest first. On one Redis server a failure stands for
//! all (Redis is down): it pauses and tries the oldest again. On a Redis
//! Cluster a failure may be one master's, while the others serve: it goes on
//! with the next sessions, so those of healthy masters land instead of
//! waiting behind one whose master is down, and pauses only once every
//! write left has failed in that pass.

use super::redis_conn::{is_unavailable, Connector, OP_TIMEOUT};
use redis::Pipeline;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The default bound on the bytes of queued writes: thousands of typical
/// sessions, small beside a server's memory.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// What a queued write costs beyond its session's JSON (keys, commands).
const OVERHEAD: usize = 128;
/// The flusher's pause after a failed try, doubling up to the maximum;
/// a new save kicks it to try at once.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At most this many dropped session ids are named in an error.
const NAMED: usize = 5;

/// The queue of one store.
pub(crate) struct SaveQueue {
    shared: Arc<Shared>,
}

struct Shared {
    max_bytes: usize,
    state: Mutex<State>,
    /// Woken after each try of the flusher (landed or failed).
    tried: Notify,
    /// Wakes the flusher from its pause: a save is waiting on it.
    kick: Notify,
}

#[derive(Default)]
struct State {
    /// Per session id: the newest write waiting.
    entries: HashMap<String, Entry>,
    /// Session ids by when their write was queued or last replaced, oldest
    /// first: the order they are written in and dropped in.
    order: BTreeMap<u64, String>,
    /// Counts queue changes; an entry's `seq` is its key in `order`.
    seq: u64,
    /// Sum of the entries' `bytes`.
    bytes: usize,
    /// A flusher task is running.
    flushing: bool,
    /// Failed tries so far, and the last one's error.
    failures: u64,
    last_error: String,
    /// The store is a Redis Cluster: a failure is that write's, not all's.
    cluster: bool,
}

struct Entry {
    write: Pipeline,
    bytes: usize,
    seq: u64,
    /// Failed tries of this write, and the last one's error.
    failures: u64,
    last_error: String,
}

impl State {
    fn remove(&mut self, sid: &str) -> Option<Entry> {
        let e = self.entries.remove(sid)?;
        self.order.remove(&e.seq);
        self.bytes -= e.bytes;
        Some(e)
    }

    /// Queues `write` for `sid` (replacing its queued one), then drops the
    /// oldest writes until the queue fits in `max`. Returns the ids dropped
    /// (`sid` itself when its write alone is too big).
    fn put(&mut self, sid: &str, write: Pipeline, bytes: usize, max: usize) -> Vec<String> {
        self.remove(sid);
        if bytes > max {
            return vec![sid.to_owned()];
        }
        self.seq += 1;
        self.order.insert(self.seq, sid.to_owned());
        self.entries
            .insert(sid.to_owned(), Entry { write, bytes, seq: self.seq, failures: 0, last_error: String::new() });
        self.bytes += bytes;
        let mut dropped = Vec::new();
        while self.bytes > max {
            let Some((_, oldest)) = self.order.first_key_value() else { break };
            let oldest = oldest.clone();
            self.remove(&oldest);
            dropped.push(oldest);
        }
        dropped
    }
}

impl SaveQueue {
    pub(crate) fn new(max_bytes: usize) -> Self {
        SaveQueue {
            shared: Arc::new(Shared { max_bytes, state: Mutex::default(), tried: Notify::new(), kick: Notify::new() }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        super::delivery::lock(&self.shared.state)
    }

    /// Writes `write`, the save (or destroy) of session `sid` whose session
    /// JSON is `size` bytes: at once, or, while Redis is unavailable, queued
    /// for the flusher. An error says the write did not land (yet): queued,
    /// or refused by Redis, or dropped from a full queue.
    pub(crate) async fn write(&self, conn: &Connector, sid: &str, write: Pipeline, size: usize) -> Result<(), String> {
        let bytes = size + sid.len() + OVERHEAD;
        if self.state().entries.contains_key(sid) {
            // Behind a queued write of the same session: replace it, and
            // let the flusher (the only writer of queued sessions) land it.
            let dropped = self.state().put(sid, write, bytes, self.shared.max_bytes);
            if dropped.iter().any(|d| d == sid) {
                return Err(self.queued_error("an earlier save of the session is still queued", sid, &dropped));
            }
            self.start_flusher(conn);
            return match self.landed(sid).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.queued_error(&e, sid, &dropped)),
            };
        }
        match conn.run_pipe(&write).await {
            Ok(()) => Ok(()),
            Err(e) if is_unavailable(&e) => {
                let dropped = self.state().put(sid, write, bytes, self.shared.max_bytes);
                self.start_flusher(conn);
                Err(self.queued_error(&e.to_string(), sid, &dropped))
            }
            Err(e) => Err(format!("redis: {e}")),
        }
    }

    /// Until `sid` has no queued write: at once if it has none, else after
    /// the flusher's next try, bounded by the op timeout. Fails with the
    /// reason when the write is still queued.
    pub(crate) async fn landed(&self, sid: &str) -> Result<(), String> {
        let (failures, own_failures) = {
            let state = self.state();
            let Some(entry) = state.entries.get(sid) else { return Ok(()) };
            (state.failures, entry.failures)
        };
        self.shared.kick.notify_one();
        let wait = async {
            loop {
                let tried = self.shared.tried.notified();
                tokio::pin!(tried);
                // Registered before the check, so a try ending in between wakes it.
                tried.as_mut().enable();
                {
                    let state = self.state();
                    let Some(entry) = state.entries.get(sid) else { return Ok(()) };
                    if entry.failures > own_failures {
                        return Err(entry.last_error.clone());
                    }
                    // On one server, any failed try says Redis is down.
                    if !state.cluster && state.failures > failures {
                        return Err(state.last_error.clone());
                    }
                }
                tried.await;
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", OP_TIMEOUT.as_secs_f32())),
        }
    }

    fn queued_error(&self, cause: &str, sid: &str, dropped: &[String]) -> String {
        let (queued, bytes) = {
            let state = self.state();
            (state.entries.len(), state.bytes)
        };
        let max = self.shared.max_bytes;
        let mut msg = format!("redis: {cause}");
        if dropped.iter().any(|d| d == sid) {
            msg += &format!("; session {sid} not queued: its save is larger than maxQueuedBytes ({max})");
        } else {
            msg += &format!(
                "; session {sid}'s save is queued until Redis is back ({queued} queued, {bytes} of {max} bytes)"
            );
        }
        let others: Vec<&String> = dropped.iter().filter(|d| *d != sid).collect();
        if !others.is_empty() {
            // Other sessions' ids are secrets of theirs: this message goes
            // to this connection (and the admin endpoint's recent errors).
            let named: Vec<String> = others.iter().take(NAMED).map(|s| redacted(s)).collect();
            let more = match others.len().saturating_sub(NAMED) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            msg += &format!(
                "; over maxQueuedBytes, the oldest queued saves were dropped, of sessions {}{more}",
                named.join(", ")
            );
        }
        msg
    }

    /// Starts the flusher unless one is running.
    fn start_flusher(&self, conn: &Connector) {
        {
            let mut state = self.state();
            state.cluster = conn.is_cluster();
            if state.entries.is_empty() || std::mem::replace(&mut state.flushing, true) {
                return;
            }
        }
        // Weak: a store dropped while Redis is still down takes its queue
        // with it, and the flusher ends.
        tokio::spawn(flush(Arc::downgrade(&self.shared), conn.clone()));
    }
}

/// What the flusher does next.
enum Next {
    /// Write this session's queued write (its `seq`).
    Write(Pipeline, String, u64),
    /// Every write left failed in this pass.
    PassFailed,
    /// Nothing is queued.
    Done,
}

/// Writes the queued writes, oldest first, until none is left; after a
/// failure (on a cluster: once every write left failed in this pass), waits
/// (less when kicked) and tries again.
async fn flush(queue: Weak<Shared>, conn: Connector) {
    let mut backoff = MIN_BACKOFF;
    // On a cluster, the `seq` of the last write that failed in this pass:
    // the pass goes on after it (writes queue in `seq` order), and a failed
    // write waits for the next pass. 0: a pass starts at the oldest.
    let mut after = 0;
    loop {
        let Some(shared) = queue.upgrade() else { return };
        let next = {
            let mut state = super::delivery::lock(&shared.state);
            let next = state.order.range(after + 1..).next().map(|(&seq, sid)| (seq, sid.clone()));
            match next {
                Some((seq, sid)) => Next::Write(state.entries[&sid].write.clone(), sid, seq),
                None if state.order.is_empty() => {
                    state.flushing = false;
                    Next::Done
                }
                None => Next::PassFailed,
            }
        };
        let (write, sid, seq) = match next {
            Next::Write(write, sid, seq) => (write, sid, seq),
            Next::Done => {
                shared.tried.notify_waiters();
                return;
            }
            Next::PassFailed => {
                // Every write left failed in this pass: pause, start over.
                after = 0;
                let _ = tokio::time::timeout(backoff, shared.kick.notified()).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let result = conn.run_pipe(&write).await;
        let failed = {
            let mut state = super::delivery::lock(&shared.state);
            match result {
                // Replaced meanwhile: the newer write is still to go.
                Ok(()) if state.entries.get(&sid).is_some_and(|e| e.seq == seq) => {
                    state.remove(&sid);
                    false
                }
                Ok(()) => false,
                Err(e) => {
                    let msg = e.to_string();
                    state.failures += 1;
                    state.last_error.clone_from(&msg);
                    let current = state.entries.get_mut(&sid).filter(|entry| entry.seq == seq).map(|entry| {
                        entry.failures += 1;
                        entry.last_error = msg;
                    });
                    // A write Redis refuses (not one it cannot take now)
                    // would block the queue for good.
                    if current.is_some() && !is_unavailable(&e) {
                        state.remove(&sid);
                    }
                    true
                }
            }
        };
        shared.tried.notify_waiters();
        if failed && conn.is_cluster() {
            // Maybe only this write's master is down: the next one.
            after = seq;
        } else if failed {
            let _ = tokio::time::timeout(backoff, shared.kick.notified()).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
    }
}

/// A session id as a message to someone else may show it: its first six
/// characters, enough to tell sessions apart in a log.
fn redacted(sid: &str) -> String {
    match sid.char_indices().nth(6) {
        Some((i, _)) if sid.chars().count() > 8 => format!("{}…", &sid[..i]),
        _ => sid.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> Pipeline {
        redis::pipe()
    }

    #[test]
    fn one_write_per_session_the_newest() {
        let mut s = State::default();
        assert!(s.put("a", write(), 10, 100).is_empty());
        assert!(s.put("b", write(), 10, 100).is_empty());
        assert!(s.put("a", write(), 30, 100).is_empty());
        assert_eq!((s.entries.len(), s.bytes), (2, 40));
        // "a" was replaced last: "b" is now the oldest.
        assert_eq!(s.order.values().collect::<Vec<_>>(), ["b", "a"]);
    }

    #[test]
    fn past_the_bound_the_oldest_are_dropped() {
        let mut s = State::default();
        for sid in ["a", "b", "c"] {
            assert!(s.put(sid, write(), 30, 100).is_empty());
        }
        assert_eq!(s.put("d", write(), 50, 100), ["a", "b"]);
        assert_eq!((s.entries.len(), s.bytes), (2, 80));
        assert_eq!(s.put("e", write(), 101, 100), ["e"], "too big alone: not queued");
        assert_eq!((s.entries.len(), s.bytes), (2, 80));
        assert!(s.remove("c").is_some() && s.remove("d").is_some());
        assert_eq!((s.entries.len(), s.bytes, s.order.len()), (0, 0, 0));
    }
}
