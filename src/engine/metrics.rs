//! Counters for operators (`server.metrics()`, `client.stats()`, the
//! Prometheus text of lib/metrics.js). They live here, in Rust, next to the
//! work they count: relaxed atomic adds, made once per read, write or
//! pumped batch rather than per event, so counting costs nothing the hot
//! path would notice. Reading them (a scrape) is what takes locks.
//!
//! A server's `ServerMetrics` is shared (`Arc`) by the server and each of
//! its links; every link also keeps its own `LinkMetrics` for the
//! connection list and a client's `stats()`. Gauges (open connections,
//! pending events) are not counted: a snapshot reads them from the state
//! itself (`snapshot.rs`).

use super::delivery::lock;
use super::store::{DeliveryDelta, DeliveryState, MemoryStore, SessionStore, StoreFuture};
use crate::protocol::session::Session;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many recent errors a server remembers for its dashboard.
const RECENT_ERRORS: usize = 20;

/// The error code counted for errors that carry none: those of the
/// protocol itself (malformed input, handshake and heartbeat timeouts).
pub(crate) const PROTOCOL_ERROR: &str = "protocol";

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()`.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One server's counters, totals since it was created.
#[derive(Default)]
pub(crate) struct ServerMetrics {
    /// Connections accepted (including those that never finished a handshake).
    pub accepted: AtomicU64,
    /// Connections closed unread over `maxConnections`.
    pub refused: AtomicU64,
    /// Handshakes that started a new session.
    pub handshakes_new: AtomicU64,
    /// Handshakes that resumed a stored session.
    pub handshakes_resumed: AtomicU64,
    /// Application events received and sent (sends, counted when the
    /// application makes them, not each time one is resent).
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    /// Bytes read from and written to connections (the protocol stream, under TLS if any).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Pending events dropped (queue limits, refusals, sessions that did not return).
    pub drops: AtomicU64,
    /// Connections that failed because their peer went silent.
    pub heartbeat_timeouts: AtomicU64,
    /// Session store calls, and those that failed.
    pub store_operations: AtomicU64,
    pub store_failures: AtomicU64,
    /// Errors by code, and the latest few; only touched when one happens.
    errors: Mutex<ErrorLog>,
}

/// Errors a server has seen.
#[derive(Default)]
struct ErrorLog {
    by_code: BTreeMap<String, u64>,
    recent: VecDeque<RecentError>,
}

/// One of the latest errors, for the dashboard.
#[derive(Clone)]
pub(crate) struct RecentError {
    /// When, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The connection (its handle).
    pub connection: u32,
    pub code: String,
    pub message: String,
}

impl ServerMetrics {
    /// Counts an error of connection `connection`.
    pub(crate) fn error(&self, connection: u32, code: Option<&str>, message: &str) {
        let code = code.unwrap_or(PROTOCOL_ERROR);
        let mut log = lock(&self.errors);
        *log.by_code.entry(code.to_owned()).or_default() += 1;
        if log.recent.len() == RECENT_ERRORS {
            log.recent.pop_front();
        }
        log.recent.push_back(RecentError {
            at: now_ms(),
            connection,
            code: code.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Errors so far by code, and the latest ones, oldest first.
    pub(crate) fn errors(&self) -> (BTreeMap<String, u64>, Vec<RecentError>) {
        let log = lock(&self.errors);
        (log.by_code.clone(), log.recent.iter().cloned().collect())
    }
}

/// One link's counters. A client's survive its reconnections.
#[derive(Default)]
pub(crate) struct LinkMetrics {
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Transports opened (a client's first connection and its reconnections).
    pub connects: AtomicU64,
    /// When the current transport opened (ms since the epoch); 0: none is open.
    pub connected_since: AtomicU64,
    /// When bytes last arrived or the application last sent (ms since the epoch).
    pub last_activity: AtomicU64,
    /// The server's totals, for a server-side link.
    pub server: Option<Arc<ServerMetrics>>,
}

impl LinkMetrics {
    pub(crate) fn new(server: Option<Arc<ServerMetrics>>) -> Self {
        LinkMetrics { server, ..LinkMetrics::default() }
    }

    /// A transport opened.
    pub(crate) fn opened(&self) {
        let now = now_ms();
        self.connects.fetch_add(1, Relaxed);
        self.connected_since.store(now, Relaxed);
        self.last_activity.store(now, Relaxed);
    }

    /// The transport closed.
    pub(crate) fn closed(&self) {
        self.connected_since.store(0, Relaxed);
    }

    /// `n` bytes were read.
    pub(crate) fn received_bytes(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
        self.last_activity.store(now_ms(), Relaxed);
        if let Some(s) = &self.server {
            s.bytes_in.fetch_add(n as u64, Relaxed);
        }
    }

    /// `n` bytes were written.
    pub(crate) fn sent_bytes(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.bytes_out.fetch_add(n as u64, Relaxed);
        if let Some(s) = &self.server {
            s.bytes_out.fetch_add(n as u64, Relaxed);
        }
    }

    /// A pumped batch held `n` application events.
    pub(crate) fn received_events(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.events_in.fetch_add(n, Relaxed);
        if let Some(s) = &self.server {
            s.events_in.fetch_add(n, Relaxed);
        }
    }

    /// The application sent `n` events in one call.
    pub(crate) fn sent_events(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.events_out.fetch_add(n, Relaxed);
        self.last_activity.store(now_ms(), Relaxed);
        if let Some(s) = &self.server {
            s.events_out.fetch_add(n, Relaxed);
        }
    }

    /// The server-wide counter `pick` gets `n` more (no-op for a client).
    pub(crate) fn count(&self, pick: impl Fn(&ServerMetrics) -> &AtomicU64, n: u64) {
        if let Some(s) = self.server.as_ref().filter(|_| n > 0) {
            pick(s).fetch_add(n, Relaxed);
        }
    }
}

/// A server's session store, counting its calls and failures. The memory
/// store is also asked how many sessions it holds.
pub(crate) struct CountedStore {
    inner: Arc<dyn SessionStore>,
    memory: Option<Arc<MemoryStore>>,
    metrics: Arc<ServerMetrics>,
}

impl CountedStore {
    pub(crate) fn new(
        inner: Arc<dyn SessionStore>,
        memory: Option<Arc<MemoryStore>>,
        metrics: Arc<ServerMetrics>,
    ) -> Self {
        CountedStore { inner, memory, metrics }
    }

    /// Sessions stored, where the store can tell (the memory store).
    pub(crate) fn stored(&self) -> Option<usize> {
        self.memory.as_ref().map(|m| m.len())
    }

    fn counted<'a, T: Send + 'a>(&'a self, op: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        self.metrics.store_operations.fetch_add(1, Relaxed);
        Box::pin(async move {
            let r = op.await;
            if r.is_err() {
                self.metrics.store_failures.fetch_add(1, Relaxed);
            }
            r
        })
    }
}

// Every method of `SessionStore` is forwarded: one left to its default
// here would change what the wrapped store does.
impl SessionStore for CountedStore {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        self.counted(self.inner.get(sid))
    }
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()> {
        self.counted(self.inner.set(sid, session))
    }
    fn set_shared<'a>(&'a self, sid: &'a Arc<str>, session: Session) -> StoreFuture<'a, ()> {
        self.counted(self.inner.set_shared(sid, session))
    }
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        self.counted(self.inner.destroy(sid))
    }
    fn saves_changes(&self) -> bool {
        self.inner.saves_changes()
    }
    fn update<'a>(&'a self, sid: &'a str, changes: Session) -> StoreFuture<'a, bool> {
        self.counted(self.inner.update(sid, changes))
    }
    fn keeps_delivery(&self) -> bool {
        self.inner.keeps_delivery()
    }
    fn load_delivery<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, DeliveryState> {
        self.counted(self.inner.load_delivery(sid))
    }
    fn save_delivery<'a>(&'a self, sid: &'a str, delta: DeliveryDelta) -> StoreFuture<'a, ()> {
        self.counted(self.inner.save_delivery(sid, delta))
    }
    fn session_text(&self, sid: &str) -> Option<Arc<str>> {
        self.inner.session_text(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_store_calls_and_failures_and_asks_the_memory_store_its_size() {
        let metrics = Arc::new(ServerMetrics::default());
        let memory = Arc::new(MemoryStore::new(Duration::from_secs(60), 10));
        let store = CountedStore::new(memory.clone(), Some(memory), metrics.clone());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            store.set("a", Session::new()).await.unwrap();
            assert!(store.get("a").await.unwrap().is_some());
            store.destroy("a").await.unwrap();
            // Forwarded as itself: the memory store keeps this id as its key.
            let sid: Arc<str> = Arc::from("b");
            store.set_shared(&sid, Session::new()).await.unwrap();
            assert_eq!(Arc::strong_count(&sid), 2);
            store.destroy("b").await.unwrap();
        });
        assert_eq!(metrics.store_operations.load(Relaxed), 5);
        assert_eq!(metrics.store_failures.load(Relaxed), 0);
        assert_eq!(store.stored(), Some(0));
    }

    #[test]
    fn keeps_errors_by_code_and_the_latest_few() {
        let m = ServerMetrics::default();
        for i in 0..(RECENT_ERRORS + 5) {
            m.error(i as u32, if i % 2 == 0 { Some("ESTORE") } else { None }, "boom");
        }
        let (by_code, recent) = m.errors();
        assert_eq!(by_code["ESTORE"], 13);
        assert_eq!(by_code[PROTOCOL_ERROR], 12);
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].connection, 5);
    }

    #[test]
    fn a_link_adds_to_its_server() {
        let server = Arc::new(ServerMetrics::default());
        let link = LinkMetrics::new(Some(server.clone()));
        link.received_bytes(10);
        link.sent_bytes(7);
        link.received_events(3);
        link.sent_events(2);
        link.count(|s| &s.drops, 4);
        assert_eq!(
            [server.bytes_in.load(Relaxed), server.bytes_out.load(Relaxed), server.events_in.load(Relaxed)],
            [10, 7, 3]
        );
        assert_eq!([server.events_out.load(Relaxed), server.drops.load(Relaxed)], [2, 4]);
        assert_eq!(link.bytes_in.load(Relaxed), 10);
    }
}
