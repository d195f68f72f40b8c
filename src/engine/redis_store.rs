//! A session store in Redis, so a client can resume its session on any
//! server process of a fleet.
//!
//! The format is connect-redis's (key = prefix + sid, value = the session as
//! JSON text, expiry set with `SET .. EX`), so a fleet still running the npm
//! package can share sessions with this one.

use super::store::{DeliveryDelta, DeliveryState, SessionStore, StoreFuture};
use crate::protocol::session::Session;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::Mutex;

// connect-redis's defaults.
const DEFAULT_PREFIX: &str = "sess:";
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

// A handshake waits on the store, so a dead Redis must cost a client a
// couple of seconds, not the OS's TCP timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// An outbox entry: message id and argument JSON.
type IdAndArgs = (String, String);

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    ttl_secs: u64,
    // Empty until the first operation: creating a ConnectionManager connects
    // and spawns onto the current tokio runtime, and `new` may run on a
    // thread without one (the JS thread) while Redis is still down. Left
    // empty again when a first connection fails, so the next op retries.
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisStore {
    /// Never blocks and never needs Redis to be up: connects lazily on first
    /// use and reconnects after failures.
    pub fn new(url: &str, prefix: Option<String>, ttl: Option<Duration>) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis: bad url: {e}"))?;
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        // EX takes whole seconds and rejects 0; rounding up keeps a short
        // ttl from expiring a session before it was asked to.
        let ttl_secs = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
        Ok(RedisStore {
            client,
            prefix: prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            ttl_secs,
            conn: Mutex::new(None),
        })
    }

    fn key(&self, sid: &str) -> String {
        format!("{}{}", self.prefix, sid)
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        // Held across the connect so concurrent first uses make one
        // connection, not one each.
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        // Few, short retries: the manager's defaults (6 retries, doubling
        // from 100 ms) would make every op wait out a backoff that our own
        // op timeout cuts off anyway, and each failed op already triggers
        // the next reconnect. No response timeout of its own (its default
        // is 500 ms): the op timeout bounds the wait, and a slow answer
        // inside it is still an answer.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(self.client.clone(), config);
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out("could not connect", CONNECT_TIMEOUT)),
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn query_once(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        let mut conn = self.connection().await?;
        cmd.query_async(&mut conn).await
    }

    /// Runs `cmd`, the whole of it (connecting included) bounded by
    /// `OP_TIMEOUT`.
    async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        let attempt = async {
            match self.query_once(cmd).await {
                // A connection that died while idle (Redis restarted) is
                // only found out by the next command. The manager has
                // already started reconnecting, so one more try usually
                // succeeds; the commands here are idempotent.
                Err(e) if is_broken_connection(&e) => self.query_once(cmd).await,
                r => r,
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(timed_out("no answer", OP_TIMEOUT)),
        }
    }

    async fn get_session(&self, sid: &str) -> Result<Option<Session>, String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(sid));
        let value = match self.query(&cmd).await {
            Ok(v) => v,
            // Someone else's data under our key is not a session; reporting
            // it missing starts a fresh one, whose SET replaces it.
            Err(e) if e.code() == Some("WRONGTYPE") => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let bytes = match value {
            redis::Value::BulkString(b) => b,
            redis::Value::SimpleString(s) => s.into_bytes(),
            _ => return Ok(None),
        };
        // Anything but a JSON object cannot be resumed, so it is as good as
        // missing; failing the handshake over it would lock the client out.
        // Not serde_json's `Value` parser: see `session::parse_value`.
        match crate::protocol::session::parse_value_slice(&bytes) {
            Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        }
    }

    async fn set_session(&self, sid: &str, session: &Session) -> Result<(), String> {
        let json = serde_json::to_string(session).map_err(|e| format!("redis: {e}"))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(sid)).arg(json).arg("EX").arg(self.ttl_secs);
        self.query(&cmd).await.map(drop).map_err(fail)
    }

    /// Delivery state lives in two hashes beside the session: `out:` maps
    /// message id to `[order, args]` (unacknowledged outbound events) and
    /// `seen:` maps a client's sender prefix to the highest sequence number
    /// delivered. Hashes make each add and ack O(1).
    fn delivery_keys(&self, sid: &str) -> (String, String) {
        (format!("{}out:{}", self.prefix, sid), format!("{}seen:{}", self.prefix, sid))
    }

    async fn save_delivery_state(&self, sid: &str, delta: DeliveryDelta) -> Result<(), String> {
        let (out, seen) = self.delivery_keys(sid);
        // Order across servers: wall-clock microseconds, then the sender's
        // sequence (ids end in it) within one batch.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let mut pipe = redis::pipe();
        if !delta.add.is_empty() {
            let cmd = pipe.cmd("HSET").arg(&out);
            for (i, (id, args)) in delta.add.iter().enumerate() {
                cmd.arg(id).arg(format!("[{},{args}]", now + i as u64));
            }
            pipe.ignore();
        }
        if !delta.remove.is_empty() {
            pipe.cmd("HDEL").arg(&out).arg(&delta.remove).ignore();
        }
        if !delta.seen.is_empty() {
            let cmd = pipe.cmd("HSET").arg(&seen);
            for (sender, seq) in &delta.seen {
                cmd.arg(sender).arg(*seq);
            }
            pipe.ignore();
        }
        pipe.cmd("EXPIRE").arg(&out).arg(self.ttl_secs).ignore();
        pipe.cmd("EXPIRE").arg(&seen).arg(self.ttl_secs).ignore();
        self.run(|mut conn| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
        .map_err(fail)
    }

    async fn load_delivery_state(&self, sid: &str) -> Result<DeliveryState, String> {
        let (out, seen) = self.delivery_keys(sid);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(&out).cmd("HGETALL").arg(&seen);
        let (outbox, seen): (Vec<IdAndArgs>, Vec<(String, u64)>) = self
            .run(|mut conn| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .await
            .map_err(fail)?;
        let mut ordered: Vec<(u64, String, String)> = outbox
            .into_iter()
            .filter_map(|(id, entry)| {
                // Entries that do not parse are skipped: resending garbage
                // would only break the client.
                let v: Vec<&serde_json::value::RawValue> = serde_json::from_str(&entry).ok()?;
                let order = v.first()?.get().parse::<u64>().ok()?;
                Some((order, id, v.get(1)?.get().to_owned()))
            })
            .collect();
        ordered.sort();
        Ok(DeliveryState { outbox: ordered.into_iter().map(|(_, id, args)| (id, args)).collect(), seen })
    }

    /// Runs `op` on a connection with the same retry and time bound as `query`.
    async fn run<T, F, Fut>(&self, op: F) -> redis::RedisResult<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            match op(self.connection().await?).await {
                Err(e) if is_broken_connection(&e) => op(self.connection().await?).await,
                r => r,
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(timed_out("no answer", OP_TIMEOUT)),
        }
    }

    async fn destroy_session(&self, sid: &str) -> Result<(), String> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(sid));
        self.query(&cmd).await.map(drop).map_err(fail)
    }
}

