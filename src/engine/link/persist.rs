//! Persistence: the session and the delivery state (unacknowledged events,
//! duplicate-suppression marks) saved to the store. `pump` stages what
//! changed under the peer lock, so copies queue in the order they were
//! taken; one task per link at a time saves them, always the newest session
//! copy, so an older snapshot never lands after a newer one.

use super::Link;
use crate::engine::delivery::lock;
use crate::engine::diag::Ns;
use crate::engine::events::persisted_entry;
use crate::engine::store::{DeliveryDelta, SessionStore};
use crate::protocol::peer::{Notify, Peer};
use crate::protocol::session;
use std::sync::Arc;
use std::time::Instant;

/// A session save waiting for the store.
enum PendingSave {
    /// A whole copy of the session.
    Whole(session::Session),
    /// Only these keys changed (for a store that `saves_changes`).
    Keys(session::Session),
}

/// The saves of a session not yet handed to the store: at most one, the
/// later ones folded into it, so the store sees them in order.
#[derive(Default)]
pub(super) struct SaveSlot {
    /// The session id and what to save under it; boxed, as every link has
    /// a slot and most hold nothing in it most of the time.
    /// The id is the peer's own (`Peer::session_id_shared`), which the
    /// memory store keeps as its key (`SessionStore::set_shared`).
    pending: Option<Box<(Arc<str>, PendingSave)>>,
    /// A task is saving; it takes `pending` when done with the last.
    running: bool,
    /// A save of this link has reached the store, so the session is there.
    landed: bool,
}

impl SaveSlot {
    /// Folds a new save into the pending one: keys into the copy they
    /// change, a whole copy replacing whatever was there.
    fn add(&mut self, sid: Arc<str>, save: PendingSave) {
        self.pending = Some(Box::new(match (self.pending.take().map(|p| *p), save) {
            (Some((old, PendingSave::Whole(mut whole))), PendingSave::Keys(changed)) if old == sid => {
                whole.extend(changed);
                (sid, PendingSave::Whole(whole))
            }
            (Some((old, PendingSave::Keys(mut keys))), PendingSave::Keys(changed)) if old == sid => {
                keys.extend(changed);
                (sid, PendingSave::Keys(keys))
            }
            (_, save) => (sid, save),
        }));
    }

    /// The next save for the task; clears `running` when there is none.
    fn next(&mut self) -> Option<(Arc<str>, PendingSave)> {
        let next = self.pending.take().map(|p| *p);
        self.running = next.is_some();
        next
    }
}

/// Delivery state changes not yet saved to a shared store.
#[derive(Default)]
pub(super) struct DeltaSlot {
    /// What changed since the last save, in order.
    delta: DeliveryDelta,
    /// Durable sends whose events are in `delta` (or in a delta before
    /// it): told once it is saved.
    persisted: Vec<Notify>,
    /// A task is saving (one at a time, so changes apply in order); it
    /// takes `delta` until it finds it empty.
    running: bool,
}

/// What `pump` asks of the store, run after the peer lock is let go.
pub(super) enum StoreWork {
    /// Resume this session (`takeover.rs`).
    Load(String),
    /// Save the session copies in `unsaved_session`, newest last.
    Save,
    /// Save this link's unsaved delivery state under the session id.
    Delivery(String),
}

impl Link {
    /// Stages a copy of the session for saving (`Event::SaveSession` came
    /// during this pump); called under the peer lock.
    pub(super) fn stage_session_save(&self, peer: &mut Peer, store_work: &mut Vec<StoreWork>) {
        // One copy of the session per pump, however many `_set`s it
        // handled: a copy per `_set` made a burst of small sets
        // quadratic. The copy goes into the save slot under the peer
        // lock, so copies land there in the order they were taken.
        // A store that saves changed keys gets only those (and the
        // cookie, whose expiry slides with each save).
        if let Some(id) = peer.session_id_shared().cloned() {
            let by_keys = self.env.store.as_ref().is_some_and(|s| s.saves_changes());
            let save = match peer.take_session_changes() {
                session::Changes::Keys(keys) if by_keys => {
                    let s = peer.session();
                    let mut changed = session::Session::new();
                    for k in keys.iter().chain(std::iter::once(&"cookie".to_owned())) {
                        if let Some(v) = s.get(k) {
                            changed.insert(k.clone(), v.clone());
                        }
                    }
                    PendingSave::Keys(changed)
                }
                _ => PendingSave::Whole(peer.session().into_owned()),
            };
            let mut slot = lock(&self.unsaved_session);
            slot.add(id, save);
            if !std::mem::replace(&mut slot.running, true) {
                store_work.push(StoreWork::Save);
            }
        }
    }

