//! `Transport`: the control block of the socket a link drives now. A link
//! outlives its sockets (a client reconnects), so everything about one
//! socket lives here and is dropped with it; `id` keeps late events about an
//! old socket from touching the next. `ExternalRead` is the part of that
//! state that hands reading over to the application's loop; the reads
//! themselves are in `external_read.rs`.

use crate::engine::delivery::lock;
use crate::engine::transport::{Addresses, DirectWrite};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

/// Control of the current transport, one per socket.
#[derive(Default)]
pub(crate) struct Transport {
    /// Unique per transport, so events about it never apply to a later one.
    pub(crate) id: u64,
    /// Wakes the reader when one of the flags it waits for is set:
    /// `killed`, `ending`, or a change in `external`, and when input may
    /// flow again (`Link::wake_reader`). One `Notify` for all
    /// (each is 32 bytes, in every connection): the reader looks at every
    /// flag whenever it wakes.
    pub(super) wake: Notify,
    /// Set by `destroy()` or a write failure: drop the socket now.
    pub(super) killed: AtomicBool,
    /// The application destroyed it (`destroy`, not a failed write): the
    /// socket's errors from then on are not reported, as after a net
    /// socket's destroy().
    pub(super) destroyed: AtomicBool,
    /// Set by `end()`: flush, send FIN, wait for the peer to close.
    pub(super) ending: AtomicBool,
    /// The socket's write half (none for a native socket), and whether a
    /// writer task holds it (one runs only while there is output a direct
    /// write could not take).
    pub(super) writer: Mutex<WriterSlot>,
    /// Node's addresses of the socket, and its direct-write handle.
    pub(crate) addresses: Mutex<Addresses>,
    /// The writer task holds bytes it has not finished writing; set and
    /// cleared under the peer lock, so direct writes never overtake them.
    pub(super) writer_busy: Mutex<bool>,
    /// The hand-over of reading to the application's loop.
    pub(super) external: ExternalRead,
    /// The reader, while it waits for an event without a task
    /// (`Link::read_loop`): what goes on with its loop in a new task.
    pub(super) parked: Mutex<Option<Resume>>,
}

impl Transport {
    /// The socket, when it may be used directly (plain TCP or Unix).
    pub(crate) fn direct_socket(&self) -> Option<Arc<dyn DirectWrite>> {
        lock(&self.addresses).direct.clone()
    }

    /// `destroy()` or a failed write: the reader drops the socket now.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.wake.notify_one();
        self.unpark();
    }
    /// `destroy()`: as `kill`, and what the socket says meanwhile (a reset
    /// from the peer) is no longer the application's business.
    pub(crate) fn destroy(&self) {
        self.destroyed.store(true, Ordering::Release);
        self.kill();
    }

    /// Whether the application destroyed it (`destroy`).
    pub(super) fn destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// `end()`: the reader starts a writer, which flushes and sends FIN, and
    /// waits for the peer to close, up to a grace period.
    pub(crate) fn end(&self) {
        self.ending.store(true, Ordering::Release);
        self.wake.notify_one();
        self.unpark();
    }

    /// The other loop saw the end of the stream (or an error, `failed` set
    /// before): the reader ends the transport.
    pub(super) fn external_done(&self) {
        self.external.done.store(true, Ordering::Release);
        self.wake.notify_one();
        self.unpark();
    }

    /// The reader's slot to park in, unless an event it waits for (kill,
    /// end, the other loop's end of stream) has come. The events set their
    /// flag before they look in the slot, and the slot's lock orders the
    /// two: either the reader sees the flag and does not park, or the event
    /// finds the reader parked and resumes it.
    pub(super) fn parking(&self) -> Option<std::sync::MutexGuard<'_, Option<Resume>>> {
        let slot = lock(&self.parked);
        let woken = self.killed.load(Ordering::Acquire)
            || self.ending.load(Ordering::Acquire)
            || self.external.done.load(Ordering::Acquire);
        (!woken).then_some(slot)
    }

    /// Resumes the reader if it is parked.
    fn unpark(&self) {
        let parked = lock(&self.parked).take();
        if let Some(resume) = parked {
            resume();
        }
    }
}

/// A parked reader's way back into its loop (`Transport::parking`).
pub(super) type Resume = Box<dyn FnOnce() + Send>;

/// A socket's write half, type-erased: whatever the transport (TCP, Unix,
/// TLS, a JavaScript stream), the writer task is the same code.
pub(super) type BoxWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Who has the write half. An idle connection has no writer task (a task
/// and its future cost hundreds of bytes each, times every connection):
/// `Link::start_writer` spawns one when output is waiting that a direct
/// write could not take, and it puts the half back here when it has written
/// everything.
#[derive(Default)]
pub(super) enum WriterSlot {
    /// The transport has not started, or is done: no more writers.
    #[default]
    Gone,
    /// No writer task runs; the next one takes the half from here, or,
    /// with none (a native socket, never split), makes its own stream of
    /// the socket (`DirectWrite::stream`) and drops it when it ends.
    Idle(Option<BoxWriter>),
    /// A writer task holds the half; `drive` ends it with the transport.
    Running(tokio::task::JoinHandle<()>),
}

/// Reading moved to the application's own event loop (Node's libuv, see
/// src/node/uv.rs): the socket's readiness then wakes the thread that runs
/// the listeners, not a tokio thread that must wake it in turn.
#[derive(Default)]
pub(crate) struct ExternalRead {
    /// The application's loop is watching the socket.
    pub(super) requested: AtomicBool,
    /// The reader task has stopped reading: the application's loop reads.
    /// Set by the reader task between reads, so no read of its own is in
    /// flight when the other loop starts.
    pub(super) active: AtomicBool,
    /// The other loop saw the end of the stream or an error.
    pub(super) done: AtomicBool,
    /// It was an error.
    pub(super) failed: AtomicBool,
    /// The other loop stopped watching because our output is backed up (a
    /// peer that sends but does not read); the writer asks it to resume.
    pub(super) paused: AtomicBool,
}
