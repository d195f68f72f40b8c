//! Where a server keeps sessions between connections.

use crate::protocol::session::{cookie_max_age, member_len, Session};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a store operation returns: a boxed future, failing with a message.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Delivery state kept beside a session, so that whichever server resumes
/// it can resend what the client never acknowledged and suppress what the
/// client resends.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryState {
    /// Outbound events not yet acknowledged: (message id, argument JSON), oldest first.
    pub outbox: Vec<(String, String)>,
    /// Per client sender id prefix: the highest sequence number delivered.
    pub seen: Vec<(String, u64)>,
}

/// Changes to a session's `DeliveryState`, applied in one store call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryDelta {
    /// Outbound events to keep: (message id, argument JSON), in send order.
    pub add: Vec<(String, String)>,
    /// Message ids acknowledged (or dropped): no longer kept.
    pub remove: Vec<String>,
    /// Per sender id prefix: a new highest sequence number delivered.
    pub seen: Vec<(String, u64)>,
}

impl DeliveryDelta {
    /// Nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.seen.is_empty()
    }
}

/// The connect-style store interface (`get`, `set`, `destroy`), async.
pub trait SessionStore: Send + Sync {
    /// The stored session, or `None` for an unknown (or expired) id.
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>>;
    /// Stores the whole session under `sid`.
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()>;
    /// `set`, with the id as the connection keeps it: a store that keeps ids
    /// in this process keeps this one as its key (the memory store), not a
    /// copy of its text, so an idle session's id is kept once.
    fn set_shared<'a>(&'a self, sid: &'a Arc<str>, session: Session) -> StoreFuture<'a, ()> {
        self.set(sid, session)
    }
    /// Removes the session (and its delivery state, if kept).
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()>;

    /// Whether `update` can save changed keys instead of the whole session.
    fn saves_changes(&self) -> bool {
        false
    }
    /// Sets `changes` in the stored session; false if it holds no such
    /// session (expired, evicted), and the caller saves the whole one.
    fn update<'a>(&'a self, _sid: &'a str, _changes: Session) -> StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }

    /// Whether this store keeps delivery state (shared stores do; a store
    /// inside one process needs not, the server keeps it in memory).
    fn keeps_delivery(&self) -> bool {
        false
    }
    /// The delivery state kept for `sid` (empty when there is none).
    fn load_delivery<'a>(&'a self, _sid: &'a str) -> StoreFuture<'a, DeliveryState> {
        Box::pin(async { Ok(DeliveryState::default()) })
    }
    /// Applies `delta` to the delivery state kept for `sid`.
    fn save_delivery<'a>(&'a self, _sid: &'a str, _delta: DeliveryDelta) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// The JSON text of session `sid` as this store keeps it in this
    /// process, if it does (the memory store): a connection whose own copy
    /// is the same text shares it (`Peer::share_session_text`), so an idle
    /// session is kept once, not twice. Does not count as a use. Called
    /// under a peer lock: a leaf lock at most.
    fn session_text(&self, _sid: &str) -> Option<Arc<str>> {
        None
    }
}

/// The default store: in memory, with an idle expiry and caps on the
/// number of sessions and on their bytes (least recently used evicted
/// first), so a long-running server does not grow without bound. A session
/// whose cookie has a `maxAge` also expires `maxAge` after its last save, as
/// in connect's MemoryStore.
pub(crate) struct MemoryStore {
    /// In milliseconds, as the entries' times.
    ttl: u64,
    max_sessions: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// What the entries' times count from.
    epoch: Instant,
}

#[derive(Default)]
struct Inner {
    /// Keyed by the id its connection keeps (`set_shared`) when it was
    /// saved by one, else by a copy.
    map: HashMap<Arc<str>, Entry>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
}

struct Entry {
    /// The session as JSON text: a parsed `Session` (a `preserve_order`
    /// map holding the cookie's map) costs about ten times its text, and
    /// every connected session has one here, which its peer shares while
    /// its own copy is the same text (`session_text`).
    json: Arc<str>,
    /// Times are milliseconds since the store's `epoch`, not `Instant`s
    /// (16 bytes each): every session has an entry, and the map's table
    /// has room for up to twice as many.
    last_used: u64,
    /// The cookie's expiry, if it has a `maxAge` (else `NEVER`).
    expires: u64,
    /// The session's size as JSON.
    bytes: usize,
}

/// An `Entry::expires` that never comes.
const NEVER: u64 = u64::MAX;

