//! Where a server keeps sessions between connections.

use crate::protocol::session::{cookie_max_age, Session};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
    pub seen: Vec<(String, u64)>,
}

impl DeliveryDelta {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.seen.is_empty()
    }
}

/// The connect-style store interface (`get`, `set`, `destroy`), async.
pub trait SessionStore: Send + Sync {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>>;
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()>;
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()>;

    /// Whether this store keeps delivery state (shared stores do; a store
    /// inside one process needs not, the server keeps it in memory).
    fn keeps_delivery(&self) -> bool {
        false
    }
    fn load_delivery<'a>(&'a self, _sid: &'a str) -> StoreFuture<'a, DeliveryState> {
        Box::pin(async { Ok(DeliveryState::default()) })
    }
    fn save_delivery<'a>(&'a self, _sid: &'a str, _delta: DeliveryDelta) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The default store: in memory, with an idle expiry and a cap on the
/// number of sessions (oldest idle evicted first), so a long-running server
/// does not grow without bound. A session whose cookie has a `maxAge` also
/// expires `maxAge` after its last save, as in connect's MemoryStore.
pub struct MemoryStore {
    ttl: Duration,
    max_sessions: usize,
    map: Mutex<HashMap<String, Entry>>,
}

/// A stored session, its last use, and its cookie's expiry.
type Entry = (Session, Instant, Option<Instant>);

impl MemoryStore {
    pub fn new(ttl: Duration, max_sessions: usize) -> Self {
        MemoryStore { ttl, max_sessions: max_sessions.max(1), map: Mutex::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        super::delivery::lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_now(&self, sid: &str) -> Option<Session> {
        let mut map = super::delivery::lock(&self.map);
        let now = Instant::now();
        match map.get_mut(sid) {
            Some((_, seen, expires)) if now.duration_since(*seen) > self.ttl || expires.is_some_and(|at| now >= at) => {
                map.remove(sid);
                None
            }
            Some((s, seen, _)) => {
                *seen = now;
                Some(s.clone())
            }
            None => None,
        }
    }

    fn set_now(&self, sid: &str, session: Session) {
        let mut map = super::delivery::lock(&self.map);
        let now = Instant::now();
        if !map.contains_key(sid) && map.len() >= self.max_sessions {
            let ttl = self.ttl;
            map.retain(|_, (_, seen, expires)| now.duration_since(*seen) <= ttl && expires.is_none_or(|at| now < at));
            if map.len() >= self.max_sessions {
                // Evict the least recently used tenth in one pass, so a full
                // store does not pay a scan on every insert.
                let mut ages: Vec<(Instant, String)> = map.iter().map(|(k, (_, t, _))| (*t, k.clone())).collect();
                ages.sort_unstable();
                let n = (self.max_sessions / 10).max(1);
                for (_, k) in ages.into_iter().take(n) {
                    map.remove(&k);
                }
            }
        }
        let expires = cookie_max_age(&session).map(|ms| now + Duration::from_millis(ms.max(0) as u64));
        map.insert(sid.to_owned(), (session, now, expires));
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(Duration::from_secs(24 * 3600), 1_000_000)
    }
}

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        let r = self.get_now(sid);
        Box::pin(async move { Ok(r) })
    }
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()> {
        self.set_now(sid, session);
        Box::pin(async { Ok(()) })
    }
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        super::delivery::lock(&self.map).remove(sid);
        Box::pin(async { Ok(()) })
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
}
