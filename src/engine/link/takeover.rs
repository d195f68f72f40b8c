//! Server-side session takeover, all of it: a dropped connection is kept
//! (`retire`) in `Retention` under its session id for `resumeWindow`; the
//! connection that resumes the session (`resume`, after checking the
//! resume credential) takes over its queue, unacknowledged events,
//! duplicate-suppression marks and handles (`absorb`). If the client is
//! back before the old connection was seen to drop, the new one kills it
//! and waits up to `TAKEOVER_WAIT` for the handover. A kept connection
//! whose window passes, or that no longer fits, is let go (`release`,
//! `sweep`): its ack callbacks hear DROPPED.

use super::Link;
use crate::engine::delivery::lock;
use crate::engine::diag::Ns;
use crate::engine::events::Kind;
use crate::engine::retention::Retention;
use crate::engine::store::SessionStore;
use crate::engine::Shared;
use crate::protocol::session;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a resuming connection waits for the session's previous
/// connection to close and hand over its state.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

impl Link {
    /// Server: the session this connection serves, or asked to resume.
    pub(crate) fn session_key(&self) -> Option<String> {
        let sid = lock(&self.peer).session_id().map(str::to_owned);
        sid.or_else(|| self.rare.get().and_then(|r| lock(&r.resuming).clone()))
    }

    /// Every handle that routes to this link.
    pub(crate) fn handles(&self) -> Vec<u32> {
        let mut hs = self.rare.get().map(|r| lock(&r.aliases).clone()).unwrap_or_default();
        hs.push(self.handle);
        hs
    }

