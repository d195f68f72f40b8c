//! [`Connection`]: one client's connection on a [`Server`](crate::Server).

use super::error::Error;
use super::event::Event;
use super::handle::{Ack, Handle};
use super::hub::Hub;
use super::inbox::Inbox;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// A server-side connection, from [`Server::accept`](crate::Server::accept).
///
/// Its methods mirror [`Client`](crate::Client)'s. When the client drops
/// and comes back, the server resumes its session on a *new* `Connection`
/// (with [`resumed`](Self::resumed) true) that takes over the old one's
/// pending events; sends on the old one still reach the session while it
/// waits (`resume_window`).
///
/// Dropping a `Connection` that is still open closes it, as
/// [`disconnect`](Self::disconnect) does; the session stays resumable.
pub struct Connection {
    handle: Handle,
    resumed: bool,
    acks: bool,
    extensions: bool,
    session_id: Option<String>,
    peer_addr: Option<SocketAddr>,
}

impl Connection {
    pub(crate) fn accepted(hub: &'static Hub, handle: u32, inbox: Arc<Inbox>, info: &Value) -> Connection {
        let peer_addr = info["remoteAddress"]
            .as_str()
            .and_then(|ip| ip.parse().ok())
            .zip(info["remotePort"].as_u64().and_then(|p| u16::try_from(p).ok()))
            .map(|(ip, port)| SocketAddr::new(ip, port));
        Connection {
            handle: Handle { hub, handle, inbox },
            resumed: info["resumed"].as_bool().unwrap_or(false),
            acks: info["enableAcks"].as_bool().unwrap_or(false),
            extensions: info["extended"].as_bool().unwrap_or(false),
            session_id: info["session"]["sessionID"].as_str().map(str::to_owned),
            peer_addr,
        }
    }

    /// The client resumed a session the server knew (a reconnect), rather
    /// than starting a new one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The client acknowledges events (object mode with acks: every client
    /// but the 0.0.x packages'). Without acks, a `send` future resolves
    /// once the event is written.
    pub fn acks(&self) -> bool {
        self.acks
    }

    /// The client is of this crate (Node or Rust) and negotiated its
    /// extensions: duplicate suppression, heartbeats, a resume secret.
    pub fn extensions(&self) -> bool {
        self.extensions
    }

    /// The session id as of the handshake (24 characters of `[A-Za-z0-9]`).
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The client's address, for TCP connections.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Sends `name` with `args`; the future resolves on the client's ack.
    /// See [`Client::send`](crate::Client::send) for `args` and ordering.
    pub fn send(&self, name: &str, args: impl Serialize) -> Ack {
        self.handle.send(name, args)
    }

    /// Sends without waiting for the ack, as [`Client::emit`](crate::Client::emit).
    pub fn emit(&self, name: &str, args: impl Serialize) -> Result<(), Error> {
        self.handle.emit(name, args)
    }

    /// Sets `key` in the shared session, here (saved to the store) and on
    /// the client.
    pub fn set(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        self.handle.set(key, value)
    }

    /// Merges every field of `fields` (a JSON object) into the session.
    pub fn set_fields(&self, fields: impl Serialize) -> Result<(), Error> {
        self.handle.set_fields(fields)
    }

    /// One field of the session, as it is now.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.handle.get(key)
    }

    /// The whole session (the server's internal keys left out).
    pub fn session(&self) -> Map<String, Value> {
        self.handle.session()
    }

    /// The next event, waiting for one; `None` after
    /// [`Event::Disconnect`], when this connection is over. Taking an event
    /// is what lets the server acknowledge it (see the
    /// [delivery guarantee](crate::api#delivery-guarantee)).
    pub async fn next_event(&self) -> Option<Event> {
        self.handle.next_event().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next_event(&self) -> Option<Event> {
        self.handle.try_next_event()
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.handle.is_connected()
    }

    /// Destroys the session in the store and tells the client, which
    /// empties its session and closes; with auto-reconnect it comes back
    /// with a new one.
    pub fn invalidate_session(&self) {
        if let Ok(link) = self.handle.link() {
            link.invalidate_session();
        }
    }

    /// Closes the connection once what was sent on it is written. Takes
    /// effect when called; the returned future resolves once it is closed.
    /// The session stays resumable for `resume_window`.
    pub fn disconnect(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.handle.inbox.status.subscribe();
        self.close();
        async move {
            let _ = status.wait_for(|s| !s.connected).await;
        }
    }

    /// Ends the transport, if this connection still is the session's
    /// current one (after a resume, the handle serves the new connection).
    fn close(&self) {
        let h = &self.handle;
        if h.hub.has_inbox(h.handle) && h.link().is_ok_and(|l| l.handle == h.handle) {
            h.hub.engine.end(h.handle);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
        self.handle.hub.remove_inbox(self.handle.handle);
        self.handle.inbox.discard();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session_id", &self.session_id)
            .field("resumed", &self.resumed)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}