impl Entry {
    fn expired(&self, now: u64, ttl: u64) -> bool {
        now.saturating_sub(self.last_used) > ttl || now >= self.expires
    }
}

impl Inner {
    fn remove(&mut self, sid: &str) {
        if let Some(e) = self.map.remove(sid) {
            self.bytes -= e.bytes;
        }
    }

    /// Evicts the least recently used entries until `fits` holds.
    fn evict_oldest(&mut self, fits: impl Fn(&Inner) -> bool) {
        let mut ages: Vec<(u64, Arc<str>)> = self.map.iter().map(|(k, e)| (e.last_used, k.clone())).collect();
        ages.sort_unstable();
        for (_, k) in ages {
            if fits(self) {
                break;
            }
            self.remove(&k);
        }
    }
}

impl MemoryStore {
    pub(crate) fn new(ttl: Duration, max_sessions: usize) -> Self {
        MemoryStore {
            ttl: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            max_sessions: max_sessions.max(1),
            max_bytes: usize::MAX,
            inner: Mutex::default(),
            epoch: Instant::now(),
        }
    }

    /// Now, as the entries count time.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When a session saved now expires by its cookie's `maxAge`.
    fn expiry(now: u64, session: &Session) -> u64 {
        cookie_max_age(session).map_or(NEVER, |ms| now.saturating_add(ms.max(0) as u64))
    }

    /// Caps the bytes of all sessions together.
    pub(crate) fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sessions stored (expired ones until something looks them up).
    pub(crate) fn len(&self) -> usize {
        super::delivery::lock(&self.inner).map.len()
    }

    /// Bytes of all stored sessions (for tests of the caps).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        super::delivery::lock(&self.inner).bytes
    }

    fn get_now(&self, sid: &str) -> Option<Session> {
        let mut inner = super::delivery::lock(&self.inner);
        let now = self.now();
        match inner.map.get_mut(sid) {
            Some(e) if e.expired(now, self.ttl) => {
                inner.remove(sid);
                None
            }
            Some(e) => {
                e.last_used = now;
                Some(parse(&e.json))
            }
            None => None,
        }
    }

    /// Sets `changes` in a stored session, measuring only those keys.
    fn update_now(&self, sid: &str, changes: Session) -> bool {
        let mut inner = super::delivery::lock(&self.inner);
        let now = self.now();
        let Some(e) = inner.map.get_mut(sid).filter(|e| !e.expired(now, self.ttl)) else { return false };
        let mut session = parse(&e.json);
        let mut bytes = e.bytes;
        for (k, v) in changes {
            let old = session.get(&k).map_or(0, |old| member_len(&k, old));
            bytes = (bytes + member_len(&k, &v)).saturating_sub(old);
            session.insert(k, v);
        }
        e.json = to_json(&session);
        e.last_used = now;
        e.expires = Self::expiry(now, &session);
        let grown = bytes as isize - e.bytes as isize;
        e.bytes = bytes;
        inner.bytes = (inner.bytes as isize + grown) as usize;
        true
    }

    fn set_now(&self, sid: &str, session: Session) {
        self.set_keyed(sid.into(), session);
    }

    /// `set_now`, keeping `sid` itself as the key.
    fn set_keyed(&self, sid: Arc<str>, session: Session) {
        let mut inner = super::delivery::lock(&self.inner);
        let now = self.now();
        // Removed rather than overwritten: an insert over an existing entry
        // would keep the old key, not the one given.
        inner.remove(&sid);
        let bytes = crate::protocol::session::size(&session);
        if inner.map.len() >= self.max_sessions || inner.bytes + bytes > self.max_bytes {
            let ttl = self.ttl;
            let expired: Vec<Arc<str>> =
                inner.map.iter().filter(|(_, e)| e.expired(now, ttl)).map(|(k, _)| k.clone()).collect();
            for k in expired {
                inner.remove(&k);
            }
            // Down to nine tenths of a cap in one pass, so a full store does
            // not pay a scan on every insert.
            let (max_n, max_b) = (self.max_sessions, self.max_bytes);
            if inner.map.len() >= max_n {
                inner.evict_oldest(|i| i.map.len() < max_n - max_n / 10);
            }
            if inner.bytes + bytes > max_b {
                inner.evict_oldest(|i| i.bytes + bytes <= max_b - max_b / 10);
            }
        }
        let expires = Self::expiry(now, &session);
        inner.bytes += bytes;
        inner.map.insert(sid, Entry { json: to_json(&session), last_used: now, expires, bytes });
    }
}

