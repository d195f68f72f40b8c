//! Events bound for the application, batched.
//!
//! Every connection appends its events, as JSON array entries, to one shared
//! buffer; the first append after a drain wakes the consumer (a
//! ThreadsafeFunction in the Node binding). While the consumer is busy, events
//! pile up and go across in one crossing: one crossing per event measured
//! 0.9 M/s, batches 3.3 M/s (docs/ARCHITECTURE.md, "The JavaScript/Rust
//! boundary").
//!
//! The buffer is bounded: readers wait in `wait_capacity` before reading more
//! from their sockets, so a slow consumer pushes back on the network instead
//! of growing memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// Readers pause above this many buffered bytes.
const HIGH_WATER: usize = 8 * 1024 * 1024;

/// Events are numbered by batch: everything pushed between two `take`s
/// carries the same generation, so the consumer can say which it has handled.
struct Batch {
    text: String,
    gen: u64,
}

pub(crate) struct Delivery {
    buf: Mutex<Batch>,
    scheduled: AtomicBool,
    drained: Notify,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Delivery {
    pub(crate) fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Delivery {
            buf: Mutex::new(Batch { text: String::new(), gen: 1 }),
            scheduled: AtomicBool::new(false),
            drained: Notify::new(),
            wake: Box::new(wake),
        }
    }

    /// Appends one entry written by `write` (a JSON value) and wakes the
    /// consumer if it is not already due to run. Returns the entry's batch
    /// generation.
    pub(crate) fn push(&self, write: impl FnOnce(&mut String)) -> u64 {
        let mut entries = self.entries();
        entries.push(write);
        entries.gen()
    }

    /// Holds the buffer for several entries in a row (the messages of one
    /// read): one lock, and one look at the wake-up, for all of them. The
    /// consumer is woken, if due, when the `Entries` are dropped.
    pub(crate) fn entries(&self) -> Entries<'_> {
        Entries { delivery: self, buf: Some(lock(&self.buf)), pushed: false }
    }

    /// Takes everything buffered as one JSON array text, with its generation.
    pub(crate) fn take(&self) -> Option<(String, u64)> {
        let taken = {
            let mut buf = lock(&self.buf);
            self.scheduled.store(false, Ordering::Release);
            if buf.text.is_empty() {
                return None;
            }
            let mut body = String::with_capacity(buf.text.len() + 2);
            body.push('[');
            body.push_str(&buf.text);
            body.push(']');
            buf.text.clear();
            if buf.text.capacity() > HIGH_WATER {
                buf.text.shrink_to(64 * 1024);
            }
            let gen = buf.gen;
            buf.gen += 1;
            (body, gen)
        };
        self.drained.notify_waiters();
        Some(taken)
    }

    pub(crate) fn backlog(&self) -> usize {
        lock(&self.buf).text.len()
    }

    /// Readers must wait: the consumer has this much to take already.
    pub(crate) fn over_capacity(&self) -> bool {
        self.backlog() >= HIGH_WATER
    }

    /// Waits until the consumer has room again.
    pub(crate) async fn wait_capacity(&self) {
        loop {
            let drained = self.drained.notified();
            if self.backlog() < HIGH_WATER {
                return;
            }
            drained.await;
        }
    }
}

/// Entries appended under one lock of the delivery buffer (`Delivery::entries`).
pub(crate) struct Entries<'a> {
    delivery: &'a Delivery,
    /// Some until dropped.
    buf: Option<MutexGuard<'a, Batch>>,
    pushed: bool,
}

impl Entries<'_> {
    /// Appends one entry written by `write` (a JSON value).
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut String)) {
        let Some(buf) = self.buf.as_mut() else { return };
        if !buf.text.is_empty() {
            buf.text.push(',');
        }
        write(&mut buf.text);
        self.pushed = true;
    }

    /// Appends `write`'s text to the last entry (one still open, left
    /// without its closing bracket by `push`).
    pub(crate) fn extend(&mut self, write: impl FnOnce(&mut String)) {
        if let Some(buf) = self.buf.as_mut() {
            write(&mut buf.text);
        }
    }

    /// The batch generation of the entries appended.
    pub(crate) fn gen(&self) -> u64 {
        self.buf.as_ref().map_or(0, |b| b.gen)
    }
}

impl Drop for Entries<'_> {
    fn drop(&mut self) {
        // The lock first: the wake-up may run the consumer on another thread.
        drop(self.buf.take());
        if self.pushed && !self.delivery.scheduled.swap(true, Ordering::AcqRel) {
            (self.delivery.wake)();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain
/// data; the data is still usable, and crashing Node over it would be worse.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn batches_and_wakes_once_per_drain() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let d = Delivery::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(d.push(|b| b.push('1')), 1);
        assert_eq!(d.push(|b| b.push('2')), 1);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(d.take(), Some(("[1,2]".to_owned(), 1)));
        assert_eq!(d.take(), None);
        assert_eq!(d.push(|b| b.push_str("[3]")), 2);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(d.take(), Some(("[[3]]".to_owned(), 2)));
        {
            let mut entries = d.entries();
            entries.push(|b| b.push('4'));
            entries.push(|b| b.push('5'));
            assert_eq!(entries.gen(), 3);
            // Not before the entries are let go.
            assert_eq!(wakes.load(Ordering::SeqCst), 2);
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 3);
        drop(d.entries());
        assert_eq!(wakes.load(Ordering::SeqCst), 3, "nothing pushed, no wake-up");
        assert_eq!(d.take(), Some(("[4,5]".to_owned(), 3)));
    }
}
