//! Events bound for the application, batched.
//!
//! Every connection appends its events, as JSON array entries, to one shared
//! buffer; the first append after a drain wakes the consumer (a
//! ThreadsafeFunction in the Node binding). While the consumer is busy, events
//! pile up and go across in one crossing: one crossing per event measured
//! 0.9 M/s, batches 3.3 M/s (docs/ARCHITECTURE.md, "The JavaScript/Rust
//! boundary").
//!
//! A batch is cut into segments of about [`SEGMENT`] bytes, each a JSON array
//! taken on its own, with a generation of its own.
//!
//! The buffer is bounded: readers wait in `wait_capacity` before reading more
//! from their sockets, so a slow consumer pushes back on the network instead
//! of growing memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// Readers pause above this many buffered bytes.
const HIGH_WATER: usize = 8 * 1024 * 1024;

/// A segment is closed once it holds this many bytes, so one take is at
/// most this plus one entry. V8 puts a string of over 128 KiB
/// (`kMaxRegularHeapObjectSize`) in its large-object space: a fresh mapping
/// per string, whose pages fault in while the text is copied and are
/// unmapped at the next scavenge. With whole batches (130-260 KiB in an
/// acked burst) that was 6 % of a receiving server's CPU (bench/README.md,
/// "Profile").
const SEGMENT: usize = 64 * 1024;

/// The entries not yet taken, as segments of text, each a JSON array: the
/// closed ones, then the open one (no closing bracket yet), if any.
/// Everything pushed to one segment carries its generation, so the
/// consumer can say which it has handled.
struct Batch {
    text: String,
    /// Where the first segment not yet taken starts in `text`.
    head: usize,
    /// End and generation of each closed segment not yet taken.
    closed: VecDeque<(usize, u64)>,
    /// Start of the open segment.
    open_at: Option<usize>,
    /// The open segment's generation (the next one's, while none is open).
    gen: u64,
}

impl Batch {
    fn close_open(&mut self) {
        if self.open_at.take().is_some() {
            self.text.push(']');
            self.closed.push_back((self.text.len(), self.gen));
            self.gen += 1;
        }
    }

    /// Starts an entry: `[` of a new segment (the open one closed first if
    /// full), or the `,` after the entry before.
    fn begin_entry(&mut self) {
        if self.open_is_full() {
            self.close_open();
        }
        if self.open_at.is_some() {
            self.text.push(',');
        } else {
            self.open_at = Some(self.text.len());
            self.text.push('[');
        }
    }

    fn open_is_full(&self) -> bool {
        self.open_at.is_some_and(|at| self.text.len() - at >= SEGMENT)
    }

    /// The first segment, removed.
    fn take_first(&mut self) -> Option<(String, u64)> {
        if self.closed.is_empty() {
            self.close_open();
        }
        let (end, gen) = self.closed.pop_front()?;
        let segment = self.text[self.head..end].to_owned();
        self.head = end;
        if self.head == self.text.len() {
            self.text.clear();
            self.head = 0;
            if self.text.capacity() > HIGH_WATER {
                self.text.shrink_to(SEGMENT * 2);
            }
        } else if self.head >= SEGMENT && self.head * 2 >= self.text.len() {
            // A consumer that never empties the buffer (readers on other
            // threads keep adding) must not make it grow without end.
            let gone = self.head;
            self.text.drain(..gone);
            self.head = 0;
            for (end, _) in &mut self.closed {
                *end -= gone;
            }
            if let Some(at) = &mut self.open_at {
                *at -= gone;
            }
        }
        Some((segment, gen))
    }

    fn backlog(&self) -> usize {
        self.text.len() - self.head
    }
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
            buf: Mutex::new(Batch { text: String::new(), head: 0, closed: VecDeque::new(), open_at: None, gen: 1 }),
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

    /// Takes the first segment of what is buffered, a JSON array text, with
    /// its generation; calling again takes the next.
    pub(crate) fn take(&self) -> Option<(String, u64)> {
        let taken = {
            let mut buf = lock(&self.buf);
            self.scheduled.store(false, Ordering::Release);
            buf.take_first()?
        };
        self.drained.notify_waiters();
        Some(taken)
    }

    pub(crate) fn backlog(&self) -> usize {
        lock(&self.buf).backlog()
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
        buf.begin_entry();
        write(&mut buf.text);
        self.pushed = true;
    }

    /// The open segment is full: an entry that `extend` keeps adding to
    /// should end, so the next `push` starts another segment.
    pub(crate) fn segment_full(&self) -> bool {
        self.buf.as_ref().is_some_and(|b| b.open_is_full())
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
    use std::fmt::Write as _;
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

    /// Entries `[k]` for k in `range`, pushed one by one, each `size` bytes long.
    fn push_entries(d: &Delivery, range: std::ops::Range<usize>, size: usize) -> Vec<u64> {
        range
            .map(|k| {
                d.push(|b| {
                    let _ = write!(b, "[{k},\"{}\"]", "x".repeat(size - 5 - k.to_string().len()));
                })
            })
            .collect()
    }

    fn entries_of(segment: &str) -> Vec<u64> {
        let v: Vec<(u64, String)> = serde_json::from_str(segment).expect("a segment is a JSON array");
        v.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn a_large_batch_is_taken_in_segments_each_with_its_generation() {
        let d = Delivery::new(|| {});
        // 3,000 entries of 100 bytes: about 300 KB, five segments.
        let gens = push_entries(&d, 0..3000, 100);
        assert_eq!(d.backlog(), 3000 * 101 + 4);
        let mut seen = Vec::new();
        let mut last_gen = 0;
        while let Some((text, gen)) = d.take() {
            assert!(text.len() <= SEGMENT + 101, "a segment is at most SEGMENT and one entry: {}", text.len());
            assert_eq!(gen, last_gen + 1, "one generation per segment");
            last_gen = gen;
            let keys = entries_of(&text);
            // Every entry of this segment was pushed with its generation.
            assert!(keys.iter().all(|&k| gens[k as usize] == gen));
            seen.extend(keys);
        }
        assert_eq!(seen, (0..3000).collect::<Vec<_>>());
        assert_eq!(last_gen, 5);
        assert_eq!(d.backlog(), 0);
        // The next push opens the next generation's segment.
        assert_eq!(push_entries(&d, 0..1, 10), vec![6]);
    }

    #[test]
    fn a_buffer_never_emptied_is_compacted() {
        let d = Delivery::new(|| {});
        let mut next = 0;
        let mut seen = Vec::new();
        for _ in 0..50 {
            // A little more arrives than one take removes: the buffer never empties.
            push_entries(&d, next..next + 700, 100);
            next += 700;
            let (text, _) = d.take().expect("a segment");
            seen.extend(entries_of(&text));
            let buf = lock(&d.buf);
            let (len, left) = (buf.text.len(), buf.backlog());
            assert!(len <= 2 * left + 2 * SEGMENT, "taken text is let go: {len} bytes held for {left}");
        }
        while let Some((text, _)) = d.take() {
            seen.extend(entries_of(&text));
        }
        assert_eq!(seen, (0..next as u64).collect::<Vec<_>>());
    }
}