/// Errors after which the same command on a fresh connection may succeed.
fn is_broken_connection(e: &redis::RedisError) -> bool {
    // A timeout is excluded: retrying it would only wait out the op
    // timeout a second time.
    e.is_connection_dropped() || (e.is_io_error() && !e.is_timeout())
}

fn timed_out(what: &str, limit: Duration) -> redis::RedisError {
    let secs = limit.as_secs_f32();
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} within {secs} s")).into()
}

fn fail(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

impl SessionStore for RedisStore {
    fn get<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(self.get_session(sid))
    }
    fn set<'a>(&'a self, sid: &'a str, session: Session) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.set_session(sid, &session).await })
    }
    fn destroy<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.destroy_session(sid))
    }
    fn keeps_delivery(&self) -> bool {
        true
    }
    fn load_delivery<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, DeliveryState> {
        Box::pin(self.load_delivery_state(sid))
    }
    fn save_delivery<'a>(&'a self, sid: &'a str, delta: DeliveryDelta) -> StoreFuture<'a, ()> {
        Box::pin(self.save_delivery_state(sid, delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_needs_neither_redis_nor_a_runtime() {
        let store = RedisStore::new("redis://127.0.0.1:1/", None, None).unwrap();
        assert_eq!(store.key("abc"), "sess:abc");
        assert_eq!(store.ttl_secs, 86400);
    }

    #[test]
    fn rejects_an_unparsable_url() {
        let err = RedisStore::new("not a url", None, None).err().unwrap();
        assert!(err.starts_with("redis: "), "{err}");
    }

    #[test]
    fn ttl_is_rounded_up_to_whole_seconds() {
        let s = |d| RedisStore::new("redis://127.0.0.1/", Some("p:".into()), Some(d)).unwrap();
        assert_eq!(s(Duration::from_millis(1500)).ttl_secs, 2);
        assert_eq!(s(Duration::ZERO).ttl_secs, 1);
        assert_eq!(s(Duration::from_secs(90)).ttl_secs, 90);
        assert_eq!(s(Duration::from_secs(90)).key("x"), "p:x");
    }
}
