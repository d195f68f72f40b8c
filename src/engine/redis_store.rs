//! A session store in Redis, so a client can resume its session on any
//! server process of a fleet.
//!
//! The format is connect-redis's (key = prefix + sid, value = the session as
//! JSON text, expiry set with `SET .. EX`), so a fleet still running the npm
//! package can share sessions with this one. As with connect-redis, a session
//! whose cookie has a `maxAge` expires that long after its last save; the
//! store's ttl applies to the others.
//!
//! Delivery state (our extension) lives under a separate prefix, so that
//! nothing but sessions is under the session prefix: connect-redis's `ids()`,
//! `length()` and `all()` scan `prefix*`.

use super::store::{DeliveryDelta, DeliveryState, SessionStore, StoreFuture};
use crate::protocol::session::{cookie_max_age, Session};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// Where Redis runs when the options name no server.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// connect-redis's key prefix of sessions.
pub const DEFAULT_PREFIX: &str = "sess:";
/// connect-redis's key expiry for a session without a cookie `maxAge`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Where delivery state goes: `uhura:out:<sid>` and `uhura:seen:<sid>`.
pub(crate) const DEFAULT_AUX_PREFIX: &str = "uhura:";

// A handshake waits on the store, so a dead Redis must cost a client a
// couple of seconds, not the OS's TCP timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// An outbox entry: message id and argument JSON.
type IdAndArgs = (String, String);

