//! A `Link` is one application-visible connection (a client, or one
//! server-side connection) and the task pair that drives its current
//! transport: a reader that feeds the protocol state machine, and a writer
//! that flushes what it produced. Reading and writing are separate tasks so
//! a peer that is busy writing to us can never deadlock against our writes.

use super::delivery::{lock, Delivery};
use super::store::SessionStore;
use crate::protocol::peer::{Event, Peer};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// How long a graceful close waits for the peer to finish before dropping.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Readers stop reading while this much output is waiting (a peer that
/// sends but does not read cannot grow our ack backlog without bound).
const OUTPUT_HIGH_WATER: usize = 16 * 1024 * 1024;

/// Entry kinds of the delivery format (see index.js `dispatch`).
pub mod kind {
    pub const MESSAGE: u8 = 0;
    pub const ACKED: u8 = 1;
    pub const SET: u8 = 2;
    pub const CONNECTED: u8 = 3;
    pub const DISCONNECTED: u8 = 4;
    pub const ERROR: u8 = 5;
    pub const LISTENING: u8 = 6;
    pub const CLOSED: u8 = 7;
    pub const DROPPED: u8 = 8;
    pub const RECONNECTING: u8 = 9;
    /// JS transports: output is ready for `take_output`.
    pub const OUTPUT: u8 = 10;
    /// JS transports: the link is done; close the JS stream.
    pub const TRANSPORT_CLOSED: u8 = 11;
    /// JS transports: input was paused by `feed`; resume it.
    pub const RESUME_INPUT: u8 = 12;
    /// JS client transports: call the `createConnection` factory.
    pub const OPEN_TRANSPORT: u8 = 13;
    /// Servers with a JavaScript store: run a store operation.
    pub const STORE_OP: u8 = 14;
}

/// Socket addresses as Node reports them.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub remote: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
}

/// Control of the current transport, one per socket.
#[derive(Default)]
pub struct Transport {
    /// Set by `destroy()` or a write failure: drop the socket now.
    kill: Notify,
    killed: AtomicBool,
    /// Set by `end()`: flush, send FIN, wait for the peer to close.
    ending: AtomicBool,
    /// Wakes the reader when `ending` is set, so it starts the grace timer.
    ending_wake: Notify,
    writer_wake: Notify,
    pub addresses: Mutex<Addresses>,
}

impl Transport {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }
    pub fn end(&self) {
        self.ending.store(true, Ordering::Release);
        self.writer_wake.notify_one();
        self.ending_wake.notify_one();
    }
}

pub struct Link {
    pub handle: u32,
    /// The server this connection belongs to, for server-side links.
    pub server: Option<u32>,
    pub peer: Mutex<Peer>,
    pub delivery: Arc<Delivery>,
    pub store: Option<Arc<dyn SessionStore>>,
    /// API calls arrive on the JS thread, outside the runtime.
    rt: tokio::runtime::Handle,
    transport: Mutex<Option<Arc<Transport>>>,
    /// `disconnect()` was called: end the transport once the peer is ready.
    end_when_ready: AtomicBool,
}

