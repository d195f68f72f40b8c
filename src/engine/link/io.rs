//! Moving bytes: `drive` runs one transport (the reader loop),
//! `wake_writer` writes from the caller's thread when the socket allows it
//! and otherwise starts a writer task, which ends once it has written
//! everything, and `receive` feeds what was read to the peer.

use super::transport_ctl::{BoxWriter, Transport, WriterSlot};
use super::Link;
use crate::engine::delivery::lock;
use crate::engine::diag::Ns;
use crate::engine::events::Kind;
use crate::engine::transport::BoxStream;
use crate::engine::transport::{io_code, Addresses, NonBlocking};
use crate::engine::trim;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long a graceful close waits for the peer to finish before dropping.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a connection that failed (protocol error, heartbeat timeout) may
/// take to flush before it is dropped.
const FAIL_GRACE: Duration = Duration::from_millis(250);
/// Bounds of a connection's read buffer.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// What runs once a link's transport is done: for a server-side link, the
/// connection's end (retire it, report it); for a client, the next turn
/// of its connect loop, in a new task.
pub(crate) type Then = Box<dyn FnOnce() + Send>;

/// The reader of one transport, between two turns of its loop: what a
/// parked reader keeps while no task runs for it.
struct Reading {
    transport: Arc<Transport>,
    /// The read half of a stream that had to be split (TLS, a JavaScript
    /// stream). A native socket is not split: while this task reads it, it
    /// reads through a stream of its own made from the socket
    /// (`DirectWrite::stream`), and holds none while the application's loop
    /// reads.
    rd: Option<BoxReader>,
    /// Whether the application's loop was asked to read the socket
    /// (`watch_externally`).
    watched: bool,
}

/// A stream's read half, or a native socket's stream read by the reader.
type BoxReader = Box<dyn AsyncRead + Send + Unpin>;

impl Link {
    /// Runs one transport to its end; then `then`, if given. Returns when
    /// the socket is closed, or, with a `then`, possibly earlier: once the
    /// application's loop reads the socket, the reader parks (`read_loop`),
    /// and whichever event ends the transport finishes it in a new task.
    pub(crate) async fn drive(self: &Arc<Self>, stream: BoxStream, addresses: Addresses, then: Option<Then>) {
        static NEXT_TRANSPORT: AtomicU64 = AtomicU64::new(1);
        let transport =
            Arc::new(Transport { id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed), ..Transport::default() });
        // The write half waits in the transport until there is output a
        // direct write cannot take (`start_writer`); the first pump may
        // already have some. A native socket (one with a direct handle: TLS
        // and JavaScript streams have none) is not split: `stream` is the
        // reader's (the same socket), and a writer makes its own.
        let rd: Option<BoxReader> = if addresses.direct.is_some() {
            *lock(&transport.writer) = WriterSlot::Idle(None);
            Some(stream)
        } else {
            let (rd, wr) = tokio::io::split(stream);
            *lock(&transport.writer) = WriterSlot::Idle(Some(Box::new(wr)));
            Some(Box::new(rd))
        };
        *lock(&transport.addresses) = addresses;
        *lock(&self.transport) = Some(transport.clone());
        self.metrics.opened();
        trim::note_churn();
        self.log(Ns::Connection, || {
            let a = lock(&transport.addresses);
            let addr = |x: Option<std::net::SocketAddr>| x.map_or("a stream".to_owned(), |a| a.to_string());
            match self.server {
                Some(_) => format!("{} accepted from {}", self.who(), addr(a.remote)),
                None => format!("{} connected to {}", self.who(), addr(a.remote)),
            }
        });
        lock(&self.peer).handle_open(Instant::now());
        self.pump();

