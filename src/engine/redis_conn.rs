//! How the Redis store reaches Redis: one server (`redis://` or, over
//! rustls, `rediss://`) or a Redis Cluster, with the TLS options of
//! `redisStore({ tls })`. Connected lazily on first use, shared by every
//! operation, reconnected after failures, and every operation bounded in
//! time, so a dead Redis costs a handshake a couple of seconds, not the OS's
//! TCP timeouts.

use super::tls::{TlsConnector, TlsOptions};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ClientTlsConfig, Cmd, Pipeline, RedisFuture, RedisResult, TlsCertificates, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

// A handshake waits on the store, so a dead Redis must cost a client a
// couple of seconds, not the OS's TCP timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The bound on one store operation, connecting and one retry included.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis runs.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server: `redis://host:port/db` or `rediss://…` (TLS).
    Single(String),
    /// A Redis Cluster, reached through any of these nodes (the rest is
    /// discovered).
    Cluster(Vec<String>),
}

/// The TLS options of a `rediss://` connection, PEM text as Node takes it.
/// Without `ca`, the server is checked against the Mozilla roots
/// (webpki-roots), as Node's TLS clients do.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// Certificates trusted to sign the server's, instead of the defaults.
    pub ca: Vec<Vec<u8>>,
    /// The client certificate chain (mutual TLS), with `key`.
    pub cert: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub key: Option<Vec<u8>>,
}

impl RedisTls {
    /// Checked here by building our own TLS client from them (the same
    /// PEM reader and rustls as a uhura client's `tls` options), so a bad
    /// option is an error when the store is made, in the same words, rather
    /// than on every connection.
    fn certificates(&self) -> Result<TlsCertificates, String> {
        let ours = TlsOptions {
            key: self.key.clone(),
            cert: self.cert.clone(),
            ca: self.ca.clone(),
            reject_unauthorized: true,
            ..TlsOptions::default()
        };
        TlsConnector::new(&ours).map_err(|e| format!("redis: bad tls option: {e}"))?;
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
            // A lone `key` or `cert` was refused above.
            _ => None,
        };
        // The redis crate reads one PEM bundle; several concatenate.
        let root_cert = (!self.ca.is_empty()).then(|| self.ca.join(&b'\n'));
        Ok(TlsCertificates { client_tls, root_cert })
    }
}

/// A connection to one server or to the cluster. Both reconnect on their
/// own; clones share the connection.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(ConnectionManager),
    /// Redis Cluster: each command goes to the node serving its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// What a connection is made from (one per store: its size is no concern).
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// Makes the store's connection on first use and hands out clones of it.
/// Cheap to clone: the save queue's flusher holds one.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// For pub/sub connections (`subscriber`): the one server, or a plain
    /// client per cluster url, with the same TLS options.
    plain: Vec<redis::Client>,
    // Empty until the first operation: connecting spawns onto the current
    // tokio runtime, and the store may be made on a thread without one (the
    // JS thread) while Redis is still down. Left empty again when a first
    // connection fails, so the next op retries.
    conn: Mutex<Option<Conn>>,
}

