//! Reads on the application's own loop (Node's libuv, src/node/uv.rs):
//! for a native socket, a WATCH event asks the application to watch it, the
//! reader task hands over between two of its reads (`ExternalRead`), and
//! readiness then calls `read_external` on the application's thread.

use super::transport_ctl::Transport;
use super::Link;
use crate::engine::delivery::lock;
use crate::engine::events::Kind;
use crate::engine::transport::{io_code, DirectWrite};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// At most this much is read per readiness callback on the application's
/// loop, so one busy socket does not starve the loop's other work.
const EXTERNAL_READ_BUDGET: usize = 256 * 1024;

/// What the application's loop should do with its watch after a read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    Keep,
    /// Stop until a WATCH event asks again.
    Pause,
    /// The transport is done with the socket.
    Stop,
}

impl Link {
    /// Asks the application's loop to read this transport's socket, when the
    /// engine is set up for it and the socket allows it.
    pub(super) fn watch_externally(&self, transport: &Transport) -> Option<Arc<dyn DirectWrite>> {
        let shared = self.env.shared.upgrade()?;
        if !shared.external_reads.load(Ordering::Acquire) {
            return None;
        }
        let socket = lock(&transport.addresses).direct.clone()?;
        let id = transport.id;
        self.deliver(Kind::Watch, |b| {
            let _ = write!(b, "{id}");
        });
        Some(socket)
    }

    /// The application's loop can no longer watch transport `id`: end it.
    pub(crate) fn external_failed(&self, id: u64) {
        if let Some(t) = self.transport_by_id(id) {
            t.external.failed.store(true, Ordering::Release);
            t.external_done();
        }
    }

    /// Watches transport `id` on the application's loop again, if it paused.
    pub(crate) fn resume_external(&self, id: u64) {
        let Some(t) = self.transport_by_id(id) else { return };
        if t.external.paused.swap(false, Ordering::AcqRel) {
            self.deliver(Kind::Watch, |b| {
                let _ = write!(b, "{id}");
            });
        }
    }

    /// The application's loop is watching the socket (called on that loop).
    pub(crate) fn external_watch_started(&self, t: &Transport) {
        t.external.requested.store(true, Ordering::Release);
        t.wake.notify_one();
    }

    /// Called on the application's loop when the socket is readable: reads
    /// what is there (bounded per call) and feeds it to the state machine.
    /// Only one loop reads a transport at a time (`external.active`).
    /// Returns whether to keep watching.
    pub(crate) fn read_external(self: &Arc<Self>, transport: u64, buf: &mut [u8]) -> Watch {
        let Some(t) = self.transport_by_id(transport) else { return Watch::Stop };
        if !t.external.active.load(Ordering::Acquire) {
            // The reader task has not handed over yet; it will shortly.
            return Watch::Keep;
        }
        // Destroyed by the application: the reader task closes it, and what
        // the socket says meanwhile (a reset from the peer) is not reported.
        if t.external.done.load(Ordering::Acquire) || t.destroyed() {
            return Watch::Stop;
        }
        let Some(socket) = lock(&t.addresses).direct.clone() else { return Watch::Stop };
        let mut total = 0;
        loop {
            {
                let peer = lock(&self.peer);
                if !peer.wants_read() {
                    // Marked under the peer lock: what makes the peer want
                    // input again happens under it too, and then finds the
                    // mark and watches again (`wake_reader`).
                    t.external.paused.store(true, Ordering::Release);
                    return Watch::Pause;
                }
            }
            // The application is behind: as the tokio reader waits in
            // `wait_capacity`, stop watching until it takes the batch.
            if self.env.delivery.over_capacity() {
                if let Some(shared) = self.env.shared.upgrade() {
                    t.external.paused.store(true, Ordering::Release);
                    shared.pause_for_delivery(self, transport);
                    return Watch::Pause;
                }
            }
            match socket.try_read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !self.receive(transport, &buf[..n]) {
                        break;
                    }
                    total += n;
                    if n < buf.len() {
                        // Drained: the connection may be idle for a while.
                        self.input_drained();
                        return Watch::Keep;
                    }
                    if total >= EXTERNAL_READ_BUDGET {
                        return Watch::Keep;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.input_drained();
                    return Watch::Keep;
                }
                Err(e) => {
                    if !t.destroyed() {
                        self.deliver_error(&e.to_string(), io_code(&e));
                    }
                    t.external.failed.store(true, Ordering::Release);
                    break;
                }
            }
        }
        t.external_done();
        Watch::Stop
    }
}
