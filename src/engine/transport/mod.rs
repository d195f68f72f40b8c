//! Byte streams a link can run over: TCP, Unix sockets, TLS over either, and
//! streams pumped from JavaScript. Everything past this module sees one boxed
//! `Stream`, so the protocol code is the same on all of them. On Unix, native
//! sockets are `native::NativeSocket`s.
//!
//! Unix sockets exist on Unix only: elsewhere (Windows) binding or connecting
//! to a path is an error. `--cfg uhura_portable` compiles that fallback on
//! Unix too, so that CI checks the non-Unix code without a Windows toolchain.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
#[cfg(all(unix, not(uhura_portable)))]
use tokio::net::{UnixListener, UnixStream};

#[cfg(all(unix, not(uhura_portable)))]
mod native;

/// A byte stream a transport runs over (TCP, Unix, TLS, a JavaScript stream).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
/// A transport's stream, whatever its kind.
pub type BoxStream = Box<dyn Stream>;

/// What a link knows of its socket: addresses as Node reports them, and
/// the socket itself when it may be written to directly (plain TCP or Unix;
/// not TLS, whose handshake takes it away (`tls/`), not a JavaScript
/// stream).
#[derive(Debug, Clone, Default)]
pub(crate) struct Addresses {
    /// The peer's address (`remoteAddress` / `remotePort`); none on Unix
    /// sockets and JavaScript streams that do not say.
    pub(crate) remote: Option<std::net::SocketAddr>,
    /// Our end's address (`localAddress` / `localPort`).
    pub(crate) local: Option<std::net::SocketAddr>,
    /// The socket for direct writes and reads on the application's loop.
    pub(crate) direct: Option<Arc<dyn DirectWrite>>,
}

/// A socket any thread may write to without waiting: the API thread writes
/// straight to the kernel when the writer task is idle, which saves a
/// cross-thread wake-up per send (~15 µs each, docs/ARCHITECTURE.md).
pub(crate) trait DirectWrite: Send + Sync + std::fmt::Debug {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Reads without waiting (for a reader on another event loop).
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// For the poll handle on Node's loop (`src/node/uv.rs`, Unix only).
    #[cfg(all(unix, not(uhura_portable)))]
    fn raw_fd(&self) -> std::os::fd::RawFd;
    /// Ends both directions now, even while other handles keep the fd open.
    fn shutdown(&self);
    /// The application's loop reads the socket from now on (`drive`): tokio
    /// need no longer hear that it is readable.
    fn stop_tokio_reads(&self) {}
    /// The socket as a tokio stream, for the reader or the writer task. Each
    /// task makes its own while it runs: both share the socket through the
    /// `Arc`, so a native socket needs no `tokio::io::split` (its shared
    /// state and halves, ~100 bytes per connection, idle or not).
    fn stream(self: Arc<Self>) -> BoxStream;
}

/// The kernel's smoothed round-trip time of a TCP socket (`TCP_INFO`), in
/// microseconds; none for other sockets and where it is not known.
#[cfg(all(target_os = "linux", not(uhura_portable)))]
pub(crate) fn kernel_rtt_us(socket: &dyn DirectWrite) -> Option<u32> {
    // SAFETY: `tcp_info` is plain data; getsockopt writes at most `len`
    // bytes of it, and fails on a socket that is not TCP.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            socket.raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc == 0 && info.tcpi_rtt > 0).then_some(info.tcpi_rtt)
    }
}

/// Not measured here (not Linux, or the portable build).
#[cfg(not(all(target_os = "linux", not(uhura_portable))))]
pub(crate) fn kernel_rtt_us(_socket: &dyn DirectWrite) -> Option<u32> {
    None
}

/// A `DirectWrite` as an `io::Write`, one non-blocking write per call (for
/// `Peer::write_to`): `WouldBlock` is an error, as `try_write` reports it.
pub(crate) struct NonBlocking<'a>(pub(crate) &'a dyn DirectWrite);

