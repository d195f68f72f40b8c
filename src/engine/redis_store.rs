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
//!
//! How Redis is reached (one server, TLS, a Cluster) is `redis_conn.rs`; the
//! saves that wait out a Redis outage are `save_queue.rs`.

use super::redis_conn::{slot_tag, Conn, Connector, RedisTarget};
use super::save_queue::SaveQueue;
pub use super::save_queue::DEFAULT_MAX_QUEUED_BYTES;
use super::store::{DeliveryDelta, DeliveryState, SessionStore, StoreFuture};
use crate::protocol::session::{cookie_max_age, Session};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where Redis runs when the options name no server.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// connect-redis's key prefix of sessions.
pub const DEFAULT_PREFIX: &str = "sess:";
/// connect-redis's key expiry for a session without a cookie `maxAge`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Where delivery state goes: `uhura:out:<sid>` and `uhura:seen:<sid>`.
pub(crate) const DEFAULT_AUX_PREFIX: &str = "uhura:";

/// An outbox entry: message id and argument JSON.
type IdAndArgs = (String, String);

/// A session store in Redis, shared by a fleet of servers: sessions as JSON
/// strings under `prefix + id` with a TTL, and each session's delivery state
/// beside it (docs/ARCHITECTURE.md, "A fleet behind one Redis").
pub struct RedisStore {
    /// One server or a cluster; connected on first use.
    conn: Connector,
    prefix: String,
    aux_prefix: String,
    ttl_secs: u64,
    /// The TTL of the latest session saved with a cookie `maxAge` (0: none
    /// yet), which delivery state takes too. The cookie options are the
    /// server's, so this is the same for all its sessions.
    cookie_ttl_secs: AtomicU64,
    /// Session saves and destroys waiting out a Redis outage.
    saves: SaveQueue,
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
        Self::open_via(Connector::new(&RedisTarget::Single(url.to_owned()), None)?, prefix, aux_prefix, ttl)
    }

    /// As `open`, reaching Redis through `conn` (TLS, a cluster:
    /// `redis_conn.rs`). In a cluster, a session's delivery-state keys carry
    /// the hash tag of its session key, so all its keys share one slot
    /// (pipelines and multi-key commands need that); the session key itself
    /// stays connect-redis's.
    pub fn open_via(
        conn: Connector,
        prefix: Option<String>,
        aux_prefix: Option<String>,
        ttl: Option<Duration>,
    ) -> Result<Self, String> {
        let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        let aux_prefix = aux_prefix.unwrap_or_else(|| DEFAULT_AUX_PREFIX.to_owned());
        if !prefix.is_empty() && aux_prefix.starts_with(&prefix) {
            return Err(format!(
                "redis: the auxiliary prefix {aux_prefix:?} is under the session prefix {prefix:?}; choose another auxPrefix"
            ));
        }
        if conn.is_cluster() && aux_prefix.contains('{') {
            // Its tag would decide the slot, not the session's.
            return Err(format!("redis: in a cluster, the auxiliary prefix {aux_prefix:?} must not contain '{{'"));
        }
        Ok(RedisStore {
            conn,
            prefix,
            aux_prefix,
            ttl_secs: whole_secs(ttl.unwrap_or(DEFAULT_TTL).as_millis()),
            cookie_ttl_secs: AtomicU64::new(0),
            saves: SaveQueue::new(DEFAULT_MAX_QUEUED_BYTES),
        })
    }

    /// Bounds the memory of the saves queued while Redis is unavailable
    /// (`save_queue.rs`); default 16 MiB.
    pub fn with_max_queued_bytes(mut self, max: usize) -> Self {
        self.saves = SaveQueue::new(max);
        self
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

    /// How Redis is reached, for connections of other kinds (the fleet
    /// bus's subscriber, src/engine/fleet_bus.rs).
    pub(crate) fn connector(&self) -> &Connector {
        &self.conn
    }

    /// Where delivery state (and the fleet's channel) goes.
    pub(crate) fn aux_prefix(&self) -> &str {
        &self.aux_prefix
    }

    /// Runs `cmd`, as `run` does.
    pub(crate) async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    async fn get_session(&self, sid: &str) -> Result<Option<Session>, String> {
        // A save of it still queued is the newest copy: read after it lands.
        self.saves.landed(sid).await.map_err(|e| format!("redis: {e}; the session's latest save is still queued"))?;
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
        pipe.cmd("SET").arg(self.key(sid)).arg(&json).arg("EX").arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(&out).arg(ttl).ignore();
        pipe.cmd("EXPIRE").arg(&seen).arg(ttl).ignore();
        self.saves.write(&self.conn, sid, pipe, json.len()).await
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
        // In a cluster, in the session key's slot (`open_via`).
        let sid = if self.conn.is_cluster() { slot_tag(&self.key(sid)) } else { sid.to_owned() };
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
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.conn.run(op).await
    }

    async fn destroy_session(&self, sid: &str) -> Result<(), String> {
        let (out, seen) = self.delivery_keys(sid);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.key(sid)).arg(out).arg(seen).ignore();
        // Queued as saves are, so it cannot land before a queued save.
        self.saves.write(&self.conn, sid, pipe, 0).await
    }
}

/// `SET .. EX` takes whole seconds and rejects 0; rounding up keeps a short
/// ttl from expiring a session before it was asked to.
fn whole_secs(ms: u128) -> u64 {
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
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
