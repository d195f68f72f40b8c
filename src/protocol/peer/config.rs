//! What a peer is configured with, and the limits it keeps whatever the
//! configuration.

use crate::protocol::entropy::Entropy;
use crate::protocol::framing::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_MESSAGE_SIZE};
use crate::protocol::{message, session};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Past this much unwritten output, events wait in the queue instead, so a
/// peer that stops reading makes the queue (which is bounded) grow, not the
/// output buffer.
pub(super) const OUTPUT_HIGH_WATER: usize = 1024 * 1024;
/// Past this much unwritten output the peer stops wanting input
/// (`Peer::wants_read`): what it reads makes acks, so a peer that sends but
/// never reads cannot grow our output without bound.
pub(super) const READ_HIGH_WATER: usize = 16 * 1024 * 1024;
/// Written down below this, the peer wants input again.
pub(super) const READ_LOW_WATER: usize = READ_HIGH_WATER / 2;
/// At most this many events are sent and not yet acknowledged. Bounds
/// what a drop makes us resend (so frequent drops cannot starve progress)
/// and what an old peer must search per ack (0.1.2's lookup is linear).
pub(super) const MAX_IN_FLIGHT: usize = 8192;
/// An event that is the oldest unacknowledged one each time the peer
/// refuses our input (`REFUSED`) and closes the connection, this many times
/// in a row with nothing acknowledged in between, is taken as refused by the
/// peer (its reader rejects it) and dropped instead of being resent forever
/// (docs/PROTOCOL.md §9).
pub const REFUSALS_BEFORE_DROP: u32 = 3;

/// Event names the peer can never raise: local lifecycle events of the
/// emitter (and `start`, `invalidateSession` where they are not the protocol
/// messages of that name). Such a message is acknowledged and ignored
/// (docs/PROTOCOL.md §2).
pub const RESERVED_EVENTS: &[&str] =
    &["error", "connect", "disconnect", "drop", "reconnecting", "newListener", "removeListener", "start"];

/// A peer's settings: limits, timers, extensions and the driver's choices.
#[derive(Debug, Clone)]
pub struct Config {
    /// At most this many bytes per message (`maxMessageSize`).
    pub max_message_size: usize,
    /// At most this many arguments after the event name (`maxArgs`).
    pub max_args: usize,
    /// At most this deep an argument array, itself level 1 (`maxDepth`).
    pub max_depth: usize,
    /// Pending events (queued plus unacknowledged) beyond this count drop the oldest.
    pub max_queue_length: usize,
    /// Pending events beyond this many bytes of JSON drop the oldest.
    pub max_queue_bytes: usize,
    /// Server: the `cookie` field of new sessions (the old server's connect Cookie).
    /// Shared: every connection's peer has a copy of the config.
    pub cookie: Arc<Value>,
    /// Offer / accept our protocol extensions.
    pub extensions: bool,
    /// Send a heartbeat when nothing else was sent for this long (with our peers).
    pub heartbeat_interval: Option<Duration>,
    /// Declare the connection dead when nothing arrived for this long (with our peers).
    pub heartbeat_timeout: Duration,
    /// Report an error to an ack callback not acknowledged this long after `send`.
    pub ack_timeout: Option<Duration>,
    /// A transport whose handshake has not completed by then is closed (a
    /// hung server, or a client that never sends `start`).
    pub handshake_timeout: Duration,
    /// Server: bytes of events held before the handshake completes. Before
    /// `start` no client of any version sends events, so more is a protocol
    /// error; while a resumed session loads, more pauses reading instead
    /// (`Peer::wants_read`), since an old client sends its queue right then.
    pub max_handshake_bytes: usize,
    /// A `_set` (either side's) that would make the session larger than
    /// this many bytes of JSON is refused.
    pub max_session_bytes: usize,
    /// Client: the resume secret of the session it starts with (kept by the
    /// application from an earlier run; see `Peer::resume_secret`).
    pub resume_secret: Option<String>,
    /// Server: report `Persist` / `Unpersist` / `Seen` so a shared store can
    /// carry delivery state to another server.
    pub persist_delivery: bool,
    /// Report `AckDue` instead of acknowledging on arrival (see `Peer::write_ack`).
    pub defer_acks: bool,
    /// Where the peer's message-id prefix, session ids and resume secrets
    /// come from. Required: the protocol core never reads the OS itself.
    /// The engine supplies the OS CSPRNG; tests pass `Entropy::seeded`.
    pub entropy: Option<Entropy>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_args: message::DEFAULT_MAX_ARGS,
            max_depth: DEFAULT_MAX_DEPTH,
            max_queue_length: usize::MAX,
            max_queue_bytes: 64 * 1024 * 1024,
            cookie: shared_default_cookie(),
            extensions: true,
            heartbeat_interval: Some(Duration::from_secs(15)),
            heartbeat_timeout: Duration::from_secs(30),
            ack_timeout: None,
            handshake_timeout: Duration::from_secs(30),
            max_handshake_bytes: 1024 * 1024,
            max_session_bytes: 1024 * 1024,
            resume_secret: None,
            persist_delivery: false,
            defer_acks: false,
            entropy: None,
        }
    }
}

