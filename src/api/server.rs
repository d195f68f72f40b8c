//! [`Server`]: listens, completes handshakes, and hands out
//! [`Connection`]s, new or resumed.

use super::addr::{Addr, IntoAddr};
use super::connection::Connection;
use super::error::{Error, ErrorKind};
use super::handle::{event_json, Ack};
use super::hub::{hub, Hub};
use super::options::ServerOptions;
use crate::engine::delivery::lock;
use crate::engine::ListenOptions;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch, Notify};

#[derive(Debug, Default, Clone)]
pub(crate) struct ServerStatus {
    listening: Option<Addr>,
    failed: Option<Error>,
    /// `close` is reported: the listener is gone and every connection ended.
    closed: bool,
}

/// A server's connections waiting for `accept()`, and its state.
pub(crate) struct ServerInbox {
    status: watch::Sender<ServerStatus>,
    /// Handshaken connections, and whether accepting has stopped.
    queue: Mutex<(VecDeque<Connection>, bool)>,
    ready: Notify,
}

impl ServerInbox {
    pub(crate) fn listening(&self, info: &Value) {
        let addr = match info {
            Value::String(path) => Addr::unix(path),
            _ => Addr::tcp(
                info["address"].as_str().unwrap_or_default(),
                info["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            ),
        };
        self.status.send_modify(|s| s.listening = Some(addr));
    }

    pub(crate) fn failed(&self, error: Error) {
        self.status.send_modify(|s| s.failed = Some(error));
    }

    pub(crate) fn closed(&self) {
        self.stop_accepting();
        self.status.send_modify(|s| s.closed = true);
    }

    fn stop_accepting(&self) {
        lock(&self.queue).1 = true;
        self.ready.notify_waiters();
    }

    pub(crate) fn push(&self, conn: Connection) {
        let mut q = lock(&self.queue);
        if !q.1 {
            q.0.push_back(conn);
            drop(q);
            self.ready.notify_waiters();
        }
    }
}

/// A uhura server: old and new clients, new and resumed sessions, in an
/// in-memory session store.
///
/// ```no_run
/// # async fn run() -> Result<(), uhura::Error> {
/// use uhura::{Event, Server, ServerOptions};
///
/// let server = Server::bind("127.0.0.1:5555", ServerOptions::default()).await?;
/// while let Some(conn) = server.accept().await {
///     tokio::spawn(async move {
///         while let Some(event) = conn.next_event().await {
///             if let Event::Message { name, args } = event {
///                 if name == "ping" {
///                     let _ = conn.emit("pong", args);
///                 }
///             }
///         }
///     });
/// }
/// # Ok(())
/// # }
/// ```
///
/// Dropping the server stops listening; connections already accepted
/// stay open, those not yet accepted are closed.
pub struct Server {
    hub: &'static Hub,
    handle: u32,
    inbox: Arc<ServerInbox>,
    addr: Addr,
}

impl Server {
    /// Listens on `addr` (TCP, port 0 for any free port, or a Unix socket
    /// path: a stale socket file is replaced) and resolves once listening.
    /// Fails with [`ErrorKind::Listen`] (`code()` such as `EADDRINUSE`).
    pub async fn bind(addr: impl IntoAddr, options: ServerOptions) -> Result<Server, Error> {
        let addr = addr.into_addr()?;
        let hub = hub()?;
        let handle = hub.engine.create_server(options.engine());
        let inbox = Arc::new(ServerInbox {
            status: watch::Sender::new(ServerStatus::default()),
            queue: Mutex::new((VecDeque::new(), false)),
            ready: Notify::new(),
        });
        hub.add_server(handle, inbox.clone());
        let mut status = inbox.status.subscribe();
        let listen = ListenOptions { endpoint: addr.endpoint(), backlog: None };
        if let Err(e) = hub.engine.listen(handle, listen) {
            hub.remove_server(handle);
            return Err(Error::new(ErrorKind::Listen, e));
        }
        let outcome = status
            .wait_for(|s| s.listening.is_some() || s.failed.is_some())
            .await
            .map(|s| s.listening.clone().ok_or_else(|| s.failed.clone()));
        match outcome {
            Ok(Ok(addr)) => Ok(Server { hub, handle, inbox, addr }),
            Ok(Err(failed)) => {
                hub.remove_server(handle);
                hub.engine.server_release(handle);
                Err(failed.unwrap_or_else(|| Error::new(ErrorKind::Listen, "uhura: listen failed")))
            }
            Err(_) => Err(Error::closed()),
        }
    }

    /// Where it listens: the actual port when bound to port 0.
    pub fn local_addr(&self) -> &Addr {
        &self.addr
    }

    /// Sends `name` with `args` to session `session_id`, on the connection
    /// of this server that holds it: open, or dropped and kept for the
    /// session's return within `resume_window` (it then arrives on resume).
    /// Resolves once the event is queued on that connection, not on the
    /// client's ack; fails with [`ErrorKind::NoSession`] when no connection
    /// of this server holds the session. The Node binding's
    /// `server.sendTo` without a Redis store.
    pub fn send_to(&self, session_id: &str, name: &str, args: impl Serialize) -> Ack {
        self.to_sessions(name, args, |engine, seq, json| {
            engine.server_send_to(self.handle, session_id.to_owned(), json, seq)
        })
    }

    /// Sends `name` with `args` on every open connection of this server.
    /// Resolves once it is queued on each.
    pub fn broadcast(&self, name: &str, args: impl Serialize) -> Ack {
        self.to_sessions(name, args, |engine, seq, json| engine.server_broadcast(self.handle, json, seq))
    }

    fn to_sessions(
        &self,
        name: &str,
        args: impl Serialize,
        send: impl FnOnce(&crate::engine::Engine, u64, String) -> Result<(), String>,
    ) -> Ack {
        let json = match event_json(name, &args) {
            Ok(json) => json,
            Err(e) => return Ack::failed(e),
        };
        let (tx, rx) = oneshot::channel();
        let seq = self.hub.expect_ack(self.handle, tx);
        if send(&self.hub.engine, seq, json).is_err() {
            self.hub.settle_ack(seq, Err(Error::closed()));
        }
        Ack::waiting(rx)
    }

    /// The next connection whose handshake completed, new or resumed
    /// ([`Connection::resumed`]). `None` once [`close`](Self::close) was called
    /// and every connection was accepted.
    pub async fn accept(&self) -> Option<Connection> {
        loop {
            let ready = self.inbox.ready.notified();
            {
                let mut q = lock(&self.inbox.queue);
                if let Some(conn) = q.0.pop_front() {
                    return Some(conn);
                }
                if q.1 {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Connections open now (accepted or still in their handshake).
    pub fn connections(&self) -> usize {
        self.hub.engine.server_connections(self.handle).unwrap_or(0)
    }

    /// Stops listening (a Unix socket file is removed). Takes effect when
    /// called; the returned future resolves once every connection has
    /// ended, as with Node's `server.close()`.
    pub fn close(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.inbox.status.subscribe();
        self.inbox.stop_accepting();
        self.hub.engine.server_release(self.handle);
        async move {
            let _ = status.wait_for(|s| s.closed).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.hub.engine.server_release(self.handle);
        if let Some(inbox) = self.hub.remove_server(self.handle) {
            inbox.stop_accepting();
            // Not accepted: closed (each Connection closes itself on drop).
            let waiting = std::mem::take(&mut lock(&inbox.queue).0);
            drop(waiting);
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}