    /// Stages the delivery-state changes of this pump for saving; called
    /// under the peer lock.
    pub(super) fn stage_delivery_delta(&self, peer: &Peer, mut delta: DeliveryDelta, store_work: &mut Vec<StoreWork>) {
        // The durable sends applied so far: their `Persist`s were drained
        // by this pump or an earlier one, so they are in this delta or in
        // one already staged.
        let mut durable = self.rare.get().map(|r| std::mem::take(&mut *lock(&r.durable))).unwrap_or_default();
        if !delta.is_empty() || !durable.is_empty() {
            // Appended under the peer lock, so changes reach the store in
            // the order they happened (an ack never before its add).
            let mut slot = lock(&self.unsaved);
            let unsaved = slot.get_or_insert_with(Box::default);
            let u = &mut unsaved.delta;
            u.add.append(&mut delta.add);
            u.remove.append(&mut delta.remove);
            u.seen.append(&mut delta.seen);
            unsaved.persisted.append(&mut durable);
            drop(slot);
            if let Some(id) = peer.session_id() {
                store_work.push(StoreWork::Delivery(id.to_owned()));
            }
        }
    }

    /// Tells durable sends that their events are in the store, once the
    /// session is too: a server resuming the session elsewhere reads the
    /// session first, and without it would start a new one.
    async fn report_persisted(
        &self,
        store: &Arc<dyn SessionStore>,
        id: &str,
        persisted: Vec<Notify>,
        saved: Result<(), String>,
    ) {
        let message = saved
            .and(self.session_stored(store, id).await)
            .err()
            .map(|e| format!("uhura: the event was not persisted: {e}"));
        let failure = message.as_deref().map(|m| (m, "ESTORE"));
        for (h, seq) in persisted {
            self.env.delivery.push(|b| persisted_entry(b, h, seq, failure));
        }
    }

    /// Until session `id` is in the store (an error if it is not): a save
    /// of it that only reached the store's memory (Redis unavailable, the
    /// save queued: `save_queue.rs`) does not count.
    async fn session_stored(&self, store: &Arc<dyn SessionStore>, id: &str) -> Result<(), String> {
        // Once a save has landed the session is there; waiting on every
        // later save would hold reports up behind busy sets.
        if lock(&self.unsaved_session).landed {
            return Ok(());
        }
        self.saves_flushed().await;
        if lock(&self.unsaved_session).landed {
            return Ok(());
        }
        // No save of this link landed: queued, or failed. A read waits for
        // a queued save of the session to land (or fails), and tells
        // whether the session is there.
        match store.get(id).await? {
            Some(_) => {
                lock(&self.unsaved_session).landed = true;
                Ok(())
            }
            None => Err(format!("session {id} is not in the store")),
        }
    }

    /// Waits until every session save staged so far has reached the store.
    pub(super) async fn saves_flushed(&self) {
        loop {
            let notified = self.rare().session_saved.notified();
            tokio::pin!(notified);
            // Registered before the check, so a save ending in between wakes it.
            notified.as_mut().enable();
            if !lock(&self.unsaved_session).running {
                return;
            }
            notified.await;
        }
    }

