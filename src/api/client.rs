//! [`Client`]: connects to a uhura server (ours, or the Node packages
//! 0.1.x / 0.0.x) and keeps its session, queue and unacknowledged events
//! across reconnects.

use super::addr::IntoAddr;
use super::error::{Error, ErrorKind};
use super::event::Event;
use super::handle::{Ack, Handle};
use super::hub::hub;
use super::inbox::Inbox;
use super::options::Options;
use crate::engine::{ClientOptions, Connector};
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// A uhura client.
///
/// Sends made before the handshake completes, or while disconnected, are
/// queued and sent in order once it does; unacknowledged events are resent
/// after every reconnect (the peer drops duplicates if it is ours).
/// Dropping the client sends what is queued, closes the connection, and
/// fails the `send` futures still waiting with [`ErrorKind::Closed`].
///
/// ```no_run
/// # async fn run() -> Result<(), uhura::Error> {
/// use uhura::{Client, Event, Options};
///
/// let client = Client::connect("127.0.0.1:5555", Options::default()).await?;
/// client.set("name", "worker-1")?;
/// client.send("ping", (1, "two")).await?; // resolves on the server's ack
/// while let Some(event) = client.next_event().await {
///     if let Event::Message { name, args } = event {
///         println!("{name} {args:?}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct Client {
    handle: Handle,
}

impl Client {
    /// Starts a client that connects in the background and returns at
    /// once; sends are queued until the handshake completes. Connection
    /// failures arrive as [`Event::Error`]; with
    /// [`Options::auto_reconnect`] it keeps trying.
    pub fn new(addr: impl IntoAddr, options: Options) -> Result<Client, Error> {
        let addr = addr.into_addr()?;
        let hub = hub()?;
        let engine = &hub.engine;
        let h = engine.create_client(ClientOptions {
            connector: Connector::Native { endpoints: vec![addr.endpoint()], tls: None },
            peer: options.peer,
        });
        let link = engine.link(h).map_err(|_| Error::closed())?;
        let inbox = Inbox::new(&link, hub.flow.clone(), true);
        hub.add_inbox(h, inbox.clone());
        let client = Client { handle: Handle { hub, handle: h, inbox } };
        if let Some((min, max)) = options.auto_reconnect {
            client.auto_reconnect(min, max);
        }
        engine.start_client(h).map_err(|e| Error::new(ErrorKind::Connect, e))?;
        Ok(client)
    }

    /// Connects and waits for the handshake. Fails with
    /// [`ErrorKind::Connect`] if the attempt fails (or closes before the
    /// handshake) and auto-reconnect is off; with it on, waits until a
    /// connection succeeds (wrap it in a timeout to bound that).
    ///
    /// The handshake is also the first event: [`Event::Connect`].
    pub async fn connect(addr: impl IntoAddr, options: Options) -> Result<Client, Error> {
        let client = Client::new(addr, options)?;
        let mut status = client.handle.inbox.status.subscribe();
        let result = status.wait_for(|s| s.connects > 0 || s.gave_up > 0).await.map(|s| {
            if s.connects > 0 {
                Ok(())
            } else {
                Err(s.last_error.clone())
            }
        });
        match result {
            Ok(Ok(())) => Ok(client),
            Ok(Err(last)) => Err(last.unwrap_or_else(|| {
                Error::new(ErrorKind::Connect, "uhura: the connection closed before its handshake completed")
            })),
            Err(_) => Err(Error::closed()),
        }
    }

    /// Sends `name` with `args` and returns a future that resolves when the
    /// server acknowledged it (see [`Ack`]). `args` is anything that
    /// serializes to a JSON array (a tuple, a `Vec`, `json!([...])`): its
    /// items are the arguments; `()` sends none, and any other value is one
    /// argument. The event is queued at once, in call order.
    ///
    /// With an old server in array mode (0.0.x), which cannot ack, it
    /// resolves once the event is written.
    pub fn send(&self, name: &str, args: impl Serialize) -> Ack {
        self.handle.send(name, args)
    }

    /// Sends `name` with `args` (as [`send`](Self::send)) without waiting
    /// for anything: the event is delivered with the same guarantees, but
    /// nobody hears of its ack.
    pub fn emit(&self, name: &str, args: impl Serialize) -> Result<(), Error> {
        self.handle.emit(name, args)
    }

    /// Sets `key` in the shared session, here and on the server (which
    /// saves it). Fails with [`ErrorKind::InvalidInput`] if the session
    /// would grow past `max_session_bytes`.
    pub fn set(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        self.handle.set(key, value)
    }

    /// Merges every field of `fields` (which must serialize to a JSON
    /// object) into the shared session, in one message.
    pub fn set_fields(&self, fields: impl Serialize) -> Result<(), Error> {
        self.handle.set_fields(fields)
    }

    /// One field of the session, as it is now (changes from the server are
    /// merged on arrival, possibly before their [`Event::Set`] is taken).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.handle.get(key)
    }

    /// The whole session, including the `sessionID` the server gave it.
    pub fn session(&self) -> Map<String, Value> {
        self.handle.session()
    }

    /// The session id, once a server has given one.
    pub fn session_id(&self) -> Option<String> {
        self.get("sessionID").and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The next event, waiting for one. Taking it is what lets the client
    /// acknowledge it (see the [delivery guarantee](crate::api#delivery-guarantee)).
    /// Returns `None` only if the client can no longer receive events.
    pub async fn next_event(&self) -> Option<Event> {
        self.handle.next_event().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next_event(&self) -> Option<Event> {
        self.handle.try_next_event()
    }

    /// Whether the handshake completed and the connection is up.
    pub fn is_connected(&self) -> bool {
        self.handle.is_connected()
    }

    /// Reconnects by itself after a drop, waiting a random time in
    /// `[0, min(max, min × 2^attempt)]` ("full jitter") before each attempt;
    /// the backoff starts over once a connection stayed up for 2 seconds.
    /// (The defaults of the Node binding are 100 ms and 60 s.)
    pub fn auto_reconnect(&self, min: Duration, max: Duration) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let _ = self.handle.hub.engine.client_auto_reconnect(self.handle.handle, ms(min), ms(max));
    }

    /// Closes the connection and connects again at once, resuming the
    /// session; also starts a client stopped by [`disconnect`](Self::disconnect).
    pub fn reconnect(&self) {
        self.handle.inbox.update(|s| s.stopped = false);
        let _ = self.handle.hub.engine.client_reconnect(self.handle.handle);
    }

    /// Turns auto-reconnect off and closes the connection once what is
    /// queued has been sent. Takes effect when called; the returned future
    /// resolves once the client has stopped. The session, the queue and
    /// unacknowledged events stay for a later [`reconnect`](Self::reconnect).
    pub fn disconnect(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut status = self.handle.inbox.status.subscribe();
        let (stopped, stops) = {
            let s = status.borrow();
            (s.stopped, s.stops)
        };
        if !stopped {
            let _ = self.handle.hub.engine.client_disconnect(self.handle.handle);
        }
        async move {
            if !stopped {
                let _ = status.wait_for(|s| s.stops > stops).await;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let h = &self.handle;
        h.hub.remove_inbox(h.handle);
        h.inbox.discard();
        h.hub.fail_pending(h.handle, &Error::new(ErrorKind::Closed, "uhura: the client was dropped"));
        h.hub.engine.client_release(h.handle);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("handle", &self.handle.handle).finish_non_exhaustive()
    }
}
