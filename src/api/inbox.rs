//! One consumer's queue of events, and where "handled" is decided.
//!
//! The dispatcher (`hub.rs`) appends each batch's events for a link as one
//! group; `next_event()` pops them. Popping is what releases the link's
//! deferred acks: after a pop, every event of this link from batches up to
//! `upto` has been taken, where `upto` is one below the next queued event's
//! batch, or (queue empty) the last batch the dispatcher finished routing.
//! `Link::release_acks(upto)` then writes exactly the acks of events taken.

use super::error::Error;
use super::event::Event;
use crate::engine::delivery::lock;
use crate::engine::link::Link;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{watch, Notify};

/// Bytes of events waiting in all queues before the dispatcher stops taking
/// batches: the engine's own buffer then fills and its readers stop reading.
const QUEUED_HIGH_WATER: usize = 8 * 1024 * 1024;

/// What all queues share: the bound on their bytes, and how far routing got.
#[derive(Default)]
pub(crate) struct Flow {
    bytes: AtomicUsize,
    space: Notify,
    /// Every batch up to this generation has been appended to its queues.
    pub(crate) routed: AtomicU64,
}

impl Flow {
    fn consumed(&self, n: usize) {
        if self.bytes.fetch_sub(n, Ordering::AcqRel) >= QUEUED_HIGH_WATER {
            self.space.notify_one();
        }
    }

    /// Waits until the queues hold less than their bound.
    pub(crate) async fn room(&self) {
        while self.bytes.load(Ordering::Acquire) >= QUEUED_HIGH_WATER {
            self.space.notified().await;
        }
    }
}

/// A client's or connection's state, for the futures that wait on it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Status {
    /// Handshake done and not closed since.
    pub(crate) connected: bool,
    /// Completed handshakes.
    pub(crate) connects: u64,
    /// Client: connection attempts that failed with no retry to follow.
    pub(crate) gave_up: u64,
    /// Client: times it stopped after `disconnect()`, and whether it is stopped now.
    pub(crate) stops: u64,
    pub(crate) stopped: bool,
    /// Client: the last error before a handshake completed.
    pub(crate) last_error: Option<Error>,
    /// Client: the session id of the last handshake, to tell a resume.
    pub(crate) session_id: Option<String>,
}

/// An event with the delivery batch it came in and its size.
pub(crate) struct Queued {
    pub(crate) gen: u64,
    pub(crate) bytes: usize,
    pub(crate) event: Event,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Queued>,
    closed: bool,
}

pub(crate) struct Inbox {
    link: Weak<Link>,
    client: bool,
    flow: Arc<Flow>,
    queue: Mutex<Queue>,
    ready: Notify,
    pub(crate) status: watch::Sender<Status>,
}

pub(crate) enum Next {
    Event(Event),
    Empty,
    Closed,
}

impl Inbox {
    pub(crate) fn new(link: &Arc<Link>, flow: Arc<Flow>, client: bool) -> Arc<Self> {
        Arc::new(Inbox {
            link: Arc::downgrade(link),
            client,
            flow,
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            status: watch::Sender::new(Status::default()),
        })
    }

    /// Appends one batch's events of this link, all at once: a pop never
    /// sees part of a batch, so it never releases the ack of an event still
    /// on its way into the queue.
    pub(crate) fn append(&self, items: Vec<Queued>) {
        let bytes: usize = items.iter().map(|q| q.bytes).sum();
        {
            let mut q = lock(&self.queue);
            if q.closed {
                return;
            }
            self.flow.bytes.fetch_add(bytes, Ordering::AcqRel);
            q.items.extend(items);
        }
        self.ready.notify_waiters();
    }

    /// Nothing more comes after what is queued (a server-side connection closed).
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.ready.notify_waiters();
    }

    /// The consumer is gone: its queued events are dropped unacknowledged
    /// (their sender still holds them and resends them on a resume).
    pub(crate) fn discard(&self) {
        let bytes: usize = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.items.drain(..).map(|i| i.bytes).sum()
        };
        self.flow.consumed(bytes);
        self.ready.notify_waiters();
    }

    /// Batch `gen` is routed: if this link's queue is empty, everything of
    /// it up to `gen` has been taken (also events that are not queued).
    pub(crate) fn settle(&self, gen: u64) {
        if lock(&self.queue).items.is_empty() {
            if let Some(link) = self.link.upgrade() {
                link.release_acks(gen, false);
            }
        }
    }

    pub(crate) fn try_next(&self) -> Next {
        let (item, upto) = {
            let mut q = lock(&self.queue);
            let Some(item) = q.items.pop_front() else {
                return if q.closed { Next::Closed } else { Next::Empty };
            };
            // Read under the queue lock: a batch counts as routed only once
            // its group is in, and appending takes this lock.
            let upto = match q.items.front() {
                Some(next) => next.gen.saturating_sub(1),
                None => self.flow.routed.load(Ordering::Acquire),
            };
            (item, upto)
        };
        self.flow.consumed(item.bytes);
        if let Some(link) = self.link.upgrade() {
            link.release_acks(upto, false);
        }
        Next::Event(item.event)
    }

    pub(crate) async fn next(&self) -> Option<Event> {
        loop {
            // Created before the check: `notify_waiters` wakes it from then on.
            let ready = self.ready.notified();
            match self.try_next() {
                Next::Event(e) => return Some(e),
                Next::Closed => return None,
                Next::Empty => ready.await,
            }
        }
    }

    /// A client's queue (else a server-side connection's).
    pub(crate) fn is_client(&self) -> bool {
        self.client
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }
}