impl Config {
    /// Whether a peer made with `other` behaves exactly as one made with
    /// this: the same limits and options, the same cookie template, the
    /// same entropy source (a clone of it). For sharing one `Arc` between
    /// peers made with equal configs (a process's many clients).
    pub fn same_as(&self, other: &Config) -> bool {
        // Taken apart field by field: a new field does not compile here
        // until it is compared.
        let Config {
            max_message_size,
            max_args,
            max_depth,
            max_queue_length,
            max_queue_bytes,
            cookie,
            extensions,
            heartbeat_interval,
            heartbeat_timeout,
            ack_timeout,
            handshake_timeout,
            max_handshake_bytes,
            max_session_bytes,
            resume_secret,
            persist_delivery,
            defer_acks,
            entropy,
        } = self;
        *max_message_size == other.max_message_size
            && *max_args == other.max_args
            && *max_depth == other.max_depth
            && *max_queue_length == other.max_queue_length
            && *max_queue_bytes == other.max_queue_bytes
            && (Arc::ptr_eq(cookie, &other.cookie) || **cookie == *other.cookie)
            && *extensions == other.extensions
            && *heartbeat_interval == other.heartbeat_interval
            && *heartbeat_timeout == other.heartbeat_timeout
            && *ack_timeout == other.ack_timeout
            && *handshake_timeout == other.handshake_timeout
            && *max_handshake_bytes == other.max_handshake_bytes
            && *max_session_bytes == other.max_session_bytes
            && *resume_secret == other.resume_secret
            && *persist_delivery == other.persist_delivery
            && *defer_acks == other.defer_acks
            && match (entropy, &other.entropy) {
                (Some(a), Some(b)) => a.same_source(b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// The default cookie template, made once: every client's config has one
/// (a client never uses it), and a `preserve_order` map of four fields is
/// ~800 bytes, per client of 10,000 in one process.
fn shared_default_cookie() -> Arc<Value> {
    static COOKIE: std::sync::OnceLock<Arc<Value>> = std::sync::OnceLock::new();
    COOKIE.get_or_init(|| Arc::new(session::default_cookie())).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::entropy::Entropy;

    #[test]
    fn same_as_compares_every_option_and_the_sources() {
        let entropy = Entropy::seeded([7; 32]);
        let a = Config { entropy: Some(entropy.clone()), ..Config::default() };
        assert!(a.same_as(&Config { entropy: Some(entropy.clone()), ..Config::default() }));
        // An equal cookie template in another allocation is the same.
        let cookie = Arc::new((*a.cookie).clone());
        assert!(a.same_as(&Config { entropy: Some(entropy.clone()), cookie, ..Config::default() }));
        let differs = [
            Config { entropy: Some(Entropy::seeded([7; 32])), ..Config::default() },
            Config { entropy: None, ..Config::default() },
            Config { entropy: Some(entropy.clone()), max_queue_length: 5, ..Config::default() },
            Config { entropy: Some(entropy.clone()), heartbeat_interval: None, ..Config::default() },
            Config { entropy: Some(entropy.clone()), resume_secret: Some("s".into()), ..Config::default() },
            Config { entropy: Some(entropy.clone()), defer_acks: true, ..Config::default() },
            Config { entropy: Some(entropy.clone()), cookie: Arc::new(Value::Null), ..Config::default() },
        ];
        for (i, b) in differs.iter().enumerate() {
            assert!(!a.same_as(b), "config {i} differs");
        }
    }

    /// Clients share one `Config` when made with equal options: a limit
    /// changed on one (`maxQueueLength`) is that one's alone.
    #[test]
    fn a_shared_config_changes_for_one_peer_only() {
        use crate::protocol::peer::{Peer, Role};
        use std::time::Instant;
        let shared = Arc::new(Config { entropy: Some(Entropy::seeded([1; 32])), ..Config::default() });
        let now = Instant::now();
        let (mut a, mut b) =
            (Peer::new(Role::Client, shared.clone(), now), Peer::new(Role::Client, shared.clone(), now));
        for i in 0..5 {
            a.send_event(&format!("[\"e\",{i}]"), None, now);
            b.send_event(&format!("[\"e\",{i}]"), None, now);
        }
        a.set_max_queue_length(2);
        assert_eq!(a.queued_len(), 2, "the oldest over the new limit dropped");
        assert_eq!(b.queued_len(), 5, "the other peer keeps its limit");
        b.send_event("[\"e\",5]", None, now);
        assert_eq!(b.queued_len(), 6);
        assert_eq!(shared.max_queue_length, usize::MAX, "the shared config is unchanged");
    }
}