    /// Server: the client asked to resume session `id`. Takes over what an
    /// earlier connection of that session left (in this process, or in a
    /// shared store), then loads the session itself.
    pub(super) async fn resume(self: &Arc<Self>, store: &Arc<dyn SessionStore>, id: &str) {
        self.log(Ns::Session, || format!("{} resuming session {id}", self.who()));
        // The credential first: a client that may not resume this session
        // must not close its connection nor take over its events.
        let mut error = None;
        let mut loaded = match store.get(id).await {
            Ok(s) => s,
            Err(e) => {
                error = Some(format!("session store get failed: {e}"));
                None
            }
        };
        let refused = match &loaded {
            Some(stored) => !lock(&self.peer).may_resume(stored),
            // Not in the store (yet: a first save may still be on its way):
            // a connection of this process that holds it has the credential.
            None => self.holder_of(id).is_some_and(|other| {
                let mut digest = session::Session::new();
                if let Some(d) = lock(&other.peer).session().get(session::RESUME_KEY) {
                    digest.insert(session::RESUME_KEY.into(), d.clone());
                }
                !lock(&self.peer).may_resume(&digest)
            }),
        };
        if refused {
            self.log(Ns::Session, || format!("{} session {id}: resume refused, no valid secret", self.who()));
            lock(&self.peer).handle_session_loaded(None, Instant::now());
            self.pump();
            self.wake_reader();
            // Gone from the store (expired, invalidated), it is just an
            // unknown id; only a stored session refused is worth an error.
            if loaded.is_some() {
                self.deliver_error(
                    &format!("uhura: resume of session {id} refused: it was made for a client that must present its resume secret; a new session was started"),
                    Some("ERR_UHURA_RESUME_REFUSED"),
                );
            }
            return;
        }
        let mut took_over = false;
        if let Some(retention) = self.env.retention.clone() {
            // The client may be back before this server noticed its old
            // connection drop: end that one and take over what it leaves.
            let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
            loop {
                let changed = retention.changed();
                if let Some(old) = retention.take(id) {
                    self.log(Ns::Session, || {
                        format!("{} session {id}: takes over the pending events of #{}", self.who(), old.handle)
                    });
                    self.absorb(&old);
                    took_over = true;
                    // Its last changes may still be on their way to the store.
                    let _ = tokio::time::timeout_at(deadline, old.saves_flushed()).await;
                    break;
                }
                let Some(other) = retention.active(id).filter(|l| !Arc::ptr_eq(l, self)) else { break };
                self.log(Ns::Session, || {
                    format!("{} session {id} is still open on #{}: closing that one", self.who(), other.handle)
                });
                if let Some(t) = other.transport() {
                    t.kill();
                }
                took_over = true;
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    break;
                }
            }
        }
        if store.keeps_delivery() {
            match store.load_delivery(id).await {
                Ok(state) => lock(&self.peer).adopt_foreign(state.outbox, state.seen),
                Err(e) => error = Some(format!("session store could not load delivery state: {e}")),
            }
        }
        // What the connection taken over saved last is newer than the first read.
        if took_over {
            match store.get(id).await {
                Ok(Some(s)) => loaded = Some(s),
                Ok(None) => {}
                Err(e) => error = Some(format!("session store get failed: {e}")),
            }
        }
        // A failing store starts a new session (as the original does); the
        // error follows `connect`, so it reaches the connection object.
        self.log(Ns::Session, || match (&loaded, &error) {
            (Some(_), _) => format!("{} session {id} loaded", self.who()),
            (None, Some(e)) => format!("{} session {id} not loaded ({e}): a new session", self.who()),
            (None, None) => format!("{} session {id} unknown to the store: a new session", self.who()),
        });
        let resumed = loaded.is_some();
        lock(&self.peer).handle_session_loaded(loaded, Instant::now());
        self.pump();
        self.wake_reader();
        if let Some(e) = error {
            self.deliver_error(&e, Some("ESTORE"));
        }
        if resumed && store.keeps_delivery() && lock(&self.peer).extended() {
            // An event queued for the session by another server (`sendTo`,
            // src/engine/fleet_bus.rs) after our load, whose wake-up reached
            // us before the session was active here, is found now. Only our
            // peers: what was acked since the load may come again, and they
            // suppress it.
            self.requeue_from_store(store, id).await;
        }
    }

    /// Takes into the queue what the store holds for this session and the
    /// peer has not (events other servers queued for it), and sends it.
    /// False if the store could not be read (said with an `ESTORE` error):
    /// what it holds is still there for a later try.
    pub(crate) async fn requeue_from_store(self: &Arc<Self>, store: &Arc<dyn SessionStore>, id: &str) -> bool {
        match store.load_delivery(id).await {
            Ok(state) => {
                {
                    let mut peer = lock(&self.peer);
                    if peer.session_id() != Some(id) || self.successor().is_some() {
                        return true;
                    }
                    peer.adopt_foreign(state.outbox, Vec::new());
                }
                self.pump();
                true
            }
            Err(e) => {
                self.deliver_error(&format!("session store could not load delivery state: {e}"), Some("ESTORE"));
                false
            }
        }
    }

    /// Another connection of this process that holds session `id`: open,
    /// or dropped and kept for its return.
    fn holder_of(self: &Arc<Self>, id: &str) -> Option<Arc<Link>> {
        let retention = self.env.retention.as_ref()?;
        retention.peek(id).or_else(|| retention.active(id)).filter(|l| !Arc::ptr_eq(l, self))
    }

    /// Server: takes over a closed connection of the same session: its
    /// pending events (resent after ours' older ones), its duplicate
    /// suppression, and its handles, which route here from now on.
    pub(crate) fn absorb(self: &Arc<Self>, old: &Arc<Link>) {
        let retained = {
            let mut old_peer = lock(&old.peer);
            // Set under the old peer's lock: a write that gets the lock after
            // this is forwarded, one before it is in what we take.
            *lock(&old.rare().successor) = Some(self.clone());
            old_peer.take_retained()
        };
        lock(&self.peer).adopt_retained(retained);
        let moved = old.handles();
        if let Some(shared) = self.env.shared.upgrade() {
            for h in &moved {
                shared.route(*h, self.clone());
            }
        }
        lock(&self.rare().aliases).extend(moved);
    }
}

/// A server-side connection ended: keep its state for its session's return,
/// or let it go.
pub(crate) fn retire(shared: &Arc<Shared>, link: &Arc<Link>) {
    match (&link.env.retention, link.session_key()) {
        (Some(retention), Some(sid)) => {
            // An older closed connection of the same session (it dropped
            // while this one was starting): nothing of it may be lost.
            let evicted = retention.keep(sid, link.clone(), Instant::now(), |link, older| link.absorb(older));
            for evicted in evicted {
                release(shared, &evicted);
            }
        }
        _ => release(shared, link),
    }
}

/// Lets retained sessions go once their window has passed.
pub(crate) async fn sweep(shared: Weak<Shared>, retention: Arc<Retention<Link>>) {
    let period = (retention.window() / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else { return };
        for link in retention.expire(Instant::now()) {
            release(&shared, &link);
        }
    }
}

/// Gives up on a retained link: its pending events will never be sent, so
/// their callbacks hear so, and its handles stop routing.
pub(crate) fn release(shared: &Shared, link: &Arc<Link>) {
    let retained = lock(&link.peer).take_retained();
    for (h, seq) in retained.notifies() {
        shared.delivery.push(|b| b.push_str(&format!("[{h},{},{seq}]", Kind::Dropped)));
    }
    for h in link.handles() {
        shared.unregister_link(h);
    }
}