        let watched = self.watch_externally(&transport).is_some();
        self.clone().read_loop(Reading { transport, rd, watched }, then).await;
    }

    /// The reader loop of one transport, then its end. Once the
    /// application's loop reads the socket, all this loop still waits for
    /// are events: `kill`, `end`, the other loop's end of stream. With a
    /// `then` to finish with, it parks then instead of waiting in a task
    /// (10,000 idle connections should not hold a task each, ~1 KB), and
    /// the event resumes it (`Transport::parked`). A grace timer, once `end`
    /// started one, is waited for in a task.
    ///
    /// Boxed, as a parked reader's resumption spawns this loop again.
    fn read_loop(self: Arc<Self>, r: Reading, then: Option<Then>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Reading { transport, mut rd, watched } = r;
            let native = transport.direct_socket().is_some();
            // Allocated only while this task reads (not once Node's loop
            // does: 10,000 idle connections should not hold 4 KiB each),
            // small at first, doubled whenever a read fills it.
            let mut buf: Vec<u8> = Vec::new();
            let mut deadline: Option<tokio::time::Instant> = None;
            let mut then = then;
            // Why the loop ended, for `uhura:connection`.
            let reason: std::borrow::Cow<'static, str>;
            loop {
                if deadline.is_none() {
                    let (failed, requested) = {
                        let peer = lock(&self.peer);
                        (peer.has_failed(), peer.close_requested())
                    };
                    if failed || requested || transport.ending.load(Ordering::Acquire) {
                        transport.end();
                        // To flush and send FIN, even with nothing left to write.
                        self.start_writer(&transport);
                        // A broken or silent peer gets only a moment to take the
                        // error's last bytes; a clean end waits for its FIN.
                        let grace = if failed { FAIL_GRACE } else { CLOSE_GRACE };
                        deadline = Some(tokio::time::Instant::now() + grace);
                    }
                }
                let grace = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let ext = &transport.external;
                if ext.requested.load(Ordering::Acquire) && !ext.active.load(Ordering::Acquire) {
                    // For good: nothing hands reading back to this task, so
                    // tokio's reactor need not hear of incoming data any more.
                    if let Some(socket) = transport.direct_socket().filter(|_| watched) {
                        socket.stop_tokio_reads();
                    }
                    ext.active.store(true, Ordering::Release);
                }
                let reading_here = !ext.active.load(Ordering::Acquire);
                if !reading_here && !buf.is_empty() {
                    buf = Vec::new();
                } else if reading_here && buf.is_empty() {
                    buf = vec![0u8; READ_MIN];
                }
                // A native socket's stream only while this task reads it (a
                // split stream's read half is never none).
                if !reading_here && native {
                    rd = None;
                } else if reading_here && rd.is_none() {
                    rd = transport.direct_socket().map(|s| s.stream() as BoxReader);
                }
                if ext.done.load(Ordering::Acquire) {
                    reason = if ext.failed.load(Ordering::Acquire) { "socket error" } else { "the peer closed" }.into();
                    break;
                }
                if !reading_here && deadline.is_none() {
                    if let Some(t) = then.take() {
                        if let Some(mut slot) = transport.parking() {
                            // Resumed by the event, in a new task.
                            let (link, reading) = (self.clone(), Reading { transport: transport.clone(), rd, watched });
                            *slot = Some(Box::new(move || {
                                let rt = link.env.rt.clone();
                                rt.spawn(link.read_loop(reading, Some(t)));
                            }));
                            return;
                        }
                        // An event came: handled below, in this task.
                        then = Some(t);
                    }
                }
                let input_open = lock(&self.peer).wants_read();
                tokio::select! {
                    // A kill, an end, a change on the other loop, or input
                    // may flow again: the flags and `wants_read` are looked
                    // at below and at the top.
                    _ = transport.wake.notified() => {}
                    _ = grace => {
                        reason = "the peer did not close in time after our end".into();
                        break;
                    }
                    r = read(&mut rd, &mut buf), if reading_here && input_open => match r {
                        Ok(0) => {
                            reason = "the peer closed".into();
                            break;
                        }
                        Err(e) => {
                            // Not after the application's destroy().
                            if !transport.destroyed() {
                                self.deliver_error(&e.to_string(), io_code(&e));
                            }
                            reason = format!("socket error: {e}").into();
                            break;
                        }
                        Ok(n) => {
                            if !self.receive(transport.id, &buf[..n]) {
                                reason = "an internal error".into();
                                break;
                            }
                            if n == buf.len() && buf.len() < READ_MAX {
                                buf.resize(buf.len() * 2, 0);
                            } else if n < buf.len() {
                                // Drained: the connection may be idle for a while.
                                self.input_drained();
                                if n < READ_MIN && buf.len() > READ_MIN {
                                    buf = vec![0u8; READ_MIN];
                                }
                            }
                        }
                    },
                }
                if transport.killed.load(Ordering::Acquire) {
                    reason = "destroyed (or a write failed)".into();
                    break;
                }
                self.env.delivery.wait_capacity().await;
            }
            // Waited for, so no writer of this transport can take the peer's
            // output once the next transport has it.
            let writer = std::mem::take(&mut *lock(&transport.writer));
            if let WriterSlot::Running(writer) = writer {
                writer.abort();
                let _ = writer.await;
            }
            if let Some(socket) = transport.direct_socket().filter(|_| watched) {
                // The other loop still holds the fd until it stops watching;
                // the peer must see the close now.
                socket.shutdown();
                let id = transport.id;
                self.deliver(Kind::Unwatch, |b| {
                    let _ = write!(b, "{id}");
                });
            }
            self.log(Ns::Connection, || {
                let failed = lock(&self.peer).has_failed();
                let ending = transport.ending.load(Ordering::Acquire);
                let why = if failed {
                    " after a protocol error or timeout"
                } else if ending && deadline.is_some() {
                    " after our end()"
                } else {
                    ""
                };
                format!("{} closed: {reason}{why}", self.who())
            });
            lock(&self.peer).handle_close();
            self.pump();
            self.metrics.closed();
            trim::note_churn();
            *lock(&self.transport) = None;
            if let Some(then) = then {
                then();
            }
        })
    }

    /// Hands bytes read from `transport` to the peer; false if that
    /// panicked. Bytes of a transport that is no longer the link's are
    /// dropped: read on Node's loop while a tokio thread closed it and opened
    /// the next, they would be fed to the next one's reader, mid-stream.
    pub(super) fn receive(self: &Arc<Self>, transport: u64, bytes: &[u8]) -> bool {
        self.guarded(|| {
            crate::engine::fault::inject(bytes);
            {
                let mut peer = lock(&self.peer);
                if self.transport_by_id(transport).is_none() {
                    return;
                }
                peer.handle_receive(bytes, Instant::now());
            }
            self.metrics.received_bytes(bytes.len());
            self.pump();
        })
        .is_some()
    }

    /// Gets pending output onto the wire: straight from this thread when the
    /// socket allows it and no writer task holds unwritten bytes, else
    /// through a writer task (started if none runs). While this thread is
    /// corked (`engine::cork`), once the cork is released.
    pub(crate) fn wake_writer(&self) {
        if crate::engine::cork::hold(&self.me) {
            return;
        }
        let Some(t) = self.transport() else { return };
        let direct = lock(&t.addresses).direct.clone();
        if let Some(direct) = direct.filter(|_| !t.ending.load(Ordering::Acquire)) {
            let mut peer = lock(&self.peer);
            // Also true when acks that just arrived made room in the window.
            if !peer.wants_write() {
                return;
            }
            if !*lock(&t.writer_busy) {
                let held_back = !peer.wants_read();
                // What the socket does not take stays in the peer, ahead of
                // anything newer, for the writer task.
                let written = peer.write_to(&mut NonBlocking(&*direct));
                let (done, freed) = (!peer.wants_write(), held_back && peer.wants_read());
                drop(peer);
                if freed {
                    self.wake_reader();
                }
                if let Ok(n) = written {
                    self.metrics.sent_bytes(n);
                }
                match written {
                    Ok(_) if done => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        t.kill();
                        return;
                    }
                }
            }
        }
        if let Some(me) = self.me.upgrade() {
            me.start_writer(&t);
        }
    }

    /// Spawns the writer task of transport `t` unless one runs (it will
    /// find the new output: it looks again before it ends) or `t` is done.
    fn start_writer(self: &Arc<Self>, t: &Arc<Transport>) {
        let mut slot = lock(&t.writer);
        if !matches!(*slot, WriterSlot::Idle(_)) {
            return;
        }
        if let WriterSlot::Idle(wr) = std::mem::take(&mut *slot) {
            *slot = WriterSlot::Running(self.env.rt.spawn(write_loop(self.clone(), t.clone(), wr)));
        }
    }

    /// Input may flow again (`Peer::wants_read`): the session is loaded (or
    /// a new one started), or our output was written down below its low
    /// water mark. Wakes the tokio reader or the application's loop.
    pub(super) fn wake_reader(&self) {
        if let Some(t) = self.transport() {
            // The reader looks at `wants_read` again whenever it wakes; a
            // reader that has yet to wait finds the permit.
            t.wake.notify_one();
            self.resume_external(t.id);
        }
    }
}

