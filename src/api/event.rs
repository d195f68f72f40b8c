//! What a client or a server-side connection hears: [`Event`].

use serde_json::{Map, Value};
use std::time::Duration;

/// One thing that happened on a [`Client`](crate::Client) or a server-side
/// [`Connection`](crate::Connection), in the order it happened, as returned
/// by their `next_event()`.
///
/// Taking a [`Message`](Event::Message) (or any event) with `next_event()`
/// is what "handled" means for acknowledgements: see the
/// [delivery guarantee](crate::api#delivery-guarantee).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A client's handshake completed. `resumed`: the server kept the
    /// session the client had (it answered with the same session id).
    /// Server-side connections do not get this event: [`Server::accept`]
    /// returns them with [`Connection::resumed`] instead.
    ///
    /// [`Server::accept`]: crate::Server::accept
    /// [`Connection::resumed`]: crate::Connection::resumed
    Connect {
        /// The server resumed the client's earlier session.
        resumed: bool,
    },
    /// An event the peer sent: `send("name", ...args)` on its side.
    Message {
        /// The event's name.
        name: String,
        /// Its arguments, in order (empty for none).
        args: Vec<Value>,
    },
    /// The peer changed the shared session (its `set(key, value)` or
    /// `set({...})`); the change is already merged into
    /// [`session()`](crate::Client::session).
    Set {
        /// The fields it set, with their new values.
        fields: Map<String, Value>,
    },
    /// Client: the server destroyed the session. The client has emptied
    /// its own and closes the connection; with auto-reconnect on, it comes
    /// back with a new session.
    InvalidateSession,
    /// The connection closed. `reconnecting`: a client will try again by
    /// itself (auto-reconnect); a server-side connection never does, and
    /// its `next_event()` returns `None` after this event.
    Disconnect {
        /// The client is about to reconnect by itself.
        reconnecting: bool,
    },
    /// Client: auto-reconnect waits `delay` before attempt `attempt`.
    Reconnecting {
        /// Attempts so far since the last stable connection.
        attempt: u32,
        /// How long it waits before connecting.
        delay: Duration,
    },
    /// A pending event was dropped (queue over its limits, or its session
    /// was let go); its `send` future, if any, fails with
    /// [`ErrorKind::Dropped`](crate::ErrorKind::Dropped).
    Drop,
    /// Something failed on this connection: a protocol error of the peer
    /// (the connection is then closed), a failed connection attempt, a
    /// refused `set`, a session store failure.
    Error {
        /// What happened, worded as the Node binding words it.
        message: String,
        /// Node's `err.code`, such as `ECONNREFUSED` or
        /// `ERR_UHURA_RESUME_REFUSED`, where there is one.
        code: Option<String>,
    },
}

impl Event {
    /// A delivered `[name, ...args]` array.
    pub(crate) fn message(body: Value) -> Event {
        let mut items = match body {
            Value::Array(items) => items,
            other => vec![other],
        };
        let name = match items.first() {
            Some(Value::String(_)) => match items.remove(0) {
                Value::String(s) => s,
                _ => unreachable!(),
            },
            Some(other) => {
                let name = other.to_string();
                items.remove(0);
                name
            }
            None => String::new(),
        };
        Event::Message { name, args: items }
    }

    /// A delivered `["_set", key, value]` or `["_set", {...}]`, merged as
    /// the session merges it (docs/PROTOCOL.md §5).
    pub(crate) fn set(body: Value) -> Event {
        let mut fields = Map::new();
        if let Value::Array(mut items) = body {
            let value = if items.len() > 2 { items.swap_remove(2) } else { Value::Null };
            match items.get_mut(1).map(Value::take) {
                Some(Value::String(key)) => {
                    fields.insert(key, value);
                }
                Some(Value::Object(map)) => fields = map,
                _ => {}
            }
        }
        Event::Set { fields }
    }

    pub(crate) fn error(body: &Value) -> Event {
        let message = body.get("message").and_then(Value::as_str).unwrap_or("uhura: error").to_owned();
        let code = body.get("code").and_then(Value::as_str).map(str::to_owned);
        Event::Error { message, code }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_and_sets_parse_as_delivered() {
        assert_eq!(
            Event::message(json!(["hi", 1, {"a": [2]}])),
            Event::Message { name: "hi".into(), args: vec![json!(1), json!({"a": [2]})] }
        );
        assert_eq!(Event::message(json!(["bare"])), Event::Message { name: "bare".into(), args: vec![] });
        let one = Event::set(json!(["_set", "k", 42]));
        assert_eq!(one, Event::Set { fields: json!({"k": 42}).as_object().unwrap().clone() });
        let missing = Event::set(json!(["_set", "k"]));
        assert_eq!(missing, Event::Set { fields: json!({"k": null}).as_object().unwrap().clone() });
        let many = Event::set(json!(["_set", {"a": 1, "b": "x"}]));
        assert_eq!(many, Event::Set { fields: json!({"a": 1, "b": "x"}).as_object().unwrap().clone() });
        assert_eq!(Event::set(json!(["_set", 7])), Event::Set { fields: Map::new() });
    }
}