impl Connector {
    /// Parses the target (no connection yet). `tls` needs `rediss://` URLs.
    pub fn new(target: &RedisTarget, tls: Option<&RedisTls>) -> Result<Self, String> {
        let certs = tls.map(RedisTls::certificates).transpose()?;
        let urls = match target {
            RedisTarget::Single(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(urls) => urls.as_slice(),
        };
        if certs.is_some() {
            if let Some(url) = urls.iter().find(|u| !u.starts_with("rediss://")) {
                return Err(format!("redis: tls options need a rediss:// url, not {url:?}"));
            }
        }
        let plain = urls
            .iter()
            .map(|url| {
                match &certs {
                    Some(certs) => redis::Client::build_with_tls(url.as_str(), certs.clone()),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|e| format!("redis: bad url: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = match target {
            RedisTarget::Single(_) => Client::Single(plain[0].clone()),
            RedisTarget::Cluster(urls) => {
                if urls.is_empty() {
                    return Err("redis: cluster needs at least one node url".into());
                }
                // Few, short retries (a MOVED or a dead node): the op
                // timeout bounds the whole anyway.
                let mut builder = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .retries(2)
                    .min_retry_wait(50)
                    .max_retry_wait(500);
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Client::Cluster(builder.build().map_err(|e| format!("redis: bad cluster url: {e}"))?)
            }
        };
        Ok(Connector { inner: Arc::new(Inner { client, plain, conn: Mutex::new(None) }) })
    }

    /// Whether this is a Redis Cluster (keys of one session must share a slot).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    /// The shared connection, made on first use.
    pub(crate) async fn connection(&self) -> RedisResult<Conn> {
        // Held across the connect so concurrent first uses make one
        // connection, not one each.
        let mut slot = self.inner.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let connect = async {
            Ok::<_, redis::RedisError>(match &self.inner.client {
                Client::Single(client) => {
                    // Few, short retries: the manager's defaults (6 retries,
                    // doubling from 100 ms) would make every op wait out a
                    // backoff that our own op timeout cuts off anyway, and
                    // each failed op already triggers the next reconnect. No
                    // response timeout of its own (its default is 500 ms):
                    // the op timeout bounds the wait, and a slow answer
                    // inside it is still an answer.
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(None)
                        .set_number_of_retries(1)
                        .set_min_delay(Duration::from_millis(50))
                        .set_max_delay(Duration::from_millis(500));
                    Conn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
                }
                Client::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
            })
        };
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out("could not connect", CONNECT_TIMEOUT)),
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A new pub/sub connection, made as the store's are (TLS options
    /// included). In a cluster, to the first of its urls that answers:
    /// classic pub/sub is cluster-wide (a node forwards each PUBLISH to all
    /// the others), so any node hears every message. Not the cluster
    /// crate's own pub/sub: that needs RESP3, and it resubscribes on its
    /// own after a lost node, so the subscriber could not tell that it
    /// missed messages meanwhile; a plain connection's stream ends instead.
    pub(crate) async fn subscriber(&self) -> RedisResult<redis::aio::PubSub> {
        let mut last = None;
        for client in &self.inner.plain {
            match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(timed_out("could not connect", CONNECT_TIMEOUT)),
            }
        }
        Err(last.unwrap_or_else(|| timed_out("no url to connect to", Duration::ZERO)))
    }

    /// Runs `op` on the connection, once more on a fresh one if the first
    /// had broken, the whole bounded by `OP_TIMEOUT`.
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            match op(self.connection().await?).await {
                // A connection that died while idle (Redis restarted) is
                // only found out by the next command. The manager has
                // already started reconnecting, so one more try usually
                // succeeds; the store's commands are idempotent.
                Err(e) if is_broken_connection(&e) => op(self.connection().await?).await,
                r => r,
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => {
                self.forget_silent_connection().await;
                Err(timed_out("no answer", OP_TIMEOUT))
            }
        }
    }

    /// After an op got no answer at all: a single server's connection may
    /// have gone half-open (Redis's host vanished without a FIN or RST, a
    /// stalled proxy), which the connection manager never notices, since
    /// nothing errors; every later op would wait out its timeout on it. The
    /// next op connects afresh instead. A cluster connection is kept: there
    /// one master down makes ops on its slots time out while the others
    /// serve, and the cluster client finds its nodes again on its own.
    async fn forget_silent_connection(&self) {
        let mut slot = self.inner.conn.lock().await;
        if matches!(slot.as_ref(), Some(Conn::Single(_))) {
            *slot = None;
        }
    }

    /// Runs `pipe`, as `run` does.
    pub(crate) async fn run_pipe(&self, pipe: &Pipeline) -> RedisResult<()> {
        self.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }
}

/// Errors after which the same command on a fresh connection may succeed.
fn is_broken_connection(e: &redis::RedisError) -> bool {
    // A timeout is excluded: retrying it would only wait out the op
    // timeout a second time.
    e.is_connection_dropped() || (e.is_io_error() && !e.is_timeout())
}

/// Errors of a Redis that is unreachable or not taking writes yet (down,
/// restarting, loading its data, failing over), after which the same
/// command may succeed later; not those of a command Redis refused.
pub(crate) fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_cluster_error()
        || matches!(e.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" | "OOM"))
}

fn timed_out(what: &str, limit: Duration) -> redis::RedisError {
    let secs = limit.as_secs_f32();
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} within {secs} s")).into()
}

/// The hash tag that puts a key in the same cluster slot as `key`: Redis
/// hashes only the part between the first `{` and the next `}` when that
/// part is not empty, else the whole key. So `{<that part>}` in another key
/// (with no `{` before it) lands where `key` does.
pub(crate) fn slot_tag(key: &str) -> String {
    let hashed = key
        .find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    format!("{{{hashed}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_tag_hashes_as_the_key_does() {
        assert_eq!(slot_tag("sess:abc"), "{sess:abc}");
        assert_eq!(slot_tag("{app}sess:abc"), "{app}");
        assert_eq!(slot_tag("a{}b"), "{a{}b}", "an empty tag hashes the whole key");
        assert_eq!(slot_tag("x{y"), "{x{y}");
        // That the tagged keys land in the key's slot is checked against a
        // real cluster (tests/redis_cluster.rs): a pipeline across slots fails.
    }

    #[test]
    fn tls_needs_rediss_and_good_pem() {
        let tls = RedisTls { ca: vec![b"not pem".to_vec()], ..RedisTls::default() };
        let err = Connector::new(&RedisTarget::Single("rediss://127.0.0.1/".into()), Some(&tls)).err().unwrap();
        assert!(err.contains("ca"), "{err}");
        let ok = RedisTls::default();
        let err = Connector::new(&RedisTarget::Single("redis://127.0.0.1/".into()), Some(&ok)).err().unwrap();
        assert!(err.contains("rediss://"), "{err}");
        assert!(Connector::new(&RedisTarget::Single("rediss://127.0.0.1/".into()), Some(&ok)).is_ok());
        assert!(Connector::new(&RedisTarget::Cluster(vec![]), None).is_err());
        let cluster = Connector::new(&RedisTarget::Cluster(vec!["redis://127.0.0.1:7000".into()]), None).unwrap();
        assert!(cluster.is_cluster());
    }
}