/// A read of the reader's stream; never ready without one (a native
/// socket has none only while the application's loop reads it, and then no
/// read is polled).
async fn read(rd: &mut Option<BoxReader>, buf: &mut [u8]) -> std::io::Result<usize> {
    match rd {
        Some(rd) => rd.read(buf).await,
        None => std::future::pending().await,
    }
}

impl crate::engine::cork::Writer for Link {
    fn wake_writer(&self) {
        Link::wake_writer(self);
    }
}

/// The writer task of one transport, while it has output: takes the
/// peer's output under the peer lock (marking itself busy, so direct writes
/// wait), writes it with the lock let go, and ends once nothing is left,
/// giving the write half back (`WriterSlot::Idle`). When the transport ends
/// it flushes and sends FIN instead. A write error kills the transport.
async fn write_loop(link: Arc<Link>, transport: Arc<Transport>, wr: Option<BoxWriter>) {
    // A native socket's stream, made for this task and dropped when it ends
    // (the slot keeps none: idle connections are many).
    let native = wr.is_none();
    let mut wr = wr.or_else(|| transport.direct_socket().map(|s| s.stream() as BoxWriter));
    let mut out = Vec::new();
    loop {
        let freed = {
            let mut peer = lock(&link.peer);
            let held_back = !peer.wants_read();
            peer.poll_transmit(&mut out);
            *lock(&transport.writer_busy) = !out.is_empty();
            if out.is_empty() {
                // Under the peer lock, so output framed after this look
                // finds the half back and starts a writer; and `ending` read
                // under the slot lock, so an `end()` whose `start_writer`
                // found this task running is seen here.
                let mut slot = lock(&transport.writer);
                if !transport.ending.load(Ordering::Acquire) {
                    if let (WriterSlot::Running(_), Some(wr)) = (&*slot, wr.take()) {
                        *slot = WriterSlot::Idle((!native).then_some(wr));
                    }
                }
            }
            held_back && peer.wants_read()
        };
        if freed {
            // Reading stopped over our backlog, now ours to write.
            link.wake_reader();
        }
        let Some(w) = wr.as_mut() else { return };
        if !out.is_empty() {
            if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
                transport.kill();
                return;
            }
            link.metrics.sent_bytes(out.len());
            out.clear();
            if out.capacity() > 1 << 20 {
                out = Vec::new();
            }
            continue;
        }
        // Ending, and everything is written.
        let _ = w.shutdown().await;
        return;
    }
}
