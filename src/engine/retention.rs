//! Server side: what a dropped connection leaves for its session's return.
//! A passive map: the closed connection stays registered (the application
//! may still send on the old connection object) and waits here, for a
//! bounded window, under its session id. What happens to it (taken over,
//! released) is `link/takeover.rs`'s business; this file knows nothing of
//! links (`T` is one).

use super::delivery::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Dropped connections by session id, and the open one of each session.
pub(crate) struct Retention<T> {
    /// How long a dropped connection is kept (`resumeWindow`).
    window: Duration,
    /// At most this many kept at once; past it the oldest is let go.
    max_sessions: usize,
    /// The dropped connections, by session id.
    map: Mutex<HashMap<String, Kept<T>>>,
    /// The connection currently serving each session, so a resume that
    /// arrives before the old connection was seen to drop can end it.
    /// Keyed by the peer's own id (`Peer::session_id_shared`), not a copy.
    active: Mutex<HashMap<Arc<str>, Weak<T>>>,
    /// Wakes a resume waiting for the old connection to be kept.
    changed: Notify,
}

/// A dropped connection waiting for its session's return.
struct Kept<T> {
    /// The connection.
    item: Arc<T>,
    /// When its window ends.
    until: Instant,
}

impl<T> Retention<T> {
    /// Keeps each dropped connection for `window`, at most `max_sessions`.
    pub(crate) fn new(window: Duration, max_sessions: usize) -> Arc<Self> {
        Arc::new(Retention {
            window,
            max_sessions: max_sessions.max(1),
            map: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// How long a dropped connection is kept.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// `item` serves session `sid` now (its handshake is done).
    pub(crate) fn set_active(&self, sid: &Arc<str>, item: &Arc<T>) {
        lock(&self.active).insert(Arc::clone(sid), Arc::downgrade(item));
    }

    /// The open connection serving `sid`, if it is still alive.
    pub(crate) fn active(&self, sid: &str) -> Option<Arc<T>> {
        lock(&self.active).get(sid).and_then(Weak::upgrade)
    }

    /// Resolves when a connection is kept (see `keep`).
    pub(crate) fn changed(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.changed.notified()
    }

    /// Keeps the closed `item` for session `sid`. An older one kept for the
    /// same session is handed to `merge(item, older)` first, under the map's
    /// lock, so no resume can take `item` before it holds what `older` had.
    /// Returns the ones that no longer fit (the oldest, when full).
    pub(crate) fn keep(
        &self,
        sid: String,
        item: Arc<T>,
        now: Instant,
        merge: impl FnOnce(&Arc<T>, &Arc<T>),
    ) -> Vec<Arc<T>> {
        {
            let mut active = lock(&self.active);
            if active.get(sid.as_str()).is_some_and(|w| w.upgrade().is_none_or(|l| Arc::ptr_eq(&l, &item))) {
                active.remove(sid.as_str());
            }
        }
        let mut out = Vec::new();
        let mut map = lock(&self.map);
        if let Some(older) = map.remove(&sid) {
            merge(&item, &older.item);
        }
        map.insert(sid, Kept { item, until: now + self.window });
        if map.len() > self.max_sessions {
            if let Some(oldest) = map.iter().min_by_key(|(_, k)| k.until).map(|(sid, _)| sid.clone()) {
                if let Some(k) = map.remove(&oldest) {
                    out.push(k.item);
                }
            }
        }
        drop(map);
        self.changed.notify_waiters();
        out
    }

    /// The dropped connection kept for `sid`, left in place.
    pub(crate) fn peek(&self, sid: &str) -> Option<Arc<T>> {
        lock(&self.map).get(sid).map(|k| k.item.clone())
    }

    /// Takes the dropped connection kept for `sid` out of the map.
    pub(crate) fn take(&self, sid: &str) -> Option<Arc<T>> {
        lock(&self.map).remove(sid).map(|k| k.item)
    }

    /// How many dropped connections are kept now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// The kept connections with their session ids and window ends (the
    /// admin endpoint's `/sessions`).
    pub(crate) fn kept(&self) -> Vec<(String, Arc<T>, Instant)> {
        lock(&self.map).iter().map(|(sid, k)| (sid.clone(), k.item.clone(), k.until)).collect()
    }

    /// Takes out every connection whose window has passed by `now`.
    pub(crate) fn expire(&self, now: Instant) -> Vec<Arc<T>> {
        let mut map = lock(&self.map);
        let expired: Vec<String> = map.iter().filter(|(_, k)| k.until <= now).map(|(sid, _)| sid.clone()).collect();
        expired.into_iter().filter_map(|sid| map.remove(&sid).map(|k| k.item)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map of active connections holds the caller's id, not a copy;
    /// looked up by any equal text, and let go when that connection (not
    /// another one of the same session) is kept.
    #[test]
    fn active_connections_share_the_session_id() {
        let r = Retention::new(Duration::from_secs(60), 10);
        let sid: Arc<str> = Arc::from("abc");
        let (a, b) = (Arc::new(1u8), Arc::new(2u8));
        r.set_active(&sid, &a);
        assert_eq!(Arc::strong_count(&sid), 2, "one shared id, no copy");
        assert!(r.active(&String::from("abc")).is_some_and(|l| Arc::ptr_eq(&l, &a)));
        r.keep("abc".into(), Arc::clone(&b), Instant::now(), |_, _| {});
        assert!(r.active("abc").is_some_and(|l| Arc::ptr_eq(&l, &a)), "another connection's keep leaves it");
        r.keep("abc".into(), Arc::clone(&a), Instant::now(), |_, _| {});
        assert!(r.active("abc").is_none());
        assert_eq!(Arc::strong_count(&sid), 1, "the map let go of the id");
    }
}
