//! Corked writes: while the application's thread handles a batch of
//! delivered events, direct writes from that thread wait until the batch is
//! done. A listener's reply and the acks of the events it answered then
//! leave in one `write` (one syscall, one TCP segment) instead of two, and
//! the peer wakes once for both: on a request/response round trip that is a
//! syscall and a wake-up less on each side.
//!
//! Only the thread that corks is held back; other threads (tokio's) write
//! as before. Each held link is written once, in the order it first asked,
//! when the outermost cork is released.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

/// What a cork holds back: a link's writer. A trait, not the `Link` type,
/// so that this module does not depend on `link`, which depends on it.
pub(crate) trait Writer {
    /// Writes what waits, as it would have without the cork.
    fn wake_writer(&self);
}

#[derive(Default)]
struct Cork {
    depth: u32,
    /// In the order they first asked, and as a set of their addresses (a
    /// batch may touch thousands of links).
    waiting: Vec<Arc<dyn Writer>>,
    listed: HashSet<*const ()>,
    /// `begin_batch` holds one level of `depth`.
    batch: bool,
}

thread_local! {
    static CORK: RefCell<Cork> = RefCell::default();
}

/// Holds back this thread's direct writes until dropped (nests).
#[must_use = "the writes are released when the guard is dropped"]
pub(crate) struct Corked(std::marker::PhantomData<*const ()>);

/// Corks this thread's direct writes until the guard is dropped.
pub(crate) fn cork() -> Corked {
    CORK.with(|c| c.borrow_mut().depth += 1);
    Corked(std::marker::PhantomData)
}

impl Drop for Corked {
    fn drop(&mut self) {
        uncork();
    }
}

/// Corks this thread's writes for the batch of events the application is
/// handling, which spans two calls (taking the batch, saying it is handled):
/// until `end_batch`. Idempotent.
pub(crate) fn begin_batch() {
    CORK.with(|c| {
        let mut c = c.borrow_mut();
        if !c.batch {
            c.batch = true;
            c.depth += 1;
        }
    });
}

/// Releases the cork of `begin_batch`, if any.
pub(crate) fn end_batch() {
    if CORK.with(|c| std::mem::take(&mut c.borrow_mut().batch)) {
        uncork();
    }
}

fn uncork() {
    let waiting = CORK.with(|c| {
        let mut c = c.borrow_mut();
        c.depth -= 1;
        if c.depth == 0 {
            c.listed.clear();
            std::mem::take(&mut c.waiting)
        } else {
            Vec::new()
        }
    });
    for writer in waiting {
        writer.wake_writer();
    }
}

/// Whether a write of `writer` waits for the cork of this thread (it is
/// then listed, once, to be written when the cork is released).
pub(crate) fn hold<W: Writer + 'static>(writer: &Weak<W>) -> bool {
    CORK.with(|c| {
        let mut c = c.borrow_mut();
        if c.depth == 0 {
            return false;
        }
        let Some(writer) = writer.upgrade() else { return false };
        if c.listed.insert(Arc::as_ptr(&writer).cast()) {
            c.waiting.push(writer);
        }
        true
    })
}

/// Writes now what this thread holds back of `writer`, ahead of the rest:
/// before its connection is destroyed. Node sends what was written before
/// `destroy()` when the socket takes it; so do we, though a listener
/// answering the batch it handles may be corked (e.g. a handshake's reply,
/// then `destroy()` in a promise continuation of the same batch).
pub(crate) fn flush<W: Writer + 'static>(writer: &Arc<W>) {
    let me: *const () = Arc::as_ptr(writer).cast();
    let depth = CORK.with(|c| {
        let mut c = c.borrow_mut();
        if !c.listed.remove(&me) {
            return None;
        }
        c.waiting.retain(|w| Arc::as_ptr(w).cast::<()>() != me);
        // Not held again while it writes.
        Some(std::mem::take(&mut c.depth))
    });
    if let Some(depth) = depth {
        writer.wake_writer();
        CORK.with(|c| c.borrow_mut().depth = depth);
    }
}