    /// Runs store work on the runtime: a load (resume), or the save task
    /// unless one is already running for this link.
    pub(super) fn spawn_store_work(self: &Arc<Self>, work: StoreWork) {
        let Some(store) = self.env.store.clone() else { return };
        let link = self.clone();
        match work {
            StoreWork::Load(id) => {
                self.env.rt.spawn(async move { link.resume(&store, &id).await });
            }
            StoreWork::Save => {
                self.env.rt.spawn(async move {
                    loop {
                        let Some((id, save)) = lock(&link.unsaved_session).next() else {
                            // `running` is off (under the slot's lock) before
                            // this looks: a waiter that makes `rare` after it
                            // finds the save done.
                            if let Some(rare) = link.rare.get() {
                                rare.session_saved.notify_waiters();
                            }
                            return;
                        };
                        // connect's resetMaxAge() before every save: the cookie's
                        // expiry slides to maxAge from now.
                        let saved = match save {
                            PendingSave::Keys(mut changed) => {
                                session::touch_cookie(&mut changed, session::now_millis());
                                match store.update(&id, changed).await {
                                    Ok(true) => Ok(()),
                                    // Not there (expired, evicted): the whole session.
                                    Ok(false) => {
                                        let mut whole = lock(&link.peer).session().into_owned();
                                        session::touch_cookie(&mut whole, session::now_millis());
                                        store.set_shared(&id, whole).await
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            PendingSave::Whole(mut whole) => {
                                session::touch_cookie(&mut whole, session::now_millis());
                                store.set_shared(&id, whole).await
                            }
                        };
                        match saved {
                            Ok(()) => {
                                lock(&link.unsaved_session).landed = true;
                                // The store's copy may be the text the peer
                                // already compacted its session to.
                                link.share_session_text(&mut lock(&link.peer));
                                link.log(Ns::Session, || format!("{} session {id} saved", link.who()))
                            }
                            Err(e) => {
                                link.log(Ns::Session, || format!("{} session {id} not saved: {e}", link.who()));
                                link.deliver_error(&format!("session store set failed: {e}"), Some("ESTORE"));
                            }
                        }
                    }
                });
            }
            StoreWork::Delivery(id) => {
                {
                    let mut slot = lock(&self.unsaved);
                    let unsaved = slot.get_or_insert_with(Box::default);
                    if unsaved.running {
                        return;
                    }
                    unsaved.running = true;
                }
                self.env.rt.spawn(async move {
                    loop {
                        let (delta, persisted) = {
                            let mut slot = lock(&link.unsaved);
                            match slot.as_mut() {
                                Some(u) if !u.delta.is_empty() || !u.persisted.is_empty() => {
                                    (std::mem::take(&mut u.delta), std::mem::take(&mut u.persisted))
                                }
                                // Done (and no longer `running`): the slot
                                // goes until the next change.
                                _ => {
                                    *slot = None;
                                    return;
                                }
                            }
                        };
                        let saved = if delta.is_empty() { Ok(()) } else { store.save_delivery(&id, delta).await };
                        if let Err(e) = &saved {
                            link.deliver_error(
                                &format!("session store could not save delivery state: {e}"),
                                Some("ESTORE"),
                            );
                        }
                        if !persisted.is_empty() {
                            link.report_persisted(&store, &id, persisted, saved).await;
                        }
                    }
                });
            }
        }
    }

    /// Server: destroys the stored session, then tells the client.
    pub(crate) fn invalidate_session(self: &Arc<Self>) {
        let link = self.clone();
        self.env.rt.spawn(async move {
            let id = lock(&link.peer).session_id().map(str::to_owned);
            if let (Some(store), Some(id)) = (link.env.store.clone(), id) {
                match store.destroy(&id).await {
                    Ok(()) => {
                        link.log(Ns::Session, || format!("{} session {id} destroyed (invalidateSession)", link.who()))
                    }
                    Err(e) => {
                        link.log(Ns::Session, || format!("{} session {id} not destroyed: {e}", link.who()));
                        link.deliver_error(&format!("session store destroy failed: {e}"), Some("ESTORE"));
                    }
                }
            }
            {
                let mut peer = lock(&link.peer);
                peer.clear_session();
                if let Some(rare) = link.rare.get() {
                    *lock(&rare.resuming) = None;
                }
                peer.send_event("[\"invalidateSession\"]", None, Instant::now());
            }
            link.pump();
        });
    }
}
