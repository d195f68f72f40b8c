//! RedisStore against a real redis-server that dies, restarts, comes up
//! late or hangs: every operation ends within its bound, and the store
//! recovers.
//!
//! A missing redis-server fails these tests (CI must not go green without
//! them having run) unless UHURA_SKIP_REDIS=1 is set.

mod redis_server;

use redis_server::{free_port, session, store, RedisServer, OP_BOUND};
use serde_json::json;
use std::time::{Duration, Instant};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::SessionStore;
use uhura::protocol::session::Session;

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