impl Link {
    pub fn new(
        handle: u32,
        server: Option<u32>,
        peer: Peer,
        delivery: Arc<Delivery>,
        store: Option<Arc<dyn SessionStore>>,
        rt: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Link { handle, server, peer: Mutex::new(peer), delivery, store, rt, transport: Mutex::new(None), end_when_ready: AtomicBool::new(false) })
    }

    pub fn end_when_ready(self: &Arc<Self>) {
        self.end_when_ready.store(true, Ordering::Release);
        self.pump();
    }

    pub fn transport(&self) -> Option<Arc<Transport>> {
        lock(&self.transport).clone()
    }

    /// Applies a batch of API calls from the application, one per line:
    /// `e<json>` send, `a<json>` send and report the ack, `s<json>` set.
    /// Lines cannot contain newlines: JSON.stringify escapes them.
    pub fn write_lines(self: &Arc<Self>, lines: &str) -> Result<(), String> {
        let mut result = Ok(());
        {
            let mut peer = lock(&self.peer);
            for line in lines.split('\n') {
                let (tag, body) = match line.as_bytes().first() {
                    Some(t) => (*t, &line[1..]),
                    None => continue,
                };
                match tag {
                    b'e' | b'a' => {
                        peer.send_event(body.to_owned(), tag == b'a');
                    }
                    b's' => {
                        if let Err(e) = peer.set(body) {
                            result = Err(e.to_string());
                        }
                    }
                    _ => result = Err(format!("unknown write tag {:?}", tag as char)),
                }
            }
        }
        self.pump();
        result
    }

    pub fn write_raw(self: &Arc<Self>, bytes: &[u8]) {
        lock(&self.peer).write_raw(bytes);
        self.wake_writer();
    }

    pub fn wake_writer(&self) {
        if let Some(t) = self.transport() {
            t.writer_wake.notify_one();
        }
    }

    /// Drains the state machine's events: application events go to the
    /// delivery buffer, store work is spawned. Then wakes the writer.
    pub fn pump(self: &Arc<Self>) {
        let mut store_work = Vec::new();
        {
            let mut peer = lock(&self.peer);
            if peer.is_ready() && self.end_when_ready.load(Ordering::Acquire) {
                if let Some(t) = self.transport() {
                    t.end();
                }
            }
            while let Some(ev) = peer.poll_event() {
                match ev {
                    Event::Message(args) => self.deliver(kind::MESSAGE, |b| b.push_str(&args)),
                    Event::Set(args) => self.deliver(kind::SET, |b| b.push_str(&args)),
                    Event::Acked(seq) => self.deliver(kind::ACKED, |b| {
                        let _ = write!(b, "{seq}");
                    }),
                    Event::Dropped { seq, notify } => self.deliver(kind::DROPPED, |b| {
                        let _ = write!(b, "{seq},{notify}");
                    }),
                    Event::Error(message) => self.deliver_error(&message, None),
                    Event::Connected { resumed } => {
                        let info = self.connected_info(&peer, resumed);
                        self.deliver(kind::CONNECTED, |b| b.push_str(&info));
                    }
                    Event::LoadSession(id) => store_work.push(StoreWork::Load(id)),
                    Event::SaveSession => {
                        if let Some(id) = peer.session_id() {
                            store_work.push(StoreWork::Save(id.to_owned(), peer.session().clone()));
                        }
                    }
                }
            }
        }
        self.wake_writer();
        for work in store_work {
            self.spawn_store_work(work);
        }
    }

    fn connected_info(&self, peer: &Peer, resumed: bool) -> String {
        let addrs = self.transport().map(|t| lock(&t.addresses).clone()).unwrap_or_default();
        let mut info = serde_json::Map::new();
        info.insert("resumed".into(), resumed.into());
        info.insert("objectMode".into(), peer.object_mode().into());
        info.insert("enableAcks".into(), peer.enable_acks().into());
        info.insert("session".into(), Value::Object(peer.session().clone()));
        info.insert("server".into(), self.server.map_or(Value::Null, Value::from));
        for (prefix, addr) in [("remote", addrs.remote), ("local", addrs.local)] {
            if let Some(a) = addr {
                info.insert(format!("{prefix}Address"), a.ip().to_canonical().to_string().into());
                info.insert(format!("{prefix}Port"), a.port().into());
                info.insert(format!("{prefix}Family"), (if a.ip().to_canonical().is_ipv4() { "IPv4" } else { "IPv6" }).into());
            }
        }
        Value::Object(info).to_string()
    }

    pub fn deliver(&self, kind: u8, body: impl FnOnce(&mut String)) {
        let handle = self.handle;
        self.delivery.push(|b| {
            let _ = write!(b, "[{handle},{kind},");
            body(b);
            b.push(']');
        });
    }

    pub fn deliver_error(&self, message: &str, code: Option<&str>) {
        let mut e = serde_json::Map::new();
        e.insert("message".into(), message.into());
        e.insert("code".into(), code.map_or(Value::Null, Value::from));
        e.insert("server".into(), self.server.map_or(Value::Null, Value::from));
        let text = Value::Object(e).to_string();
        self.deliver(kind::ERROR, |b| b.push_str(&text));
    }

    fn spawn_store_work(self: &Arc<Self>, work: StoreWork) {
        let Some(store) = self.store.clone() else { return };
        let link = self.clone();
        self.rt.spawn(async move {
            match work {
                StoreWork::Load(id) => {
                    // A failing store starts a new session (as the original
                    // does); the error follows `connect`, so it reaches the
                    // connection object rather than the server.
                    let (loaded, error) = match store.get(&id).await {
                        Ok(s) => (s, None),
                        Err(e) => (None, Some(e)),
                    };
                    lock(&link.peer).session_loaded(loaded);
                    link.pump();
                    if let Some(e) = error {
                        link.deliver_error(&format!("session store get failed: {e}"), Some("ESTORE"));
                    }
                }
                StoreWork::Save(id, session) => {
                    if let Err(e) = store.set(&id, session).await {
                        link.deliver_error(&format!("session store set failed: {e}"), Some("ESTORE"));
                    }
                }
            }
        });
    }

    /// Server: destroys the stored session, then tells the client.
    pub fn invalidate_session(self: &Arc<Self>) {
        let link = self.clone();
        self.rt.spawn(async move {
            let id = lock(&link.peer).session_id().map(str::to_owned);
            if let (Some(store), Some(id)) = (link.store.clone(), id) {
                if let Err(e) = store.destroy(&id).await {
                    link.deliver_error(&format!("session store destroy failed: {e}"), Some("ESTORE"));
                }
            }
            {
                let mut peer = lock(&link.peer);
                peer.clear_session();
                peer.send_event("[\"invalidateSession\"]".to_owned(), false);
            }
            link.pump();
        });
    }

    /// Runs one transport to its end. Returns when the socket is closed.
    pub async fn drive<S>(self: &Arc<Self>, stream: S, addresses: Addresses)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let transport = Arc::new(Transport::default());
        *lock(&transport.addresses) = addresses;
        *lock(&self.transport) = Some(transport.clone());
        lock(&self.peer).on_open();
        self.pump();

        let (mut rd, wr) = tokio::io::split(stream);
        let writer = tokio::spawn(write_loop(self.clone(), transport.clone(), wr));
        let mut buf = vec![0u8; 64 * 1024];
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if deadline.is_none() && (transport.ending.load(Ordering::Acquire) || lock(&self.peer).close_requested()) {
                transport.end();
                deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            let grace = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = transport.kill.notified() => break,
                _ = grace => break,
                _ = transport.ending_wake.notified(), if deadline.is_none() => continue,
                r = rd.read(&mut buf) => match r {
                    Ok(0) => break,
                    Err(e) => {
                        self.deliver_error(&e.to_string(), io_code(&e));
                        break;
                    }
                    Ok(n) => {
                        lock(&self.peer).receive(&buf[..n]);
                        self.pump();
                    }
                },
            }
            if transport.killed.load(Ordering::Acquire) {
                break;
            }
            self.delivery.wait_capacity().await;
            while lock(&self.peer).pending_output() > OUTPUT_HIGH_WATER && !transport.killed.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        writer.abort();
        let _ = writer.await;
        lock(&self.peer).on_close();
        self.pump();
        *lock(&self.transport) = None;
    }
}

enum StoreWork {
    Load(String),
    Save(String, crate::protocol::session::Session),
}

async fn write_loop<W: AsyncWrite>(link: Arc<Link>, transport: Arc<Transport>, wr: W) {
    tokio::pin!(wr);
    let mut out = Vec::new();
    loop {
        lock(&link.peer).take_output(&mut out);
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                transport.kill();
                return;
            }
            out.clear();
            if out.capacity() > 1 << 20 {
                out = Vec::new();
            }
            continue;
        }
        if transport.ending.load(Ordering::Acquire) {
            let _ = wr.shutdown().await;
            return;
        }
        transport.writer_wake.notified().await;
    }
}

/// Node's `err.code` for the I/O errors a socket reports.
pub fn io_code(e: &std::io::Error) -> Option<&'static str> {
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
