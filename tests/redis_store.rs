//! RedisStore against a real redis-server, one private server per test on a
//! random loopback port.
//!
//! A missing redis-server fails these tests (CI must not go green without
//! them having run) unless UHURA_SKIP_REDIS=1 is set.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::{DeliveryDelta, SessionStore};
use uhura::protocol::session::Session;

/// The store's own bound on one operation, plus slack for a loaded machine.
const OP_BOUND: Duration = Duration::from_millis(3500);

/// A redis-server child, killed when dropped so a failing test leaves no
/// server behind.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// `None` only when redis-server is missing and UHURA_SKIP_REDIS=1.
    fn start() -> Option<RedisServer> {
        Self::start_on(free_port())
    }

    fn start_on(port: u16) -> Option<RedisServer> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("UHURA_SKIP_REDIS").as_deref() == Ok("1") {
                    eprintln!("redis-server not on PATH; skipped (UHURA_SKIP_REDIS=1)");
                    return None;
                }
                panic!(
                    "redis-server is not on PATH: install it (Debian: apt-get install redis-server) \
                     or set UHURA_SKIP_REDIS=1 to skip the Redis store tests"
                );
            }
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        let mut server = RedisServer { child: Some(child), port };
        server.wait_ready();
        Some(server)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited early: {status}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server on port {} never answered PING", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, like a crash: no goodbye on the store's connections.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A plain connection, for checking what the store wrote.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn raw_cmd<T: redis::FromRedisValue>(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.unwrap()
}