/// A session as the JSON text an `Entry` keeps.
fn to_json(session: &Session) -> Arc<str> {
    serde_json::to_string(session).unwrap_or_else(|_| "{}".into()).into()
}

/// An `Entry`'s session; its text is always one `to_json` wrote.
fn parse(json: &str) -> Session {
    serde_json::from_str(json).unwrap_or_default()
}

/// How long an idle session stays in the memory store by default.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many sessions the memory store holds at most by default.
pub const DEFAULT_MAX_SESSIONS: usize = 1_000_000;

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        let r = self.get_now(sid);
        Box::pin(async move { Ok(r) })
    }
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()> {
        self.set_now(sid, session);
        Box::pin(async { Ok(()) })
    }
    fn set_shared<'a>(&'a self, sid: &'a Arc<str>, session: Session) -> StoreFuture<'a, ()> {
        self.set_keyed(sid.clone(), session);
        Box::pin(async { Ok(()) })
    }
    fn saves_changes(&self) -> bool {
        true
    }
    fn update<'a>(&'a self, sid: &'a str, changes: Session) -> StoreFuture<'a, bool> {
        let applied = self.update_now(sid, changes);
        Box::pin(async move { Ok(applied) })
    }
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        super::delivery::lock(&self.inner).remove(sid);
        Box::pin(async { Ok(()) })
    }
    fn session_text(&self, sid: &str) -> Option<Arc<str>> {
        super::delivery::lock(&self.inner).map.get(sid).map(|e| e.json.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sess(v: i64) -> Session {
        let mut s = Session::new();
        s.insert("v".into(), v.into());
        s
    }

    #[test]
    fn expires_idle_sessions() {
        let store = MemoryStore::new(Duration::from_millis(30), 10);
        store.set_now("a", sess(1));
        assert_eq!(store.get_now("a"), Some(sess(1)));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(store.get_now("a"), None);
    }

    #[test]
    fn a_ttl_or_max_age_too_long_to_count_never_expires() {
        let store = MemoryStore::new(Duration::MAX, 10);
        let mut s = sess(1);
        s.insert("cookie".into(), serde_json::json!({"originalMaxAge": 9.0e18, "expires": null}));
        store.set_now("a", s.clone());
        assert_eq!(store.get_now("a"), Some(s));
        assert!(std::mem::size_of::<Entry>() <= 40, "an entry per session: kept small");
    }

    #[test]
    fn expires_sessions_max_age_after_their_last_save() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        let mut s = sess(1);
        s.insert("cookie".into(), serde_json::json!({"originalMaxAge": 300, "expires": null}));
        store.set_now("a", s.clone());
        std::thread::sleep(Duration::from_millis(200));
        assert!(store.get_now("a").is_some(), "a read does not slide the expiry, a save does");
        store.set_now("a", s);
        std::thread::sleep(Duration::from_millis(200));
        assert!(store.get_now("a").is_some());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(store.get_now("a"), None);
    }

    #[test]
    fn caps_the_number_of_sessions_evicting_the_oldest() {
        let store = MemoryStore::new(Duration::from_secs(60), 20);
        for i in 0..20 {
            store.set_now(&format!("s{i}"), sess(i));
            std::thread::sleep(Duration::from_millis(1));
        }
        store.get_now("s0"); // touched: no longer the oldest
        store.set_now("new", sess(99));
        assert!(store.len() <= 20);
        assert!(store.get_now("s0").is_some());
        assert!(store.get_now("s1").is_none());
        assert!(store.get_now("new").is_some());
    }

    #[test]
    fn caps_the_bytes_of_all_sessions_evicting_the_oldest() {
        let big = |c: &str| {
            let mut s = Session::new();
            s.insert("blob".into(), c.repeat(1000).into());
            s
        };
        let store = MemoryStore::new(Duration::from_secs(60), 1000).with_max_bytes(10_000);
        for i in 0..9 {
            store.set_now(&format!("s{i}"), big("x"));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(store.len(), 9);
        store.get_now("s0"); // touched: no longer the oldest
        store.set_now("s1", big("y")); // replaced: counted once
        assert_eq!(store.len(), 9);
        store.set_now("new", big("z"));
        assert!(store.bytes() <= 10_000, "{} bytes", store.bytes());
        assert!(store.get_now("s0").is_some());
        assert!(store.get_now("s2").is_none(), "the least recently used went first");
        assert!(store.get_now("new").is_some());
        store.set_now("new", Session::new());
        assert!(store.bytes() < 9 * 1010);
    }

    #[test]
    fn updates_changed_keys_and_keeps_the_byte_count() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        assert!(!store.update_now("a", sess(1)), "no such session");
        store.set_now("a", sess(1));
        let mut changes = Session::new();
        changes.insert("w".into(), "x".repeat(100).into());
        changes.insert("v".into(), 2.into());
        assert!(store.update_now("a", changes));
        let now = store.get_now("a").unwrap();
        assert_eq!(now["v"], 2);
        assert_eq!(store.bytes(), crate::protocol::session::size(&now));
    }

    /// The result of a store call (the ones here are ready at once).
    fn done<T>(f: StoreFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f).unwrap()
    }

    #[test]
    fn keeps_the_connections_id_as_its_key() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        let sid: Arc<str> = Arc::from("abc");
        done(store.set_shared(&sid, sess(1)));
        assert_eq!(Arc::strong_count(&sid), 2, "the map keeps the given id, not a copy");
        assert_eq!(store.get_now("abc"), Some(sess(1)));
        assert!(store.update_now(&String::from("abc"), sess(2)));
        assert_eq!(store.get_now("abc"), Some(sess(2)));
        assert_eq!(Arc::strong_count(&sid), 2, "an update keeps the key");
        // Saved again by another connection of the session (a resume): its
        // id is the key now, and the first one's is let go.
        let again: Arc<str> = Arc::from("abc");
        done(store.set_shared(&again, sess(3)));
        assert_eq!((Arc::strong_count(&sid), Arc::strong_count(&again)), (1, 2));
        assert_eq!(store.len(), 1);
        // A new session id (a takeover without the secret, invalidateSession):
        // a second entry, each found by its text.
        let other: Arc<str> = Arc::from("def");
        done(store.set_shared(&other, sess(4)));
        drop(sid);
        assert_eq!(store.get_now("abc"), Some(sess(3)));
        assert_eq!(store.get_now("def"), Some(sess(4)));
        assert_eq!(store.session_text("def").as_deref(), Some(r#"{"v":4}"#));
        // A plain `set` of the same id replaces the entry and its key.
        store.set_now("def", sess(5));
        assert_eq!(Arc::strong_count(&other), 1);
        assert_eq!(store.get_now("def"), Some(sess(5)));
        done(store.destroy("abc"));
        assert_eq!(Arc::strong_count(&again), 1, "destroyed: the key let go");
        assert_eq!(store.get_now("abc"), None);
        assert_eq!(store.len(), 1);
    }

    /// A store without `set_shared` of its own gets `set` (JavaScript and
    /// Redis stores keep no ids in this process).
    #[test]
    fn set_shared_is_set_by_default() {
        struct Sets(Mutex<Vec<String>>);
        impl SessionStore for Sets {
            fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Session>> {
                Box::pin(async { Ok(None) })
            }
            fn set<'a>(&'a self, sid: &'a str, _: Session) -> StoreFuture<'a, ()> {
                self.0.lock().unwrap().push(sid.to_owned());
                Box::pin(async { Ok(()) })
            }
            fn destroy<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
                Box::pin(async { Ok(()) })
            }
        }
        let store = Sets(Mutex::default());
        done(store.set_shared(&Arc::from("xyz"), sess(1)));
        assert_eq!(*store.0.lock().unwrap(), ["xyz"]);
    }

    #[test]
    fn keeps_sessions_as_text_with_their_order_and_values() {
        let store = MemoryStore::new(Duration::from_secs(60), 10);
        let s: Session = serde_json::from_str(
            r#"{"z":1,"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"a":[1.5,-2,"\u00e9\n",null,{"y":true,"b":false}],"big":18446744073709551615,"m":-9223372036854775808,"f":0.1}"#,
        )
        .unwrap();
        store.set_now("a", s.clone());
        let got = store.get_now("a").unwrap();
        assert_eq!(got, s);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["z", "cookie", "a", "big", "m", "f"], "insertion order kept");
        let mut changes = Session::new();
        changes.insert("a".into(), "replaced".into());
        changes.insert("n".into(), serde_json::json!({"k": [1, 2]}));
        assert!(store.update_now("a", changes));
        let got = store.get_now("a").unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["z", "cookie", "a", "big", "m", "f", "n"]);
        assert_eq!(got["a"], "replaced");
        assert_eq!(got["n"]["k"][1], 2);
        assert_eq!(store.bytes(), crate::protocol::session::size(&got));
    }
}
