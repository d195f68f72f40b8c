//! A listening server: bind, accept, one `Link` per accepted connection.
//! `close()` stops accepting; `close` is reported once the last connection
//! has ended, as with Node's net.Server.

use super::delivery::lock;
use super::events::Kind;
use super::fleet_bus::FleetBus;
use super::js_store::JsStore;
use super::link::takeover;
use super::link::{Link, LinkEnv, Then};
use super::metrics::{CountedStore, ServerMetrics};
use super::redis_store::RedisStore;
use super::retention::Retention;
use super::store::{MemoryStore, SessionStore, DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL};
use super::tls::TlsAcceptor;
use super::transport::{io_code, Addresses, BoxStream, Endpoint, Listener};
use super::Shared;
use crate::protocol::peer::{Config, Peer, Role};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A TLS client gets this long to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default memory store's cap on the bytes of all sessions.
pub(crate) const DEFAULT_MAX_STORE_BYTES: usize = 256 * 1024 * 1024;

/// Where a server keeps its sessions.
#[derive(Clone)]
pub(crate) enum StoreChoice {
    /// In memory, in Rust: idle expiry and a cap on the number of sessions.
    Memory {
        ttl: Duration,
        max_sessions: usize,
        /// Bytes of all sessions together.
        max_bytes: usize,
    },
    /// A connect-style JavaScript store, answering within `timeout`.
    Js { timeout: Duration },
    /// Redis: also the way to the rest of the fleet (`fleet_bus.rs`).
    Redis(Arc<RedisStore>),
}

impl Default for StoreChoice {
    fn default() -> Self {
        StoreChoice::Memory {
            ttl: DEFAULT_SESSION_TTL,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_bytes: DEFAULT_MAX_STORE_BYTES,
        }
    }
}

#[derive(Clone)]
pub(crate) struct ServerOptions {
    pub peer: Config,
    pub store: StoreChoice,
    pub tls: Option<Arc<TlsAcceptor>>,
    /// How long a dropped connection's pending events wait for the session
    /// to resume. Zero: not at all.
    pub resume_window: Duration,
    /// At most this many dropped sessions wait at once.
    pub max_retained: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            peer: Config::default(),
            store: StoreChoice::default(),
            tls: None,
            resume_window: Duration::from_secs(120),
            max_retained: 100_000,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ListenOptions {
    pub endpoint: Endpoint,
    pub backlog: Option<u32>,
}

pub(crate) struct Server {
    pub handle: u32,
    config: Arc<Config>,
    /// The store, counting its calls (`metrics`).
    store: Arc<CountedStore>,
    tls: Option<Arc<TlsAcceptor>>,
    /// Where dropped connections wait for their sessions to resume; none
    /// with a zero `resume_window`.
    pub(crate) retention: Option<Arc<Retention<Link>>>,
    /// What its links share (its store and retention among them).
    links: Arc<LinkEnv>,
    /// `sendTo` and `broadcast`: through Redis to the fleet, or to this
    /// server's sessions.
    fleet: Arc<FleetBus>,
    /// Totals since creation, shared with this server's links.
    pub(crate) metrics: Arc<ServerMetrics>,
    /// Cancelled by `close()`; each `listen()` after a close gets a new one.
    shutdown: Mutex<CancellationToken>,
    /// `close()` was called and `close` is not reported yet.
    closing: AtomicBool,
    /// `listen()` calls so far (see `begin_listen`).
    listens: std::sync::atomic::AtomicU32,
    /// Bound listeners (a listener of a closed server may still be winding down).
    listening: AtomicUsize,
    /// Open connections, handshaken or not (net.Server's getConnections()).
    active: AtomicUsize,
    /// net.Server's maxConnections: a connection accepted beyond it is
    /// closed at once and reported as `drop`. `usize::MAX`: no limit.
    max_connections: AtomicUsize,
}

impl Server {
    pub(crate) fn new(handle: u32, options: ServerOptions, shared: &Arc<Shared>) -> Arc<Self> {
        let mut redis = None;
        let (store, memory): (Arc<dyn SessionStore>, _) = match options.store {
            StoreChoice::Memory { ttl, max_sessions, max_bytes } => {
                let memory = Arc::new(MemoryStore::new(ttl, max_sessions).with_max_bytes(max_bytes));
                (memory.clone(), Some(memory))
            }
            StoreChoice::Js { timeout } => {
                let store = Arc::new(JsStore::new(handle, shared.delivery.clone(), timeout));
                shared.register_js_store(handle, store.clone());
                (store, None)
            }
            StoreChoice::Redis(store) => {
                redis = Some(store.clone());
                (store, None)
            }
        };
        let metrics = Arc::new(ServerMetrics::default());
        let store = Arc::new(CountedStore::new(store, memory, metrics.clone()));
        let mut config = options.peer;
        config.persist_delivery = store.keeps_delivery();
        config.defer_acks = true;
        config.entropy = Some(super::entropy::os());
        let retention =
            (!options.resume_window.is_zero()).then(|| Retention::new(options.resume_window, options.max_retained));
        if let Some(r) = &retention {
            shared.rt.spawn(takeover::sweep(Arc::downgrade(shared), r.clone()));
        }
        let counted: Arc<dyn SessionStore> = store.clone();
        let links = LinkEnv::new(shared, Some(counted.clone()), retention.clone());
        let fleet = FleetBus::new(handle, shared, retention.clone(), redis.map(|r| (r, counted)));
        Arc::new(Server {
            handle,
            config: Arc::new(config),
            store,
            tls: options.tls,
            retention,
            links,
            fleet,
            metrics,
            shutdown: Mutex::new(CancellationToken::new()),
            closing: AtomicBool::new(false),
            listens: std::sync::atomic::AtomicU32::new(0),
            listening: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            max_connections: AtomicUsize::new(usize::MAX),
        })
    }

