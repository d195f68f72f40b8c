//! Native sockets (TCP, Unix) as tokio sees them, on Unix: registered with
//! its reactor for reads and writes while the reader task reads them; once
//! the application's loop does (`stop_tokio_reads`), not at all until a
//! write finds the socket's buffer full, and then for writes only.
//! Registered for reads, as a tokio stream always is, the reactor thread
//! would wake for every segment that arrives, only to note a readiness no
//! one waits for: a thread wake-up per message, slow on an idle machine
//! whose vCPUs halt (bench/README.md, "Round trip"). Registered for
//! writability alone (edge-triggered), it hears of the socket only after a
//! write found the buffer full, and of errors. And an idle connection
//! (10,000 of them) need not hold a registration (~256 bytes, and the 48
//! bytes that refer to it, boxed) at all: the errors its writes would meet,
//! the application's loop reads first.

use super::{DirectWrite, SharedSocket};
use crate::engine::delivery::lock;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected, non-blocking std socket and its registration with tokio.
#[derive(Debug)]
pub(crate) struct NativeSocket<S> {
    /// Declared before `socket`, so dropped (deregistered) before it closes.
    reg: Mutex<Registration>,
    socket: S,
}

#[derive(Debug)]
struct Registration {
    /// None once the application's loop reads, until a write must wait
    /// for writability (`poll_write` registers then; if that fails, the
    /// write fails, which ends the transport). Boxed: an idle connection
    /// has none, and keeps 8 bytes here instead of 48.
    fd: Option<Box<Registered>>,
    /// Whether `fd` is registered for reads too.
    reads: bool,
}

/// The socket's registration with tokio, while it has one.
#[derive(Debug)]
struct Registered {
    fd: AsyncFd<Fd>,
    /// The writer task's waker while it waits for writability: a
    /// registration that is replaced forgets its waiters without waking
    /// them.
    writer: Option<Waker>,
}

impl Registered {
    fn new(fd: RawFd, interest: Interest) -> io::Result<Box<Self>> {
        Ok(Box::new(Registered { fd: register(fd, interest)?, writer: None }))
    }
}

/// The socket's fd, as `AsyncFd` wants to own something.
#[derive(Debug)]
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn register(fd: RawFd, interest: Interest) -> io::Result<AsyncFd<Fd>> {
    // SAFETY: `fd` is the fd of the `NativeSocket`'s socket, which closes
    // it only after this registration is dropped (field order).
    unsafe { Ok(AsyncFd::register_with_interest(Fd(fd), interest)?) }
}

impl<S: AsRawFd> NativeSocket<S> {
    /// Registers `socket` (non-blocking) with the current runtime.
    pub(super) fn new(socket: S) -> io::Result<Self> {
        let fd = Registered::new(socket.as_raw_fd(), Interest::READABLE | Interest::WRITABLE)?;
        Ok(NativeSocket { reg: Mutex::new(Registration { fd: Some(fd), reads: true }), socket })
    }
}

impl<S> DirectWrite for NativeSocket<S>
where
    S: AsRawFd + AsFd + Send + Sync + std::fmt::Debug + 'static,
    for<'a> &'a S: Read + Write,
{
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.socket).write(buf)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.socket).read(buf)
    }
    fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.socket).shutdown(std::net::Shutdown::Both);
    }
    fn stop_tokio_reads(&self) {
        let mut reg = lock(&self.reg);
        if !reg.reads {
            return;
        }
        reg.reads = false;
        // Registered again only when a write has to wait (`poll_write`).
        if let Some(old) = reg.fd.take() {
            let Registered { fd, writer } = *old;
            drop(fd);
            // A writer waiting on the old registration registers anew.
            if let Some(writer) = writer {
                writer.wake();
            }
        }
    }
    fn stream(self: std::sync::Arc<Self>) -> super::BoxStream {
        Box::new(SharedSocket(self))
    }
}

impl<S> AsyncRead for SharedSocket<NativeSocket<S>>
where
    S: AsRawFd,
    for<'a> &'a S: Read,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let reg = lock(&self.0.reg);
        let Some(fd) = reg.fd.as_ref().filter(|_| reg.reads).map(|r| &r.fd) else {
            // `drive` stops reading before it hands the socket over.
            return Poll::Ready(Err(io::Error::other("the socket is read on the application's loop")));
        };
        loop {
            let mut ready = std::task::ready!(fd.poll_read_ready(cx))?;
            match ready.try_io(|_| (&self.0.socket).read(buf.initialize_unfilled())) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl<S> AsyncWrite for SharedSocket<NativeSocket<S>>
where
    S: AsRawFd + AsFd,
    for<'a> &'a S: Write,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut reg = lock(&self.0.reg);
        loop {
            let registered = match reg.fd.as_mut() {
                Some(registered) => registered,
                None => {
                    match (&self.0.socket).write(buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        r => return Poll::Ready(r),
                    }
                    // Edge-triggered: registered while the buffer is full,
                    // the reactor hears when it drains (or at once, if it
                    // drained in between).
                    reg.fd.insert(Registered::new(self.0.socket.as_raw_fd(), Interest::WRITABLE)?)
                }
            };
            let mut ready = match registered.fd.poll_write_ready(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    registered.writer = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            };
            match ready.try_io(|_| (&self.0.socket).write(buf)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.socket).shutdown(std::net::Shutdown::Write))
    }
}
