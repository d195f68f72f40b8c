//! RedisStore over `rediss://` (rustls) against a real redis-server with
//! TLS only (`--port 0 --tls-port P`), using the TLS fixtures of the Node
//! tests: a server checked against `ca`, a client certificate for
//! `--tls-auth-clients yes`, and a wrong CA that fails every operation with
//! a certificate error, in bounded time.

mod redis_server;

use redis_server::{free_port, session, RedisServer, OP_BOUND};
use serde_json::json;
use std::time::Instant;
use uhura::engine::redis_conn::{Connector, RedisTarget, RedisTls};
use uhura::engine::redis_store::RedisStore;
use uhura::engine::store::SessionStore;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/__test__/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A redis-server speaking TLS only, with the fixture server certificate;
/// `auth_clients`: it requires a client certificate signed by the fixture CA.
fn tls_server(auth_clients: bool) -> Option<RedisServer> {
    let port = free_port();
    let fixtures = format!("{}/__test__/fixtures", env!("CARGO_MANIFEST_DIR"));
    let (tls_port, cert, key, ca) = (
        port.to_string(),
        format!("{fixtures}/server-cert.pem"),
        format!("{fixtures}/server-key.pem"),
        format!("{fixtures}/ca-cert.pem"),
    );
    let auth = if auth_clients { "yes" } else { "no" };
    #[rustfmt::skip]
    let args = [
        "--port", "0", "--tls-port", &tls_port, "--tls-cert-file", &cert, "--tls-key-file", &key,
        "--tls-ca-cert-file", &ca, "--tls-auth-clients", auth, "--save", "", "--appendonly", "no",
    ];
    let mut server = RedisServer::spawn(port, &args)?;
    server.wait_listening();
    Some(server)
}

fn store(port: u16, tls: RedisTls) -> Result<RedisStore, String> {
    let conn = Connector::new(&RedisTarget::Single(format!("rediss://127.0.0.1:{port}/")), Some(&tls))?;
    RedisStore::open_via(conn, None, None, None)
}

async fn round_trip(store: &RedisStore, sid: &str) {
    let sess = session(json!({"k": sid, "n": [1, 2, 3]}));
    store.set(sid, sess.clone()).await.unwrap();
    assert_eq!(store.get(sid).await.unwrap(), Some(sess));
    store.destroy(sid).await.unwrap();
    assert_eq!(store.get(sid).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_tls_checked_against_ca() {
    let Some(server) = tls_server(false) else { return };
    let tls = RedisTls { ca: vec![fixture("ca-cert.pem")], ..RedisTls::default() };
    round_trip(&store(server.port, tls).unwrap(), "s1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_with_a_client_certificate() {
    let Some(server) = tls_server(true) else { return };
    let tls = RedisTls {
        ca: vec![fixture("ca-cert.pem")],
        cert: Some(fixture("client-cert.pem")),
        key: Some(fixture("client-key.pem")),
    };
    round_trip(&store(server.port, tls).unwrap(), "s2").await;

    // Without a client certificate, Redis refuses the handshake.
    let tls = RedisTls { ca: vec![fixture("ca-cert.pem")], ..RedisTls::default() };
    let anonymous = store(server.port, tls).unwrap();
    let err = anonymous.get("s2").await.expect_err("no client certificate, no session");
    assert!(err.starts_with("redis: "), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ca_fails_with_a_certificate_error() {
    let Some(server) = tls_server(false) else { return };
    let tls = RedisTls { ca: vec![fixture("untrusted-cert.pem")], ..RedisTls::default() };
    let store = store(server.port, tls).unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.get("s3").await.expect_err("a server the CA did not sign");
        assert!(started.elapsed() < OP_BOUND, "took {:?}", started.elapsed());
        assert!(err.contains("certificate") || err.contains("UnknownIssuer"), "says why: {err}");
    }
    // No CA at all: the Mozilla roots do not know the test CA either.
    let store = self::store(server.port, RedisTls::default()).unwrap();
    let err = store.get("s3").await.expect_err("a server no default root signed");
    assert!(err.contains("certificate") || err.contains("UnknownIssuer"), "says why: {err}");
}

#[test]
fn bad_tls_options_are_refused_up_front() {
    let url = RedisTarget::Single("rediss://127.0.0.1:1/".into());
    let lone_key = RedisTls { key: Some(fixture("client-key.pem")), ..RedisTls::default() };
    let err = Connector::new(&url, Some(&lone_key)).err().unwrap();
    assert!(err.contains("key") && err.contains("cert"), "{err}");
    let mismatched = RedisTls {
        cert: Some(fixture("client-cert.pem")),
        key: Some(fixture("server-key.pem")),
        ..RedisTls::default()
    };
    let err = Connector::new(&url, Some(&mismatched)).err().unwrap();
    assert!(err.contains("does not match"), "{err}");
    let plain = RedisTarget::Single("redis://127.0.0.1:1/".into());
    assert!(Connector::new(&plain, Some(&RedisTls::default())).err().unwrap().contains("rediss://"));
}
