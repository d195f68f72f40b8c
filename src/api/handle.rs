//! What clients and server-side connections share: sending, the session,
//! and taking events. [`Ack`] is the future of an acknowledged send.

use super::error::{Error, ErrorKind};
use super::event::Event;
use super::hub::Hub;
use super::inbox::{Inbox, Next};
use crate::engine::delivery::lock;
use crate::engine::link::Link;
use crate::protocol::session;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The future of [`Client::send`](crate::Client::send) and
/// [`Connection::send`](crate::Connection::send): resolves `Ok(())` once
/// the peer acknowledged the event, or fails with
/// [`ErrorKind::Dropped`], [`ErrorKind::AckTimeout`] or [`ErrorKind::Closed`].
///
/// The event is queued when `send` is called, not when this future is first
/// polled: dropping the future only stops waiting for the ack.
#[must_use = "the event is sent either way; await the Ack to learn that the peer acknowledged it"]
#[derive(Debug)]
pub struct Ack {
    state: AckState,
}

#[derive(Debug)]
enum AckState {
    Waiting(oneshot::Receiver<Result<(), Error>>),
    Done(Option<Result<(), Error>>),
}

impl Ack {
    pub(crate) fn failed(e: Error) -> Self {
        Ack { state: AckState::Done(Some(Err(e))) }
    }

    pub(crate) fn waiting(rx: oneshot::Receiver<Result<(), Error>>) -> Self {
        Ack { state: AckState::Waiting(rx) }
    }
}

impl Future for Ack {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            AckState::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or_else(|_| Err(Error::closed()))),
            AckState::Done(result) => Poll::Ready(result.take().unwrap_or_else(|| Err(Error::closed()))),
        }
    }
}

/// `["name", ...args]` as JSON text. `args` serializing to an array gives
/// the arguments; to `null` (`()`, `None`), none; to anything else, one.
pub(crate) fn event_json(name: &str, args: &impl Serialize) -> Result<String, Error> {
    let invalid = |e: serde_json::Error| {
        Error::new(ErrorKind::InvalidInput, format!("uhura: send({name:?}): the arguments are not JSON: {e}"))
    };
    let name = serde_json::to_string(name).map_err(invalid)?;
    let args = serde_json::to_string(args).map_err(invalid)?;
    Ok(match args.as_str() {
        "null" | "[]" => format!("[{name}]"),
        a if a.starts_with('[') => format!("[{name},{}", &a[1..]),
        a => format!("[{name},{a}]"),
    })
}

/// A link handle with its queue of events.
pub(crate) struct Handle {
    pub(crate) hub: &'static Hub,
    pub(crate) handle: u32,
    pub(crate) inbox: Arc<Inbox>,
}

impl Handle {
    /// The link serving this handle now (after a resume, the new connection's).
    pub(crate) fn link(&self) -> Result<Arc<Link>, Error> {
        self.hub.engine.link(self.handle).map_err(|_| Error::closed())
    }

    pub(crate) fn send(&self, name: &str, args: impl Serialize) -> Ack {
        let json = match event_json(name, &args) {
            Ok(json) => json,
            Err(e) => return Ack::failed(e),
        };
        let link = match self.link() {
            Ok(link) => link,
            Err(e) => return Ack::failed(e),
        };
        let (tx, rx) = oneshot::channel();
        let seq = self.hub.expect_ack(self.handle, tx);
        link.send_event(json, Some((self.handle, seq)));
        Ack::waiting(rx)
    }

    pub(crate) fn emit(&self, name: &str, args: impl Serialize) -> Result<(), Error> {
        let json = event_json(name, &args)?;
        self.link()?.send_event(json, None);
        Ok(())
    }

    fn set_args(&self, args: String) -> Result<(), Error> {
        self.link()?.set(args).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("uhura: set(): {e}")))
    }

    pub(crate) fn set(&self, key: &str, value: impl Serialize) -> Result<(), Error> {
        let args = serde_json::to_string(&(key, value)).map_err(|e| {
            Error::new(ErrorKind::InvalidInput, format!("uhura: set({key:?}): the value is not JSON: {e}"))
        })?;
        self.set_args(args)
    }

    pub(crate) fn set_fields(&self, fields: impl Serialize) -> Result<(), Error> {
        match serde_json::to_value(fields) {
            Ok(fields @ Value::Object(_)) => self.set_args(Value::Array(vec![fields]).to_string()),
            Ok(other) => {
                Err(Error::new(ErrorKind::InvalidInput, format!("uhura: set_fields() takes an object, got {other}")))
            }
            Err(e) => Err(Error::new(ErrorKind::InvalidInput, format!("uhura: set_fields(): not JSON: {e}"))),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Value> {
        let link = self.link().ok()?;
        let peer = lock(&link.peer);
        (key != session::RESUME_KEY).then(|| peer.session().get(key).cloned()).flatten()
    }

    pub(crate) fn session(&self) -> Map<String, Value> {
        let Ok(link) = self.link() else { return Map::new() };
        let view = session::public_view(&lock(&link.peer).session());
        match view {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    pub(crate) async fn next_event(&self) -> Option<Event> {
        self.inbox.next().await
    }

    pub(crate) fn try_next_event(&self) -> Option<Event> {
        match self.inbox.try_next() {
            Next::Event(e) => Some(e),
            Next::Empty | Next::Closed => None,
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.inbox.status.borrow().connected
    }
}

#[cfg(test)]
mod tests {
    use super::event_json;
    use serde_json::json;

    #[test]
    fn arguments_serialize_after_the_name() {
        assert_eq!(event_json("e", &()).unwrap(), r#"["e"]"#);
        assert_eq!(event_json("e", &(1, "two")).unwrap(), r#"["e",1,"two"]"#);
        assert_eq!(event_json("e", &vec![json!({"a": 1})]).unwrap(), r#"["e",{"a":1}]"#);
        assert_eq!(event_json("e", &json!({"a": 1})).unwrap(), r#"["e",{"a":1}]"#);
        assert_eq!(event_json("e", &"[x").unwrap(), r#"["e","[x"]"#);
        assert_eq!(event_json("e", &(vec![1, 2],)).unwrap(), r#"["e",[1,2]]"#);
        assert_eq!(event_json("q\"", &[1]).unwrap(), r#"["q\"",1]"#);
    }
}
