//! A listening server: bind, accept, one `Link` per accepted connection.
//! `close()` stops accepting; `close` is reported once the last connection
//! has ended, as with Node's net.Server.

use super::delivery::lock;
use super::link::{self, kind, Addresses, Link};
use super::store::{MemoryStore, SessionStore};
use super::Shared;
use crate::protocol::peer::{Config, Peer, Role};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct ServerOptions {
    pub peer: Config,
    pub store: Option<Arc<dyn SessionStore>>,
}

#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    pub host: Option<String>,
    pub port: u16,
    pub backlog: Option<u32>,
}

pub struct Server {
    pub handle: u32,
    config: Config,
    store: Arc<dyn SessionStore>,
    shutdown: Notify,
    closing: AtomicBool,
    listening: AtomicBool,
    active: AtomicUsize,
}

impl Server {
    pub fn new(handle: u32, options: ServerOptions) -> Arc<Self> {
        Arc::new(Server {
            handle,
            config: options.peer,
            store: options.store.unwrap_or_else(|| Arc::new(MemoryStore::default())),
            shutdown: Notify::new(),
            closing: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            active: AtomicUsize::new(0),
        })
    }

    pub fn close(&self, shared: &Shared) {
        self.closing.store(true, Ordering::Release);
        self.shutdown.notify_one();
        if !self.listening.load(Ordering::Acquire) {
            self.maybe_closed(shared);
        }
    }

    fn maybe_closed(&self, shared: &Shared) {
        if self.closing.load(Ordering::Acquire)
            && !self.listening.load(Ordering::Acquire)
            && self.active.load(Ordering::Acquire) == 0
        {
            let h = self.handle;
            shared.delivery.push(|b| b.push_str(&format!("[{h},{}]", kind::CLOSED)));
        }
    }

    fn report(&self, shared: &Shared, kind: u8, body: &str) {
        let h = self.handle;
        shared.delivery.push(|b| b.push_str(&format!("[{h},{kind},{body}]")));
    }
}

async fn bind(options: &ListenOptions) -> std::io::Result<TcpListener> {
    let backlog = options.backlog.unwrap_or(511);
    let addrs: Vec<std::net::SocketAddr> = match options.host.as_deref() {
        // Like Node: no host means every address, IPv6 and IPv4 when possible.
        None | Some("") => vec![(std::net::Ipv6Addr::UNSPECIFIED, options.port).into(), (std::net::Ipv4Addr::UNSPECIFIED, options.port).into()],
        Some(host) => tokio::net::lookup_host((host, options.port)).await?.collect(),
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to listen on");
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

pub async fn listen_and_serve(shared: Arc<Shared>, server: Arc<Server>, options: ListenOptions) {
    let listener = match bind(&options).await {
        Ok(l) => l,
        Err(e) => {
            let mut err = serde_json::Map::new();
            err.insert("message".into(), format!("listen {}: {e}", link::io_code(&e).unwrap_or("error")).into());
            err.insert("code".into(), link::io_code(&e).map_or(Value::Null, Value::from));
            err.insert("syscall".into(), "listen".into());
            server.report(&shared, kind::ERROR, &Value::Object(err).to_string());
            return;
        }
    };
    server.listening.store(true, Ordering::Release);
    if let Ok(addr) = listener.local_addr() {
        let info = serde_json::json!({
            "address": addr.ip().to_string(),
            "port": addr.port(),
            "family": if addr.is_ipv4() { "IPv4" } else { "IPv6" },
        });
        server.report(&shared, kind::LISTENING, &info.to_string());
    }
    loop {
        tokio::select! {
            _ = server.shutdown.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let addrs = Addresses { remote: Some(remote), local: stream.local_addr().ok() };
                    accept(&shared, &server, stream, addrs);
                }
                // Out of descriptors and the like: back off briefly instead
                // of spinning; the listener stays up.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        if server.closing.load(Ordering::Acquire) {
            break;
        }
    }
    drop(listener);
    server.listening.store(false, Ordering::Release);
    server.maybe_closed(&shared);
}

fn accept(shared: &Arc<Shared>, server: &Arc<Server>, stream: tokio::net::TcpStream, addrs: Addresses) {
    let handle = shared.alloc_handle();
    let link = Link::new(
        handle,
        Some(server.handle),
        Peer::new(Role::Server, server.config.clone()),
        shared.delivery.clone(),
        Some(server.store.clone()),
        shared.rt.clone(),
    );
    shared.register_link(link.clone());
    server.active.fetch_add(1, Ordering::AcqRel);
    let (shared, server) = (shared.clone(), server.clone());
    shared.rt.clone().spawn(async move {
        link.drive(stream, addrs).await;
        shared.unregister_link(handle);
        link.deliver(kind::DISCONNECTED, |b| b.push_str("false"));
        server.active.fetch_sub(1, Ordering::AcqRel);
        server.maybe_closed(&shared);
        drop(lock(&link.peer));
    });
}
