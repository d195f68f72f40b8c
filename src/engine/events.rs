//! What the engine tells the application: the kinds of the entries of a
//! delivery batch, `[handle, kind, body...]` (see `delivery.rs` for the
//! batch, lib/native.js `dispatch` for the Node side). lib/constants.js
//! mirrors the numbers, checked by tests/js_constants.rs.

use std::fmt;

/// The kind of a delivery entry. The numbers are the wire format between
/// Rust and JavaScript: never renumber one.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An application event from the peer: `[handle, 0, [name, ...args]]`.
    Message = 0,
    /// Send callbacks settled by the acks of their events: `[handle, 1, seq]`,
    /// or `[handle, 1, from, to]` for every sequence number from `from` to
    /// `to` (inclusive).
    Acked = 1,
    /// A `_set` from the peer, already merged into the session.
    Set = 2,
    /// The handshake completed (new or resumed session).
    Connected = 3,
    /// The transport closed; the link may reconnect or be resumed.
    Disconnected = 4,
    /// An error for the application's `error` event (message and code).
    Error = 5,
    /// A server's listener is bound (its address, and the listen's number).
    Listening = 6,
    /// A server stopped listening.
    Closed = 7,
    /// A pending event was dropped (queue limits, refusal, session gone).
    Dropped = 8,
    /// A client is waiting to reconnect (the `reconnecting` event).
    Reconnecting = 9,
    /// JS transports: output is ready for `take_output`.
    Output = 10,
    /// JS transports: the link is done; close the JS stream.
    TransportClosed = 11,
    /// JS transports: input was paused by `feed`; resume it.
    ResumeInput = 12,
    /// JS client transports: call the `createConnection` factory.
    OpenTransport = 13,
    /// Servers with a JavaScript store: run a store operation.
    StoreOp = 14,
    /// An ack did not arrive within `ackTimeout`.
    AckTimeout = 15,
    /// A client stopped for good (after `disconnect()`).
    Stopped = 16,
    /// Native sockets: watch this link's socket on the application's loop.
    Watch = 17,
    /// Native sockets: stop watching it.
    Unwatch = 18,
    /// A `DEBUG=uhura:*` line (see `diag`).
    Log = 19,
    /// Servers: a connection was accepted (before its handshake): `[link, addresses]`.
    Accepted = 20,
    /// Servers: a connection over `maxConnections` was closed at once.
    Refused = 21,
    /// A durable send reached the store (`[handle, 22, seq]`), or could not
    /// (`[handle, 22, seq, {message, code}]`); for a server handle, a
    /// `sendTo` or `broadcast` handed to the fleet (src/engine/fleet_bus.rs).
    Persisted = 22,
    /// The events of a run of messages on one link, in order, in one entry,
    /// each as its number of elements and the elements, name first:
    /// `[handle, 23, 3, "e", 1, "x", 1, "f", ...]`; a 0 instead of the number
    /// is followed by the whole array (`0, ["e", 1, "x"]`), for a message
    /// whose elements were not counted. No array per event: that was a
    /// fifth of a receiving server's `JSON.parse` (bench/README.md, "Profile").
    Messages = 23,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 24] = [
        Kind::Message,
        Kind::Acked,
        Kind::Set,
        Kind::Connected,
        Kind::Disconnected,
        Kind::Error,
        Kind::Listening,
        Kind::Closed,
        Kind::Dropped,
        Kind::Reconnecting,
        Kind::Output,
        Kind::TransportClosed,
        Kind::ResumeInput,
        Kind::OpenTransport,
        Kind::StoreOp,
        Kind::AckTimeout,
        Kind::Stopped,
        Kind::Watch,
        Kind::Unwatch,
        Kind::Log,
        Kind::Accepted,
        Kind::Refused,
        Kind::Persisted,
        Kind::Messages,
    ];

    /// The kind numbered `n`, if there is one (for a consumer of batches).
    pub fn from_u8(n: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(n)).copied()
    }

    /// Its name in lib/constants.js.
    pub fn js_name(self) -> &'static str {
        match self {
            Kind::Message => "MESSAGE",
            Kind::Acked => "ACKED",
            Kind::Set => "SET",
            Kind::Connected => "CONNECTED",
            Kind::Disconnected => "DISCONNECTED",
            Kind::Error => "ERROR",
            Kind::Listening => "LISTENING",
            Kind::Closed => "CLOSED",
            Kind::Dropped => "DROPPED",
            Kind::Reconnecting => "RECONNECTING",
            Kind::Output => "OUTPUT",
            Kind::TransportClosed => "TRANSPORT_CLOSED",
            Kind::ResumeInput => "RESUME_INPUT",
            Kind::OpenTransport => "OPEN_TRANSPORT",
            Kind::StoreOp => "STORE_OP",
            Kind::AckTimeout => "ACK_TIMEOUT",
            Kind::Stopped => "STOPPED",
            Kind::Watch => "WATCH",
            Kind::Unwatch => "UNWATCH",
            Kind::Log => "LOG",
            Kind::Accepted => "ACCEPTED",
            Kind::Refused => "REFUSED",
            Kind::Persisted => "PERSISTED",
            Kind::Messages => "MESSAGES",
        }
    }
}

/// As it is written in an entry: its number.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

/// Appends a PERSISTED entry: `[handle, 22, seq]`, or, with the failure's
/// message and code, `[handle, 22, seq, {"message", "code"}]`. Written in
/// one place for both of its senders: durable sends (`link/persist.rs`) and
/// a server's `sendTo` / `broadcast` (`fleet_bus.rs`).
pub(crate) fn persisted_entry(b: &mut String, handle: u32, seq: u64, failure: Option<(&str, &str)>) {
    use std::fmt::Write as _;
    let _ = write!(b, "[{handle},{},{seq}", Kind::Persisted);
    if let Some((message, code)) = failure {
        b.push(',');
        b.push_str(&serde_json::json!({ "message": message, "code": code }).to_string());
    }
    b.push(']');
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn a_persisted_entry_with_and_without_its_failure() {
        let mut b = String::new();
        super::persisted_entry(&mut b, 3, 7, None);
        super::persisted_entry(&mut b, 3, 8, Some(("it \"failed\"", "ESTORE")));
        assert_eq!(b, r#"[3,22,7][3,22,8,{"message":"it \"failed\"","code":"ESTORE"}]"#);
    }

    #[test]
    fn all_lists_every_kind_at_its_number() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{}", k.js_name());
            assert_eq!(Kind::from_u8(i as u8), Some(*k));
        }
        assert_eq!(Kind::from_u8(Kind::ALL.len() as u8), None);
    }
}