impl io::Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A socket shared between its reader and writer tasks and `DirectWrite`
/// callers; the tasks wait for readiness and then read or write without
/// waiting, which needs only a shared reference.
#[derive(Debug)]
pub(crate) struct SharedSocket<T>(pub Arc<T>);

#[cfg(not(all(unix, not(uhura_portable))))]
impl DirectWrite for TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
    fn shutdown(&self) {
        let _ = socket2::SockRef::from(self).shutdown(std::net::Shutdown::Both);
    }
    fn stream(self: Arc<Self>) -> BoxStream {
        Box::new(SharedSocket(self))
    }
}

#[cfg(not(all(unix, not(uhura_portable))))]
impl AsyncRead for SharedSocket<TcpStream> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        loop {
            std::task::ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(not(all(unix, not(uhura_portable))))]
impl AsyncWrite for SharedSocket<TcpStream> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        use std::task::Poll;
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// A stream for the link, and the same socket for direct writes.
fn shared<T: DirectWrite + 'static>(socket: T) -> (BoxStream, Option<Arc<dyn DirectWrite>>) {
    let socket: Arc<dyn DirectWrite> = Arc::new(socket);
    (socket.clone().stream(), Some(socket))
}

/// A connected TCP socket as a link's stream (see `native`).
#[cfg(all(unix, not(uhura_portable)))]
fn shared_tcp(s: TcpStream) -> io::Result<(BoxStream, Option<Arc<dyn DirectWrite>>)> {
    Ok(shared(native::NativeSocket::new(s.into_std()?)?))
}

/// A connected TCP socket as a link's stream.
#[cfg(not(all(unix, not(uhura_portable))))]
fn shared_tcp(s: TcpStream) -> io::Result<(BoxStream, Option<Arc<dyn DirectWrite>>)> {
    Ok(shared(s))
}

/// A connected Unix socket as a link's stream (see `native`).
#[cfg(all(unix, not(uhura_portable)))]
fn shared_unix(s: UnixStream) -> io::Result<(BoxStream, Option<Arc<dyn DirectWrite>>)> {
    Ok(shared(native::NativeSocket::new(s.into_std()?)?))
}

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp { host: Option<String>, port: u16 },
    Unix { path: PathBuf },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp { host, port } => write!(f, "{}:{port}", host.as_deref().unwrap_or("localhost")),
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
        }
    }
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    #[cfg(all(unix, not(uhura_portable)))]
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub(crate) async fn bind(endpoint: &Endpoint, backlog: Option<u32>) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Tcp { host, port } => {
                bind_tcp(host.as_deref(), *port, backlog.unwrap_or(511)).await.map(Listener::Tcp)
            }
            #[cfg(all(unix, not(uhura_portable)))]
            Endpoint::Unix { path } => bind_unix(path).map(|l| Listener::Unix(l, path.clone())),
            #[cfg(not(all(unix, not(uhura_portable))))]
            Endpoint::Unix { .. } => Err(unix_unsupported()),
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<(BoxStream, Addresses)> {
        match self {
            Listener::Tcp(l) => {
                let (s, remote) = l.accept().await?;
                let _ = s.set_nodelay(true);
                set_keepalive(&s);
                let local = s.local_addr().ok();
                let (stream, direct) = shared_tcp(s)?;
                Ok((stream, Addresses { remote: Some(remote), local, direct }))
            }
            #[cfg(all(unix, not(uhura_portable)))]
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                let (stream, direct) = shared_unix(s)?;
                Ok((stream, Addresses { direct, ..Addresses::default() }))
            }
        }
    }

    /// What `server.address()` returns, as JSON.
    pub(crate) fn address_json(&self) -> serde_json::Value {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => serde_json::json!({
                    "address": a.ip().to_string(),
                    "port": a.port(),
                    "family": if a.is_ipv4() { "IPv4" } else { "IPv6" },
                }),
                Err(_) => serde_json::Value::Null,
            },
            #[cfg(all(unix, not(uhura_portable)))]
            Listener::Unix(_, path) => serde_json::Value::String(path.display().to_string()),
        }
    }
}