/// A session store in Redis, shared by a fleet of servers: sessions as JSON
/// strings under `prefix + id` with a TTL, and each session's delivery state
/// beside it (docs/ARCHITECTURE.md, "A fleet behind one Redis").
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    aux_prefix: String,
    ttl_secs: u64,
    /// The TTL of the latest session saved with a cookie `maxAge` (0: none
    /// yet), which delivery state takes too. The cookie options are the
    /// server's, so this is the same for all its sessions.
    cookie_ttl_secs: AtomicU64,
    // Empty until the first operation: creating a ConnectionManager connects
    // and spawns onto the current tokio runtime, and `new` may run on a
    // thread without one (the JS thread) while Redis is still down. Left
    // empty again when a first connection fails, so the next op retries.
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisStore {
    /// Never blocks and never needs Redis to be up: connects lazily on first
    /// use and reconnects after failures. Delivery state goes under
    /// `DEFAULT_AUX_PREFIX`.
    pub fn new(url: &str, prefix: Option<String>, ttl: Option<Duration>) -> Result<Self, String> {
        Self::open(url, prefix, None, ttl)
    }

    /// As `new`, with delivery state under `aux_prefix` (default `uhura:`).
    /// That must not start with the session prefix (unless this is empty,
    /// when every key is under it): whatever is there counts as a session
    /// to connect-redis.
    pub(crate) fn open(
        url: &str,
        prefix: Option<String>,
        aux_prefix: Option<String>,
        ttl: Option<Duration>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis: bad url: {e}"))?;
        let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let aux_prefix = aux_prefix.unwrap_or_else(|| DEFAULT_AUX_PREFIX.to_owned());
        if !prefix.is_empty() && aux_prefix.starts_with(&prefix) {
            return Err(format!(
                "redis: the auxiliary prefix {aux_prefix:?} is under the session prefix {prefix:?}; choose another auxPrefix"
            ));
        }
        Ok(RedisStore {
            client,
            prefix,
            aux_prefix,
            ttl_secs: whole_secs(ttl.unwrap_or(DEFAULT_TTL).as_millis()),
            cookie_ttl_secs: AtomicU64::new(0),
            conn: Mutex::new(None),
        })
    }

    pub(crate) fn key(&self, sid: &str) -> String {
        format!("{}{}", self.prefix, sid)
    }

    /// The session's TTL: its cookie's `maxAge` when it has one (`None`: zero
    /// or less, expired at once), else the store's ttl.
    fn ttl_of(&self, session: &Session) -> Option<u64> {
        match cookie_max_age(session) {
            Some(ms) if ms <= 0 => None,
            Some(ms) => {
                let secs = whole_secs(ms as u128);
                self.cookie_ttl_secs.store(secs, Ordering::Relaxed);
                Some(secs)
            }
            None => Some(self.ttl_secs),
        }
    }

    /// How long delivery state lives: as long as the sessions.
    pub(crate) fn aux_ttl(&self) -> u64 {
        match self.cookie_ttl_secs.load(Ordering::Relaxed) {
            0 => self.ttl_secs,
            secs => secs,
        }
    }

    /// The Redis client, for connections of other kinds (the fleet bus's
    /// subscriber, src/engine/fleet_bus.rs).
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Where delivery state (and the fleet's channel) goes.
    pub(crate) fn aux_prefix(&self) -> &str {
        &self.aux_prefix
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
    pub(crate) async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
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
        // Read as JSON.parse would (lone surrogates, deep nesting), as the
        // peer reads `_set`: a session stored elsewhere must load here.
        let text = String::from_utf8_lossy(&bytes);
        match crate::protocol::json::parse_value(&text, crate::protocol::framing::MAX_DEPTH_LIMIT) {
            Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        }
    }

    async fn set_session(&self, sid: &str, session: &Session) -> Result<(), String> {
        // A cookie already expired: as connect-redis, destroy instead of set.
        let Some(ttl) = self.ttl_of(session) else { return self.destroy_session(sid).await };
        let json = serde_json::to_string(session).map_err(|e| format!("redis: {e}"))?;
        let (out, seen) = self.delivery_keys(sid);
        // The session's delivery state lives as long as the session.
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(self.key(sid)).arg(json).arg("EX").arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(&out).arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(&seen).arg(ttl).ignore();
        self.run_pipe(pipe).await
    }

    /// Runs `pipe` (retried as `run` retries).
    pub(crate) async fn run_pipe(&self, pipe: redis::Pipeline) -> Result<(), String> {
        self.run(|mut conn| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
        .map_err(fail)
    }

    /// Delivery state lives in two hashes under the auxiliary prefix: `out:`
    /// maps message id to `[order, args]` (unacknowledged outbound events)
    /// and `seen:` maps a client's sender prefix to the highest sequence
    /// number delivered. Hashes make each add and ack O(1).
    pub(crate) fn delivery_keys(&self, sid: &str) -> (String, String) {
        (format!("{}out:{}", self.aux_prefix, sid), format!("{}seen:{}", self.aux_prefix, sid))
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
        let ttl = self.aux_ttl();
        pipe.cmd("EXPIRE").arg(&out).arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(&seen).arg(ttl).ignore();
        self.run_pipe(pipe).await
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
        let (out, seen) = self.delivery_keys(sid);
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(sid)).arg(out).arg(seen);
        self.query(&cmd).await.map(drop).map_err(fail)
    }
}

/// `SET .. EX` takes whole seconds and rejects 0; rounding up keeps a short
/// ttl from expiring a session before it was asked to.
fn whole_secs(ms: u128) -> u64 {
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
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

    #[test]
    fn delivery_state_is_outside_the_session_prefix() {
        let store = RedisStore::new("redis://127.0.0.1/", None, None).unwrap();
        assert_eq!(store.delivery_keys("abc"), ("uhura:out:abc".to_owned(), "uhura:seen:abc".to_owned()));
        let store = RedisStore::open("redis://127.0.0.1/", None, Some("{app}aux:".into()), None).unwrap();
        assert_eq!(store.delivery_keys("abc").1, "{app}aux:seen:abc");
        let err = RedisStore::open("redis://127.0.0.1/", None, Some("sess:aux:".into()), None).err().unwrap();
        assert!(err.contains("auxPrefix"), "{err}");
        let err = RedisStore::new("redis://127.0.0.1/", Some("uhura:".into()), None).err().unwrap();
        assert!(err.contains("auxPrefix"), "the default one under the session prefix is refused too: {err}");
        assert!(RedisStore::open("redis://127.0.0.1/", Some("uhura:".into()), Some("aux:".into()), None).is_ok());
        let store = RedisStore::new("redis://127.0.0.1/", Some(String::new()), None).unwrap();
        assert_eq!(store.delivery_keys("abc").0, "uhura:out:abc");
    }

    #[test]
    fn a_cookie_max_age_sets_the_ttl() {
        let store = RedisStore::new("redis://127.0.0.1/", None, Some(Duration::from_secs(600))).unwrap();
        let with = |max_age: serde_json::Value| {
            let mut s = Session::new();
            s.insert("cookie".into(), serde_json::json!({"originalMaxAge": max_age, "expires": null}));
            s
        };
        assert_eq!(store.aux_ttl(), 600);
        assert_eq!(store.ttl_of(&with(serde_json::Value::Null)), Some(600));
        assert_eq!(store.ttl_of(&Session::new()), Some(600));
        assert_eq!(store.ttl_of(&with(3000.into())), Some(3));
        assert_eq!(store.ttl_of(&with(300.into())), Some(1));
        assert_eq!(store.ttl_of(&with(2500.5.into())), Some(3));
        assert_eq!(store.aux_ttl(), 3);
        assert_eq!(store.ttl_of(&with(0.into())), None);
        assert_eq!(store.ttl_of(&with((-5).into())), None);
    }
}
