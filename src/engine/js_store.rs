//! A session store implemented in JavaScript (a connect-style object with
//! `get`, `set` and `destroy`). Each operation is delivered to JS as an
//! event and answered through `reply`; a store that never answers times
//! out, so a stuck store cannot hold a connection's handshake forever.

use super::delivery::{lock, Delivery};
use super::events::Kind;
use super::store::{SessionStore, StoreFuture};
use crate::protocol::json;
use crate::protocol::session::Session;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

type Reply = Result<Option<String>, String>;

/// How long a JavaScript store may take to answer when `storeTimeout` is not set.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct JsStore {
    server: u32,
    delivery: Arc<Delivery>,
    timeout: Duration,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
}

impl JsStore {
    pub(crate) fn new(server: u32, delivery: Arc<Delivery>, timeout: Duration) -> Self {
        JsStore { server, delivery, timeout, next: AtomicU64::new(1), pending: Mutex::new(HashMap::new()) }
    }

    /// JavaScript's answer to request `req`: the session as JSON (for `get`), or an error.
    pub(crate) fn reply(&self, req: u64, result: Reply) {
        if let Some(tx) = lock(&self.pending).remove(&req) {
            let _ = tx.send(result);
        }
    }

    async fn call(&self, op: &str, sid: &str, session: Option<&Session>) -> Reply {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(req, tx);
        let (server, op_json, sid_json) = (self.server, Value::from(op).to_string(), Value::from(sid).to_string());
        let session_json = session.map(|s| Value::Object(s.clone()).to_string());
        self.delivery.push(|b| {
            b.push_str(&format!("[{server},{},{req},{op_json},{sid_json},", Kind::StoreOp));
            b.push_str(session_json.as_deref().unwrap_or("null"));
            b.push(']');
        });
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the store request was dropped".into()),
            Err(_) => {
                lock(&self.pending).remove(&req);
                Err(format!("the store did not answer {op} within {} ms", self.timeout.as_millis()))
            }
        }
    }
}

impl SessionStore for JsStore {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            match self.call("get", sid, None).await? {
                None => Ok(None),
                // JSON.stringify's output, read as JSON.parse would (lone
                // surrogates, deep nesting), as the peer reads `_set`.
                Some(text) => match json::parse_value(&text, crate::protocol::framing::MAX_DEPTH_LIMIT) {
                    Ok(Value::Object(s)) => Ok(Some(s)),
                    Ok(_) => Ok(None),
                    Err(e) => Err(format!("the store returned unreadable JSON: {e:?}")),
                },
            }
        })
    }
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.call("set", sid, Some(&session)).await.map(|_| ()) })
    }
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.call("destroy", sid, None).await.map(|_| ()) })
    }
}