    /// Called by `listen()`, before its task starts, so a `close()` right
    /// after it cancels that listener. A listen() after close() serves
    /// again, as net.Server's does.
    /// Returns the listener's token and its number, which its `LISTENING`
    /// carries: after a close() and a new listen(), the application knows a
    /// late report of the old one for what it is.
    pub(crate) fn begin_listen(&self) -> (CancellationToken, u32) {
        let mut token = lock(&self.shutdown);
        if token.is_cancelled() {
            *token = CancellationToken::new();
        }
        self.closing.store(false, Ordering::Release);
        (token.clone(), self.listens.fetch_add(1, Ordering::AcqRel) + 1)
    }

    pub(crate) fn close(&self, shared: &Shared) {
        self.closing.store(true, Ordering::Release);
        lock(&self.shutdown).cancel();
        self.maybe_closed(shared);
    }

    /// Connections open now (accepted and not yet ended).
    pub(crate) fn connections(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Sessions its store holds, where the store can tell.
    pub(crate) fn sessions_stored(&self) -> Option<usize> {
        self.store.stored()
    }

    pub(crate) fn set_max_connections(&self, max: Option<usize>) {
        self.max_connections.store(max.unwrap_or(usize::MAX), Ordering::Release);
    }

    fn maybe_closed(&self, shared: &Shared) {
        if self.listening.load(Ordering::Acquire) == 0
            && self.active.load(Ordering::Acquire) == 0
            && self.closing.swap(false, Ordering::AcqRel)
        {
            self.report(shared, Kind::Closed, "0");
        }
    }

    fn report(&self, shared: &Shared, kind: Kind, body: &str) {
        let h = self.handle;
        shared.delivery.push(|b| b.push_str(&format!("[{h},{kind},{body}]")));
    }

    /// Its way to the sessions of the fleet.
    pub(crate) fn fleet(&self) -> &Arc<FleetBus> {
        &self.fleet
    }

    pub(crate) fn new_link(&self, shared: &Arc<Shared>) -> Arc<Link> {
        let link = Link::new(
            shared.alloc_handle(),
            Some(self.handle),
            Peer::new(Role::Server, self.config.clone(), Instant::now()),
            shared,
            &self.links,
        );
        shared.register_link(link.clone());
        self.active.fetch_add(1, Ordering::AcqRel);
        self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        link
    }

    pub(crate) fn run_link<F>(self: &Arc<Self>, shared: &Arc<Shared>, link: Arc<Link>, stream: F, addrs: Addresses)
    where
        F: std::future::Future<Output = std::io::Result<BoxStream>> + Send + 'static,
    {
        let (shared, server) = (shared.clone(), self.clone());
        let rt = shared.rt.clone();
        rt.spawn(async move {
            let stream = stream.await;
            let ended = link.clone();
            // Run by the reader when the transport is done, which may be in
            // another task (an idle connection read on Node's loop has none).
            let then: Then = Box::new(move || {
                shared.forget_pipe(ended.handle);
                takeover::retire(&shared, &ended);
                ended.deliver(Kind::Disconnected, |b| b.push_str("false"));
                server.active.fetch_sub(1, Ordering::AcqRel);
                server.maybe_closed(&shared);
            });
            match stream {
                Ok(stream) => link.drive(stream, addrs, Some(then)).await,
                Err(e) => {
                    link.deliver_error(&e.to_string(), io_code(&e).or(Some("ETLS")));
                    then();
                }
            }
        });
    }
}

/// The addresses of an accepted connection, as net's `drop` event reports them.
fn addresses_json(addrs: &Addresses) -> String {
    let mut out = serde_json::Map::new();
    for (prefix, addr) in [("local", addrs.local), ("remote", addrs.remote)] {
        if let Some(a) = addr {
            out.insert(format!("{prefix}Address"), a.ip().to_string().into());
            out.insert(format!("{prefix}Port"), a.port().into());
            out.insert(format!("{prefix}Family"), (if a.is_ipv4() { "IPv4" } else { "IPv6" }).into());
        }
    }
    Value::Object(out).to_string()
}

fn error_json(e: &std::io::Error, syscall: &str, endpoint: &Endpoint) -> String {
    let code = io_code(e);
    let mut err = serde_json::Map::new();
    err.insert("message".into(), format!("{syscall} {} {endpoint}: {e}", code.unwrap_or("error")).into());
    err.insert("code".into(), code.map_or(Value::Null, Value::from));
    err.insert("syscall".into(), syscall.into());
    Value::Object(err).to_string()
}

/// An accepted stream, once its TLS handshake (if any) is done.
type SecuredStream = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<BoxStream>> + Send>>;

/// Serves until `shutdown` (from `Server::begin_listen`) is cancelled.
pub(crate) async fn listen_and_serve(
    shared: Arc<Shared>,
    server: Arc<Server>,
    options: ListenOptions,
    (shutdown, listen): (CancellationToken, u32),
) {
    let listener = match Listener::bind(&options.endpoint, options.backlog).await {
        Ok(l) => l,
        Err(e) => {
            server.report(&shared, Kind::Error, &error_json(&e, "listen", &options.endpoint));
            return;
        }
    };
    // Closed while binding: this listener never was (a listen() after that
    // close() has its own), so it reports nothing.
    if shutdown.is_cancelled() {
        drop(listener);
        server.maybe_closed(&shared);
        return;
    }
    server.listening.fetch_add(1, Ordering::AcqRel);
    server.report(&shared, Kind::Listening, &format!("{},{listen}", listener.address_json()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, mut addrs)) => {
                    let peers = addresses_json(&addrs);
                    if server.active.load(Ordering::Acquire) >= server.max_connections.load(Ordering::Acquire) {
                        // As net.Server: closed unread, reported as `drop`.
                        drop(stream);
                        super::diag::log(&shared.delivery, server.handle, super::diag::Ns::Connection, || {
                            format!("server #{} refused {peers}: maxConnections reached", server.handle)
                        });
                        server.metrics.refused.fetch_add(1, Ordering::Relaxed);
                        server.report(&shared, Kind::Refused, &peers);
                        continue;
                    }
                    let link = server.new_link(&shared);
                    server.report(&shared, Kind::Accepted, &format!("{},{peers}", link.handle));
                    let secured: SecuredStream = match &server.tls {
                        Some(tls) => {
                            // Takes `addrs.direct`: bytes must go through TLS.
                            let handshake = tls.accept(stream, &mut addrs.direct);
                            Box::pin(async move {
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                                    Ok(r) => r.map(|s| Box::new(s) as BoxStream),
                                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
                                }
                            })
                        }
                        None => Box::pin(std::future::ready(Ok(stream))),
                    };
                    server.run_link(&shared, link, secured, addrs);
                }
                // Out of descriptors and the like: back off briefly instead
                // of spinning; the listener stays up.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    drop(listener);
    server.listening.fetch_sub(1, Ordering::AcqRel);
    server.maybe_closed(&shared);
}
