//! Acks wait for the application: with `defer_acks`, the ack of a
//! delivered event is not written on arrival but queued here, tagged with
//! the delivery generation of the batch the event is in, and written once
//! the application has handled that batch (`release_acks`). So an ack means
//! "the listeners ran" (docs/ARCHITECTURE.md, "Acks wait for JavaScript").

use super::Link;
use crate::engine::delivery::lock;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Acks waiting for the application to handle the events before them.
#[derive(Default)]
pub(super) struct DeferredAcks {
    /// The acks waiting; none while no ack waits (most links, most of the
    /// time: 8 bytes in each instead of 64).
    queue: Option<Box<AckQueue>>,
    /// Listed in `Shared::ack_waiters`. Kept under the same lock as `queue`,
    /// so a link with acks waiting is always listed.
    listed: bool,
    /// The application has handled this link's events of every batch up to
    /// this generation (the highest `release_acks` was told). An ack
    /// deferred after its batch was handled (a duplicate's, or one whose
    /// message was taken before its `AckDue` was queued) is due at once:
    /// nothing else would release it, as the Rust API reports only
    /// through `release_acks`, link by link, when events are taken.
    handled: u64,
}

/// Acks waiting, never empty (`DeferredAcks::queue`).
#[derive(Default)]
struct AckQueue {
    /// In the order the peer asked for them, which is the order they go out.
    acks: VecDeque<DeferredAck>,
    /// Their ids back to back, from `read` on (one buffer, not a `String`
    /// per ack).
    ids: String,
    read: usize,
}

/// One ack waiting.
struct DeferredAck {
    /// Delivery generation of the last event before the ack: the ack goes
    /// out once the application has handled that batch.
    gen: u64,
    /// The length of the message id to acknowledge, in `ids`.
    len: usize,
    /// Of a duplicate (see `Event::AckDue`).
    duplicate: bool,
}

impl DeferredAcks {
    /// Queues the ack of message `id`, due once batch `gen` is handled.
    pub(super) fn push(&mut self, gen: u64, id: &str, duplicate: bool) {
        let q = self.queue.get_or_insert_with(Box::default);
        q.ids.push_str(id);
        q.acks.push_back(DeferredAck { gen, len: id.len(), duplicate });
    }
}

impl Link {
    /// The peer asks to ack message `id` (`Event::AckDue`); called under the
    /// peer lock, so acks queue in the order the peer asked for them.
    pub(super) fn defer_ack(&self, id: &str, duplicate: bool) {
        let gen = self.last_gen.load(Ordering::Acquire);
        lock(&self.deferred).push(gen, id, duplicate);
    }

    /// After a pump: writes the acks the application has already handled,
    /// and lists the link to hear when it handles more.
    pub(super) fn release_or_wait_acks(self: &Arc<Self>) {
        if let Some(shared) = self.env.shared.upgrade() {
            if !self.release_acks(shared.delivered_gen(), false) {
                let list = {
                    let mut d = lock(&self.deferred);
                    d.queue.is_some() && !std::mem::replace(&mut d.listed, true)
                };
                if list {
                    shared.wait_for_delivery(self);
                    // The application may have finished the batch between
                    // the check and the listing; look once more.
                    self.release_acks(shared.delivered_gen(), false);
                }
            }
        }
    }

    /// Writes the deferred acks whose events the application has handled
    /// (generation `upto`). Returns whether none are left waiting. With
    /// `unlist` (the caller holds the link's entry in the waiters list), an
    /// empty link counts as unlisted and the caller drops its entry; a
    /// non-empty one the caller must keep listed.
    pub(crate) fn release_acks(&self, upto: u64, unlist: bool) -> bool {
        // Taken and written under the peer lock (taken first, as in `pump`),
        // so two threads releasing at once cannot reorder acks on the wire.
        let mut peer = lock(&self.peer);
        let mut d = lock(&self.deferred);
        // Remembered under the lock `defer_ack` queues under, so an ack
        // queued just after this release is found by the release that
        // follows it (`release_or_wait_acks`, at the end of its pump).
        d.handled = d.handled.max(upto);
        let upto = d.handled;
        // Handed to the peer together, so the acks of one batch become one
        // cumulative ack with a peer of ours (`Peer::write_acks`).
        let mut wrote = false;
        if let Some(q) = d.queue.as_deref_mut() {
            let due = q.acks.iter().take_while(|a| a.gen <= upto).count();
            if due > 0 {
                wrote = true;
                let AckQueue { acks, ids, read } = q;
                peer.write_acks(acks.drain(..due).map(|a| {
                    let id = &ids[*read..*read + a.len];
                    *read += a.len;
                    (id, a.duplicate)
                }));
            }
            if q.acks.is_empty() {
                // Freed, not kept: an idle link holds no queue nor ids' buffer.
                d.queue = None;
            }
        }
        let empty = d.queue.is_none();
        if empty && unlist {
            d.listed = false;
        }
        drop(d);
        drop(peer);
        if wrote {
            self.wake_writer();
        }
        empty
    }
}
