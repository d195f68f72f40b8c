//! What a peer reports to its driver (`Peer::poll_event`), and what its
//! wire tap sees.

/// Whom to tell about an event's fate: an application handle and its own
/// sequence number for the event.
pub type Notify = (u32, u64);

/// What the peer reports to its driver and, through it, to the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed. `resumed`: the server resumed a stored session.
    Connected {
        /// The server resumed a stored session.
        resumed: bool,
    },
    /// An application event: raw JSON of its argument array, name first.
    Message(String),
    /// A `_set` from the peer (already merged): raw JSON, `"_set"` first.
    Set(String),
    /// Acknowledged (or written, when acks are off).
    Acked(Notify),
    /// The ack did not come within `ack_timeout`. The event stays queued
    /// for delivery; only the callback is released.
    AckTimeout(Notify),
    /// A pending event was dropped because the queue was over its limits.
    Dropped {
        /// Its send callback, if it had one.
        notify: Option<Notify>,
    },
    /// A pending event was dropped because the peer refused it: it closed the
    /// connection with this event the oldest unacknowledged one
    /// `REFUSALS_BEFORE_DROP` times in a row.
    Refused {
        /// Its send callback, if it had one.
        notify: Option<Notify>,
    },
    /// Server: look this id up in the store, then call `handle_session_loaded`.
    LoadSession(String),
    /// Server: the session changed; save it under `session_id()`.
    SaveSession,
    /// Server (`persist_delivery`): an outbound event to keep until acked.
    Persist {
        /// The message id.
        id: String,
        /// The event's argument array, name first.
        args: String,
    },
    /// Server (`persist_delivery`): that event was acknowledged or dropped.
    Unpersist {
        /// The message id.
        id: String,
    },
    /// Server (`persist_delivery`): the highest message seen from a sender.
    Seen {
        /// The sender's id prefix.
        sender: String,
        /// The highest sequence number seen from it.
        seq: u64,
    },
    /// (`defer_acks`) Once the application has handled the events before
    /// this one, acknowledge message `id` (its raw JSON string literal) with
    /// `write_acks` (or `write_ack`).
    AckDue {
        /// The message id's raw JSON string literal.
        id: String,
        /// The message was delivered before (docs/PROTOCOL.md §9): its ack
        /// is written on its own, never as a cumulative ack covering the
        /// acks before it (the original's ack may be out already).
        duplicate: bool,
    },
    /// A protocol error, or the peer went silent; the driver closes this transport.
    Error(String),
}

/// Which way a message went, for a [`WireTap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the peer.
    Received,
    /// To the peer.
    Sent,
}

/// Sees the JSON text of every message as it is framed for the wire or
/// taken off it, in wire order (diagnostics: `DEBUG=uhura:protocol`).
pub type WireTap = std::sync::Arc<dyn Tap>;

/// What a [`WireTap`] does; any `Fn(Direction, &str)` is one that always
/// looks.
pub trait Tap: Send + Sync {
    /// Whether it looks now. Asked before each message is shown, so a tap
    /// that is off costs no search for the resume secret to hide.
    fn looking(&self) -> bool {
        true
    }

    /// One message's text, the resume secret hidden.
    fn see(&self, direction: Direction, text: &str);
}

impl<F: Fn(Direction, &str) + Send + Sync> Tap for F {
    fn see(&self, direction: Direction, text: &str) {
        self(direction, text);
    }
}