fn session(v: Value) -> Session {
    match v {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(&server.url(), None, None).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trips_nested_values_and_unicode() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let sess = session(json!({
        "sessionID": "abcDEF0123456789abcdefXY",
        "cookie": {"originalMaxAge": null, "expires": null, "httpOnly": true, "path": "/"},
        "user": {"name": "Ñoño 日本語 🚀", "tags": ["a", {"deep": [1, 2.5, -3, true, null]}]},
        "zeta": 1,
        "alpha": "\u{0}\n\"quoted\"",
    }));
    store.set("abcDEF0123456789abcdefXY", sess.clone()).await.unwrap();
    let got = store.get("abcDEF0123456789abcdefXY").await.unwrap().unwrap();
    assert_eq!(got, sess);
    // Field order is the session's own, as JSON.stringify would keep it.
    let keys: Vec<&String> = got.keys().collect();
    assert_eq!(keys, ["sessionID", "cookie", "user", "zeta", "alpha"]);

    // The stored form is connect-redis's: the JSON text under "sess:" + sid.
    let mut conn = raw(&server).await;
    let text: String = raw_cmd(&mut conn, &["GET", "sess:abcDEF0123456789abcdefXY"]).await;
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), Value::Object(sess));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_session_is_none() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    assert_eq!(store.get("nope").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_removes_the_session() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    store.set("s1", session(json!({"a": 1}))).await.unwrap();
    store.set("s2", session(json!({"b": 2}))).await.unwrap();
    store.destroy("s1").await.unwrap();
    assert_eq!(store.get("s1").await.unwrap(), None);
    assert_eq!(store.get("s2").await.unwrap(), Some(session(json!({"b": 2}))));
    // Destroying what is not there is not an error.
    store.destroy("s1").await.unwrap();
    let mut conn = raw(&server).await;
    let exists: i64 = raw_cmd(&mut conn, &["EXISTS", "sess:s1"]).await;
    assert_eq!(exists, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_applies_the_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = raw(&server).await;

    let default_ttl = store(&server);
    default_ttl.set("d", session(json!({"x": 1}))).await.unwrap();
    let ttl: i64 = raw_cmd(&mut conn, &["TTL", "sess:d"]).await;
    assert!((86390..=86400).contains(&ttl), "default ttl {ttl}");

    let short = RedisStore::new(&server.url(), None, Some(Duration::from_secs(90))).unwrap();
    short.set("s", session(json!({"x": 1}))).await.unwrap();
    let ttl: i64 = raw_cmd(&mut conn, &["TTL", "sess:s"]).await;
    assert!((80..=90).contains(&ttl), "ttl {ttl}");

    // Each set renews the expiry, as connect-redis does on every save.
    raw_cmd::<i64>(&mut conn, &["EXPIRE", "sess:s", "5"]).await;
    short.set("s", session(json!({"x": 2}))).await.unwrap();
    let ttl: i64 = raw_cmd(&mut conn, &["TTL", "sess:s"]).await;
    assert!((80..=90).contains(&ttl), "renewed ttl {ttl}");

    // And it does expire.
    let tiny = RedisStore::new(&server.url(), None, Some(Duration::from_secs(1))).unwrap();
    tiny.set("t", session(json!({"x": 1}))).await.unwrap();
    assert!(tiny.get("t").await.unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    while tiny.get("t").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "a 1 s session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_max_age_is_the_ttl_and_delivery_state_stays_out_of_the_prefix() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut conn = raw(&server).await;
    let store = RedisStore::new(&server.url(), None, Some(Duration::from_secs(600))).unwrap();
    let with_cookie = session(json!({"cookie": {"originalMaxAge": 3000, "expires": null}, "x": 1}));
    store.set("c", with_cookie).await.unwrap();
    let ttl: i64 = raw_cmd(&mut conn, &["TTL", "sess:c"]).await;
    assert_eq!(ttl, 3, "the cookie's maxAge, not the store's ttl");

    let delta = DeliveryDelta { add: vec![("m-1".into(), "[1]".into())], remove: vec![], seen: vec![("p-".into(), 4)] };
    store.save_delivery("c", delta).await.unwrap();
    let mut keys: Vec<String> = raw_cmd(&mut conn, &["KEYS", "*"]).await;
    keys.sort();
    assert_eq!(keys, ["sess:c", "uhura:out:c", "uhura:seen:c"]);
    let under: Vec<String> = raw_cmd(&mut conn, &["KEYS", "sess:*"]).await;
    assert_eq!(under, ["sess:c"], "only sessions under the session prefix");
    for key in ["uhura:out:c", "uhura:seen:c"] {
        let ttl: i64 = raw_cmd(&mut conn, &["TTL", key]).await;
        assert_eq!(ttl, 3, "{key} lives as long as its session");
    }
    let state = store.load_delivery("c").await.unwrap();
    assert_eq!(state.outbox, [("m-1".to_owned(), "[1]".to_owned())]);
    assert_eq!(state.seen, [("p-".to_owned(), 4)]);

    store.destroy("c").await.unwrap();
    let keys: Vec<String> = raw_cmd(&mut conn, &["KEYS", "*"]).await;
    assert!(keys.is_empty(), "destroy takes the delivery state too: {keys:?}");

    // An expired cookie (maxAge 0): destroyed instead of set, as connect-redis does.
    store.set("z", session(json!({"x": 1}))).await.unwrap();
    store.set("z", session(json!({"cookie": {"originalMaxAge": 0}}))).await.unwrap();
    assert_eq!(store.get("z").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_sessions() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = store(&server);
    let b = store(&server);
    a.set("shared", session(json!({"sessionID": "shared", "n": 1}))).await.unwrap();
    assert_eq!(b.get("shared").await.unwrap(), Some(session(json!({"sessionID": "shared", "n": 1}))));
    b.set("shared", session(json!({"sessionID": "shared", "n": 2}))).await.unwrap();
    assert_eq!(a.get("shared").await.unwrap(), Some(session(json!({"sessionID": "shared", "n": 2}))));
    a.destroy("shared").await.unwrap();
    assert_eq!(b.get("shared").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn prefixes_isolate_stores() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let default = store(&server);
    let app1 = RedisStore::new(&server.url(), Some("app1:".into()), None).unwrap();
    let app2 = RedisStore::new(&server.url(), Some("app2:".into()), None).unwrap();
    app1.set("sid", session(json!({"who": 1}))).await.unwrap();
    app2.set("sid", session(json!({"who": 2}))).await.unwrap();
    assert_eq!(app1.get("sid").await.unwrap(), Some(session(json!({"who": 1}))));
    assert_eq!(app2.get("sid").await.unwrap(), Some(session(json!({"who": 2}))));
    assert_eq!(default.get("sid").await.unwrap(), None);
    app1.destroy("sid").await.unwrap();
    assert_eq!(app2.get("sid").await.unwrap(), Some(session(json!({"who": 2}))));

    let mut conn = raw(&server).await;
    let mut keys: Vec<String> = raw_cmd(&mut conn, &["KEYS", "*"]).await;
    keys.sort();
    assert_eq!(keys, ["app2:sid"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn values_that_are_not_sessions_read_as_missing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = store(&server);
    let mut conn = raw(&server).await;
    for (sid, text) in [("arr", "[1,2]"), ("num", "42"), ("str", "\"x\""), ("null", "null"), ("junk", "{not json")] {
        raw_cmd::<String>(&mut conn, &["SET", &format!("sess:{sid}"), text]).await;
        assert_eq!(store.get(sid).await.unwrap(), None, "{text}");
    }
    let mut cmd = redis::cmd("SET");
    cmd.arg("sess:bin").arg(&[0xff_u8, 0xfe, 0x00][..]);
    cmd.query_async::<String>(&mut conn).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap(), None);

    // A key of another Redis type: still missing, and a set replaces it.
    raw_cmd::<i64>(&mut conn, &["RPUSH", "sess:list", "a"]).await;
    assert_eq!(store.get("list").await.unwrap(), None);
    store.set("list", session(json!({"ok": true}))).await.unwrap();
    assert_eq!(store.get("list").await.unwrap(), Some(session(json!({"ok": true}))));
}

/// Runs `op` and checks it failed with a store error within the bound.
async fn fails_fast<T: std::fmt::Debug>(what: &str, op: impl std::future::Future<Output = Result<T, String>>) {
    let started = Instant::now();
    let r = op.await;
    let took = started.elapsed();
    eprintln!("{what}: {r:?} after {took:?}");
    match &r {
        Err(e) => assert!(e.starts_with("redis: "), "{what}: error {e:?}"),
        Ok(v) => panic!("{what}: succeeded with Redis down: {v:?}"),
    }
    assert!(took < OP_BOUND, "{what} took {took:?}");
}

/// Retries `set` until Redis is reachable again, bounded.
async fn set_until_ok(store: &RedisStore, sid: &str, sess: Session) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.set(sid, sess.clone()).await {
            Ok(()) => return,
            Err(e) => assert!(Instant::now() < deadline, "store never recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_redis_dying_and_coming_back() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let port = server.port;
    let store = std::sync::Arc::new(store(&server));
    store.set("s", session(json!({"v": 1}))).await.unwrap();
    assert!(store.get("s").await.unwrap().is_some());

    server.kill();
    for round in 0..3 {
        fails_fast(&format!("get #{round}"), store.get("s")).await;
        fails_fast(&format!("set #{round}"), store.set("s", session(json!({"v": 2})))).await;
        fails_fast(&format!("destroy #{round}"), store.destroy("s")).await;
    }
    // Many at once while down: each still bounded, none panics.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move { store.get(&format!("c{i}")).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.expect("a store op panicked").is_err());
    }
    assert!(started.elapsed() < OP_BOUND * 3, "concurrent ops took {:?}", started.elapsed());

    let _server = RedisServer::start_on(port).unwrap();
    // The restarted Redis is empty (no persistence): a fresh save must land.
    set_until_ok(&store, "s", session(json!({"v": 3}))).await;
    assert_eq!(store.get("s").await.unwrap(), Some(session(json!({"v": 3}))));
    store.destroy("s").await.unwrap();
    assert_eq!(store.get("s").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn recovers_from_a_restart_while_idle() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let port = server.port;
    let store = store(&server);
    store.set("s", session(json!({"v": 1}))).await.unwrap();
    server.kill();
    let _server = RedisServer::start_on(port).unwrap();
    // The store's connection died unnoticed; the first op after the restart
    // must not surface that.
    store.set("s", session(json!({"v": 2}))).await.unwrap();
    assert_eq!(store.get("s").await.unwrap(), Some(session(json!({"v": 2}))));
}

#[tokio::test(flavor = "multi_thread")]
async fn connects_lazily_when_redis_comes_up_later() {
    let port = free_port();
    // Made before any Redis exists, and with no error for it.
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/"), None, None).unwrap();
    fails_fast("get before redis", store.get("s")).await;
    fails_fast("set before redis", store.set("s", session(json!({"v": 1})))).await;
    let Some(_server) = RedisServer::start_on(port) else {
        return;
    };
    set_until_ok(&store, "s", session(json!({"v": 1}))).await;
    assert_eq!(store.get("s").await.unwrap(), Some(session(json!({"v": 1}))));
}

#[test]
fn new_rejects_only_unparsable_urls() {
    assert!(RedisStore::new("definitely not a url", None, None).is_err());
    assert!(RedisStore::new("http://127.0.0.1/", None, None).is_err());
    // No runtime here and nothing listening: creating it must still work.
    assert!(RedisStore::new("redis://127.0.0.1:1/", None, None).is_ok());
    assert!(RedisStore::new("redis://user:pw@redis.invalid:6380/3", Some("x:".into()), None).is_ok());
}

/// The store behind the trait object the server holds.
#[tokio::test(flavor = "multi_thread")]
async fn works_as_a_trait_object() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store: std::sync::Arc<dyn SessionStore> = std::sync::Arc::new(store(&server));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let sid = format!("t{i}");
                store.set(&sid, session(json!({"i": i}))).await.unwrap();
                store.get(&sid).await.unwrap()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), Some(session(json!({"i": i}))));
    }
}

/// A peer that accepts and never answers (a hung Redis, or a wrong port):
/// ops still end within the bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_peer_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/"), None, None).unwrap();
    fails_fast("get from a silent peer", store.get("s")).await;
    fails_fast("set to a silent peer", store.set("s", session(json!({"v": 1})))).await;
    hold.abort();
}

/// A loopback TCP proxy that can stop passing bytes, like a hung Redis or a
/// network that silently drops traffic: connections stay open, nothing
/// answers.
struct FreezableProxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    async fn start(upstream: u16) -> FreezableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                pipes.spawn(Self::pipe(dr, uw, watch.clone()));
                pipes.spawn(Self::pipe(ur, dw, watch.clone()));
            }
        });
        FreezableProxy { port, frozen, task }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Held after the read, so bytes already in flight when the
            // freeze starts are held too.
            if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Redis stops answering after the store connected, then answers again.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_times_out_then_recovers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = FreezableProxy::start(server.port).await;
    let store = RedisStore::new(&proxy.url(), None, None).unwrap();
    store.set("s", session(json!({"v": 1}))).await.unwrap();
    proxy.freeze(true);
    fails_fast("get from a hung redis", store.get("s")).await;
    fails_fast("set to a hung redis", store.set("s", session(json!({"v": 2})))).await;
    proxy.freeze(false);
    set_until_ok(&store, "s", session(json!({"v": 3}))).await;
    assert_eq!(store.get("s").await.unwrap(), Some(session(json!({"v": 3}))));
}
