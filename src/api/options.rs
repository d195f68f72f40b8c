//! Settings of clients ([`Options`]) and servers ([`ServerOptions`]).
//! The defaults are the Node binding's (README, "Options").

use crate::engine::server::{ServerOptions as EngineServerOptions, StoreChoice, DEFAULT_MAX_STORE_BYTES};
use crate::engine::store::{DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_TTL};
use crate::protocol::peer::Config;
use std::time::Duration;

/// Setters of the protocol settings both sides share.
macro_rules! peer_setters {
    () => {
        /// A message from the peer longer than this many bytes is a
        /// protocol error (default 16 MiB).
        pub fn max_message_size(mut self, bytes: usize) -> Self {
            self.peer.max_message_size = bytes.max(1);
            self
        }

        /// Pending events (queued plus unacknowledged) beyond this count
        /// drop the oldest, whose `send` fails with
        /// [`ErrorKind::Dropped`](crate::ErrorKind::Dropped) (default: no limit).
        pub fn max_queue_length(mut self, events: usize) -> Self {
            self.peer.max_queue_length = events;
            self
        }

        /// The same limit in bytes of JSON (default 64 MiB).
        pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
            self.peer.max_queue_bytes = bytes;
            self
        }

        /// A `send` not acknowledged within `timeout` fails with
        /// [`ErrorKind::AckTimeout`](crate::ErrorKind::AckTimeout); the event
        /// stays queued (default: no timeout).
        pub fn ack_timeout(mut self, timeout: Duration) -> Self {
            self.peer.ack_timeout = Some(timeout).filter(|t| !t.is_zero());
            self
        }

        /// Heartbeats between peers of this package, every `interval`
        /// (default 15 s); `None` turns them off.
        pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
            self.peer.heartbeat_interval = interval.filter(|t| !t.is_zero());
            self
        }

        /// With heartbeats on, a connection that hears nothing for
        /// `max(timeout, 3 × the peer's interval)` is closed (default 30 s).
        pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
            self.peer.heartbeat_timeout = timeout;
            self
        }

        /// A connection whose handshake has not completed by then is closed
        /// (default 30 s).
        pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
            self.peer.handshake_timeout = timeout;
            self
        }

        /// A `set` (either side's) that would make the session larger than
        /// this many bytes of JSON is refused (default 1 MiB).
        pub fn max_session_bytes(mut self, bytes: usize) -> Self {
            self.peer.max_session_bytes = bytes;
            self
        }

        /// Offer and accept this package's protocol extensions (duplicate
        /// suppression, heartbeats, resume secrets; default on). Old peers
        /// never see them either way.
        pub fn extensions(mut self, on: bool) -> Self {
            self.peer.extensions = on;
            self
        }
    };
}

/// Settings of a [`Client`](crate::Client); build with the setters.
///
/// ```
/// use std::time::Duration;
/// let options = uhura::Options::default()
///     .auto_reconnect(Duration::from_millis(100), Duration::from_secs(10))
///     .ack_timeout(Duration::from_secs(5));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub(crate) peer: Config,
    pub(crate) auto_reconnect: Option<(Duration, Duration)>,
}

impl Options {
    peer_setters!();

    /// Reconnect by itself after the connection drops, waiting a random
    /// time in `[0, min(max, min × 2^attempt)]` before each attempt (see
    /// [`Client::auto_reconnect`](crate::Client::auto_reconnect)). Off by
    /// default, as in the original package.
    pub fn auto_reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.auto_reconnect = Some((min, max));
        self
    }
}

/// Settings of a [`Server`](crate::Server); build with the setters.
///
/// ```
/// use std::time::Duration;
/// let options = uhura::ServerOptions::default().resume_window(Duration::from_secs(30));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub(crate) peer: Config,
    pub(crate) resume_window: Duration,
    pub(crate) session_ttl: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) max_store_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let engine = EngineServerOptions::default();
        ServerOptions {
            peer: engine.peer,
            resume_window: engine.resume_window,
            session_ttl: DEFAULT_SESSION_TTL,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_store_bytes: DEFAULT_MAX_STORE_BYTES,
        }
    }
}

impl ServerOptions {
    peer_setters!();

    /// How long a dropped connection's pending events wait for its session
    /// to resume (default 120 s; zero: not at all).
    pub fn resume_window(mut self, window: Duration) -> Self {
        self.resume_window = window;
        self
    }

    /// Idle expiry of sessions in the in-memory store (default 24 h).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// At most this many sessions in the in-memory store, the least
    /// recently used evicted first (default 1,000,000).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// Bytes of JSON of all sessions in the in-memory store (default 256 MiB).
    pub fn max_store_bytes(mut self, bytes: usize) -> Self {
        self.max_store_bytes = bytes;
        self
    }

    pub(crate) fn engine(&self) -> EngineServerOptions {
        EngineServerOptions {
            peer: self.peer.clone(),
            store: StoreChoice::Memory {
                ttl: self.session_ttl,
                max_sessions: self.max_sessions,
                max_bytes: self.max_store_bytes,
            },
            resume_window: self.resume_window,
            ..EngineServerOptions::default()
        }
    }
}
