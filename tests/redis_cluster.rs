//! RedisStore on a real three-master Redis Cluster: sessions spread over
//! the masters, each session's keys in one slot (its pipelines would fail
//! with CROSSSLOT otherwise), and a master lost and restarted: the other
//! slots keep serving, the lost ones fail in bounded time, and when the
//! node returns its sessions are back, with the saves queued meanwhile.
//!
//! Needs redis-server and redis-cli (Debian: redis-server, redis-tools).

mod redis_server;

use redis_server::{session, RedisCluster, OP_BOUND};
use serde_json::json;
use std::time::{Duration, Instant};
use uhura::engine::redis_conn::{Connector, RedisTarget};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::{DeliveryDelta, SessionStore};

fn store(cluster: &RedisCluster, first: usize) -> RedisStore {
    // Each store knows one node only: the rest is discovered.
    let conn = Connector::new(&RedisTarget::Cluster(vec![cluster.urls()[first].clone()]), None).unwrap();
    RedisStore::open_via(conn, None, None, None).unwrap()
}

/// Which node (index) holds `key`.
async fn holder(cluster: &RedisCluster, key: &str) -> usize {
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut conn = redis_server::raw(node).await;
        let n: i64 = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await.unwrap_or(0);
        if n == 1 {
            return i;
        }
    }
    panic!("no node holds {key}")
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_and_delivery_state_across_the_masters() {
    let Some(cluster) = RedisCluster::start() else { return };
    let (a, b) = (store(&cluster, 0), store(&cluster, 2));
    let mut holders = std::collections::BTreeSet::new();
    for i in 0..24 {
        let sid = format!("sid{i:02}");
        a.set(&sid, session(json!({"i": i}))).await.unwrap();
        let delta = DeliveryDelta {
            add: vec![(format!("m-{i}"), "[\"ev\",1]".into())],
            seen: vec![("p".into(), i)],
            ..DeliveryDelta::default()
        };
        a.save_delivery(&sid, delta).await.unwrap();
        // The other server (another store, another entry node) reads it all.
        assert_eq!(b.get(&sid).await.unwrap(), Some(session(json!({"i": i}))));
        let state = b.load_delivery(&sid).await.unwrap();
        assert_eq!(state.outbox, vec![(format!("m-{i}"), "[\"ev\",1]".to_owned())]);
        assert_eq!(state.seen, vec![("p".to_owned(), i)]);
        let node = holder(&cluster, &format!("sess:{sid}")).await;
        assert_eq!(holder(&cluster, &format!("uhura:out:{{sess:{sid}}}")).await, node, "out: beside the session");
        holders.insert(node);
    }
    assert_eq!(holders.len(), 3, "24 sessions spread over the three masters");
    for i in 0..24 {
        b.destroy(&format!("sid{i:02}")).await.unwrap();
        assert_eq!(a.get(&format!("sid{i:02}")).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_lost_and_back() {
    let Some(mut cluster) = RedisCluster::start() else { return };
    let store = store(&cluster, 0);
    let mut on = [Vec::new(), Vec::new(), Vec::new()];
    for i in 0..30 {
        let sid = format!("s{i:02}");
        store.set(&sid, session(json!({"v": 1}))).await.unwrap();
        on[holder(&cluster, &format!("sess:{sid}")).await].push(sid);
    }
    assert!(on.iter().all(|s| !s.is_empty()), "sessions on every master: {on:?}");

    // Node 1 dies (not the store's entry node 0).
    cluster.nodes[1].kill();
    // A store first used now (another server of the fleet, idle so far)
    // connects with a master down, and serves the other slots.
    let late =
        RedisStore::open_via(Connector::new(&RedisTarget::Cluster(cluster.urls()), None).unwrap(), None, None, None)
            .unwrap();
    for (node, sids) in on.iter().enumerate() {
        for sid in sids {
            let started = Instant::now();
            let read = late.get(sid).await;
            eprintln!("late get {sid} on node {node}: {read:?} after {:?}", started.elapsed());
            if node != 1 {
                assert_eq!(read.unwrap(), Some(session(json!({"v": 1}))), "{sid} still served");
            }
        }
    }
    for (node, sids) in on.iter().enumerate() {
        for sid in sids {
            let started = Instant::now();
            let read = store.get(sid).await;
            let wrote = store.set(sid, session(json!({"v": 2}))).await;
            assert!(started.elapsed() < OP_BOUND * 2, "{sid}: took {:?}", started.elapsed());
            if node == 1 {
                assert!(read.is_err(), "{sid} on the lost master: {read:?}");
                let err = wrote.expect_err("a save to the lost master");
                assert!(err.contains("queued"), "{err}");
            } else {
                assert_eq!(read.unwrap(), Some(session(json!({"v": 1}))), "{sid} still served");
                wrote.unwrap();
            }
        }
    }

    // Back with its nodes.conf and data: its sessions return, with the
    // saves queued while it was down.
    cluster.restart(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    for sids in &on {
        for sid in sids {
            loop {
                match store.get(sid).await {
                    Ok(found) => {
                        assert_eq!(found, Some(session(json!({"v": 2}))), "{sid}");
                        break;
                    }
                    Err(e) => assert!(Instant::now() < deadline, "{sid} never came back: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[test]
fn in_a_cluster_the_aux_prefix_cannot_carry_a_hash_tag() {
    let conn = Connector::new(&RedisTarget::Cluster(vec!["redis://127.0.0.1:1".into()]), None).unwrap();
    let err = RedisStore::open_via(conn, None, Some("{app}aux:".into()), None).err().unwrap();
    assert!(err.contains("cluster"), "{err}");
}
