//! RedisStore against a real redis-server: sessions and delivery state
//! round-trip, expire, are shared between servers and isolated by prefix.
//!
//! A missing redis-server fails these tests (CI must not go green without
//! them having run) unless UHURA_SKIP_REDIS=1 is set.

mod redis_server;

use redis_server::{raw, raw_cmd, session, store, RedisServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::{DeliveryDelta, SessionStore};

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