#[cfg(all(unix, not(uhura_portable)))]
impl Drop for Listener {
    fn drop(&mut self) {
        // Node's server.close() removes its socket file; so do we.
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn bind_tcp(host: Option<&str>, port: u16, backlog: u32) -> io::Result<TcpListener> {
    let addrs: Vec<std::net::SocketAddr> = match host {
        // Like Node: no host means every address, IPv6 and IPv4 when possible.
        None | Some("") => {
            vec![(std::net::Ipv6Addr::UNSPECIFIED, port).into(), (std::net::Ipv4Addr::UNSPECIFIED, port).into()]
        }
        Some(host) => tokio::net::lookup_host((host, port)).await?.collect(),
    };
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to listen on");
    for addr in addrs {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|_| socket.listen(backlog)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Binds a Unix socket. A socket file left by a dead process (nothing
/// accepts on it) is removed first; a live one is EADDRINUSE, as in Node.
#[cfg(all(unix, not(uhura_portable)))]
fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(e),
            Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)?;
                UnixListener::bind(path)
            }
            Err(_) => Err(e),
        },
        r => r,
    }
}

/// Opens a stream to `endpoint`, trying each resolved address in turn.
pub(crate) async fn connect(endpoint: &Endpoint) -> io::Result<(BoxStream, Addresses)> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let host = host.as_deref().filter(|h| !h.is_empty()).unwrap_or("localhost");
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("getaddrinfo ENOTFOUND {host}"));
            for addr in tokio::net::lookup_host((host, *port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        set_keepalive(&s);
                        let (remote, local) = (s.peer_addr().ok(), s.local_addr().ok());
                        let (stream, direct) = shared_tcp(s)?;
                        return Ok((stream, Addresses { remote, local, direct }));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        #[cfg(all(unix, not(uhura_portable)))]
        Endpoint::Unix { path } => {
            let (stream, direct) = shared_unix(UnixStream::connect(path).await?)?;
            Ok((stream, Addresses { direct, ..Addresses::default() }))
        }
        #[cfg(not(all(unix, not(uhura_portable))))]
        Endpoint::Unix { .. } => Err(unix_unsupported()),
    }
}

/// A Unix socket address where there are none. Named pipes, Windows' nearest
/// equivalent, accept differently (one pipe instance per client) and are not
/// implemented; TCP on 127.0.0.1 works everywhere.
#[cfg(not(all(unix, not(uhura_portable))))]
fn unix_unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "Unix sockets are not supported on this platform")
}

/// Idle time before the first TCP keepalive probe (net's `keepAliveInitialDelay`).
pub const KEEPALIVE_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// TCP keepalive on native sockets, so the kernel eventually notices a peer
/// that vanished even when the application is idle.
pub(crate) fn set_keepalive(s: &TcpStream) {
    let sock = socket2::SockRef::from(s);
    let ka = socket2::TcpKeepalive::new().with_time(KEEPALIVE_TIME).with_interval(std::time::Duration::from_secs(10));
    let _ = sock.set_tcp_keepalive(&ka);
}

/// Node's `err.code` for the I/O errors a socket reports.
pub(crate) fn io_code(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    Some(match e.kind() {
        ConnectionRefused => "ECONNREFUSED",
        ConnectionReset => "ECONNRESET",
        ConnectionAborted => "ECONNABORTED",
        BrokenPipe => "EPIPE",
        AddrInUse => "EADDRINUSE",
        AddrNotAvailable => "EADDRNOTAVAIL",
        PermissionDenied => "EACCES",
        TimedOut => "ETIMEDOUT",
        NotFound => "ENOENT",
        HostUnreachable => "EHOSTUNREACH",
        NetworkUnreachable => "ENETUNREACH",
        _ => return None,
    })
}
