//! Session saves while Redis is down: queued in bounded memory (one per
//! session, the newest), landed by the store on its own once a restarted
//! redis-server answers on the same port, the oldest dropped past the
//! bound with an error naming them.

mod redis_server;

use redis_server::{raw, raw_cmd, session, RedisServer, OP_BOUND};
use serde_json::json;
use std::time::{Duration, Instant};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::SessionStore;
use uhura::protocol::session::Session;

/// A session of about `bytes` bytes of JSON.
fn sized(v: u32, bytes: usize) -> Session {
    session(json!({"v": v, "pad": "x".repeat(bytes)}))
}

async fn set_fails_queued(store: &RedisStore, sid: &str, sess: Session) -> String {
    let started = Instant::now();
    let err = store.set(sid, sess).await.expect_err("a set with Redis down");
    assert!(started.elapsed() < OP_BOUND, "took {:?}", started.elapsed());
    err
}

/// What the restarted Redis holds under `sess:<sid>`, once it holds it.
async fn wait_stored(server: &RedisServer, sid: &str, expect: &Session) {
    let mut conn = raw(server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text: Option<String> = raw_cmd(&mut conn, &["GET", &format!("sess:{sid}")]).await;
        if let Some(text) = text {
            assert_eq!(&serde_json::from_str::<Session>(&text).unwrap(), expect, "session {sid}");
            return;
        }
        assert!(Instant::now() < deadline, "the queued save of {sid} never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_saves_land_when_redis_is_back() {
    let Some(mut server) = RedisServer::start() else { return };
    let port = server.port;
    let store = RedisStore::new(&server.url(), None, None).unwrap();
    store.set("a", session(json!({"v": 1}))).await.unwrap();

    server.kill();
    let err = set_fails_queued(&store, "a", session(json!({"v": 2}))).await;
    assert!(err.starts_with("redis: ") && err.contains("queued until Redis is back"), "{err}");
    set_fails_queued(&store, "b", session(json!({"v": 1}))).await;
    // A later save of a queued session replaces it (and waits one try).
    let err = set_fails_queued(&store, "a", session(json!({"v": 3}))).await;
    assert!(err.contains("2 queued"), "one save per session: {err}");
    // A read of a session whose save is queued fails rather than read
    // something older.
    let err = store.get("a").await.expect_err("a get with Redis down");
    assert!(err.contains("still queued"), "{err}");

    // Redis back, empty (no persistence): the store lands both by itself.
    let server = RedisServer::start_on(port).unwrap();
    wait_stored(&server, "a", &session(json!({"v": 3}))).await;
    wait_stored(&server, "b", &session(json!({"v": 1}))).await;
    assert_eq!(store.get("a").await.unwrap(), Some(session(json!({"v": 3}))));
    // And the store is back to saving directly.
    store.set("a", session(json!({"v": 4}))).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(session(json!({"v": 4}))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_right_after_the_restart_finds_the_latest_save() {
    let Some(mut server) = RedisServer::start() else { return };
    let port = server.port;
    let store = RedisStore::new(&server.url(), None, None).unwrap();
    server.kill();
    set_fails_queued(&store, "r", session(json!({"v": 7}))).await;
    let _server = RedisServer::start_on(port).unwrap();
    // No waiting for the flusher: the read waits for the queued save itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        match store.get("r").await {
            Ok(found) => break found,
            Err(e) => assert!(Instant::now() < deadline, "never read: {e}"),
        }
    };
    assert_eq!(found, Some(session(json!({"v": 7}))));
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_bound_the_oldest_saves_are_dropped_and_named() {
    let Some(mut server) = RedisServer::start() else { return };
    let port = server.port;
    // Room for two ~300-byte saves, not three.
    let store = RedisStore::new(&server.url(), None, None).unwrap().with_max_queued_bytes(1000);
    server.kill();
    set_fails_queued(&store, "s1", sized(1, 300)).await;
    set_fails_queued(&store, "s2", sized(2, 300)).await;
    let err = set_fails_queued(&store, "s3", sized(3, 300)).await;
    assert!(err.contains("dropped") && err.contains("s1"), "names what was dropped: {err}");
    assert!(!err.contains("s2,") && err.contains("s3's save is queued"), "{err}");
    let err = set_fails_queued(&store, "big", sized(4, 2000)).await;
    assert!(err.contains("big not queued") && err.contains("maxQueuedBytes"), "{err}");

    let server = RedisServer::start_on(port).unwrap();
    wait_stored(&server, "s2", &sized(2, 300)).await;
    wait_stored(&server, "s3", &sized(3, 300)).await;
    let mut conn = raw(&server).await;
    for dropped in ["sess:s1", "sess:big"] {
        let n: i64 = raw_cmd(&mut conn, &["EXISTS", dropped]).await;
        assert_eq!(n, 0, "{dropped} was dropped");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_destroy_replaces_a_queued_save() {
    let Some(mut server) = RedisServer::start() else { return };
    let port = server.port;
    let store = RedisStore::new(&server.url(), None, None).unwrap();
    server.kill();
    set_fails_queued(&store, "d", session(json!({"v": 1}))).await;
    store.destroy("d").await.expect_err("a destroy with Redis down");
    set_fails_queued(&store, "e", session(json!({"v": 1}))).await;
    let server = RedisServer::start_on(port).unwrap();
    wait_stored(&server, "e", &session(json!({"v": 1}))).await;
    let mut conn = raw(&server).await;
    let n: i64 = raw_cmd(&mut conn, &["EXISTS", "sess:d"]).await;
    assert_eq!(n, 0, "the destroy, not the save before it, landed");
}
