//! Server side: what a dropped connection leaves for its session's return.
//! The closed link stays registered (the application may still send on the
//! old connection object) and waits here, for a bounded window, until a new
//! connection resumes the session and takes its queue, its unacknowledged
//! events and its duplicate-suppression state.

use super::delivery::lock;
use super::events::Kind;
use super::link::Link;
use super::Shared;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub struct Retention {
    window: Duration,
    max_sessions: usize,
    map: Mutex<HashMap<String, (Arc<Link>, Instant)>>,
    /// The connection currently serving each session, so a resume that
    /// arrives before the old connection was seen to drop can end it.
    active: Mutex<HashMap<String, Weak<Link>>>,
    changed: Notify,
}

impl Retention {
    pub fn new(window: Duration, max_sessions: usize) -> Arc<Self> {
        Arc::new(Retention {
            window,
            max_sessions: max_sessions.max(1),
            map: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set_active(&self, sid: &str, link: &Arc<Link>) {
        lock(&self.active).insert(sid.to_owned(), Arc::downgrade(link));
    }

    pub fn active(&self, sid: &str) -> Option<Arc<Link>> {
        lock(&self.active).get(sid).and_then(Weak::upgrade)
    }

    /// Resolves when a connection is kept (see `keep`).
    pub fn changed(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.changed.notified()
    }

    /// Keeps the closed `link` for session `sid`. Returns the links that no
    /// longer fit (the oldest, when full).
    pub fn keep(&self, sid: String, link: Arc<Link>, now: Instant) -> Vec<Arc<Link>> {
        {
            let mut active = lock(&self.active);
            if active.get(&sid).is_some_and(|w| w.upgrade().is_none_or(|l| Arc::ptr_eq(&l, &link))) {
                active.remove(&sid);
            }
        }
        let mut out = Vec::new();
        let mut map = lock(&self.map);
        // An older closed connection of the same session (it dropped while
        // this one was starting): nothing of it may be lost.
        if let Some((older, _)) = map.remove(&sid) {
            link.absorb(&older);
        }
        map.insert(sid, (link, now + self.window));
        if map.len() > self.max_sessions {
            if let Some(oldest) = map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) {
                if let Some((l, _)) = map.remove(&oldest) {
                    out.push(l);
                }
            }
        }
        drop(map);
        self.changed.notify_waiters();
        out
    }

    /// The dropped connection kept for `sid`, left in place.
    pub fn peek(&self, sid: &str) -> Option<Arc<Link>> {
        lock(&self.map).get(sid).map(|(l, _)| l.clone())
    }

    pub fn take(&self, sid: &str) -> Option<Arc<Link>> {
        lock(&self.map).remove(sid).map(|(l, _)| l)
    }

    pub fn expire(&self, now: Instant) -> Vec<Arc<Link>> {
        let mut map = lock(&self.map);
        let expired: Vec<String> = map.iter().filter(|(_, (_, t))| *t <= now).map(|(k, _)| k.clone()).collect();
        expired.into_iter().filter_map(|k| map.remove(&k).map(|(l, _)| l)).collect()
    }
}

/// Gives up on a retained link: its pending events will never be sent, so
/// their callbacks hear so, and its handles stop routing.
pub fn release(shared: &Shared, link: &Arc<Link>) {
    let retained = lock(&link.peer).take_retained();
    for (h, seq) in retained.notifies() {
        shared.delivery.push(|b| b.push_str(&format!("[{h},{},{seq}]", Kind::Dropped)));
    }
    for h in link.handles() {
        shared.unregister_link(h);
    }
}
