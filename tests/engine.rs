//! The engine used as a plain Rust library (no Node): a server and clients
//! over real sockets on 127.0.0.1, events read from the delivery batches.

use serde_json::{json, Value};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uhura::engine::{ClientOptions, Connector, Endpoint, Engine, ListenOptions, ServerOptions};
use uhura::protocol::peer::Config;

/// An engine and the events it delivered so far.
struct Harness {
    engine: Engine,
    woke: mpsc::Receiver<()>,
    seen: Vec<Value>,
}

impl Harness {
    fn new() -> Self {
        let (tx, woke) = mpsc::channel();
        let engine = Engine::new(move || {
            let _ = tx.send(());
        })
        .unwrap();
        Harness { engine, woke, seen: Vec::new() }
    }

    /// Waits (bounded) until an event matches, and returns it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.seen.iter().find(|v| pred(v)) {
                return v.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}; saw {:?}", self.seen);
            let _ = self.woke.recv_timeout(left.min(Duration::from_millis(50)));
            while let Some(batch) = self.engine.take_events() {
                let entries: Vec<Value> = serde_json::from_str(&batch).expect("batches are JSON arrays");
                self.seen.extend(entries);
            }
        }
    }
}

const LISTENING: u64 = 6;
const CONNECTED: u64 = 3;
const MESSAGE: u64 = 0;
const ACKED: u64 = 1;
const DISCONNECTED: u64 = 4;

#[test]
fn a_rust_server_and_client_exchange_events_and_acks() {
    let mut h = Harness::new();
    let server = h.engine.create_server(ServerOptions::default());
    h.engine
        .listen(
            server,
            ListenOptions { endpoint: Endpoint::Tcp { host: Some("127.0.0.1".into()), port: 0 }, backlog: None },
        )
        .unwrap();
    let listening = h.wait_for("listening", |v| v[0] == server && v[1] == LISTENING);
    let port = listening[2]["port"].as_u64().unwrap() as u16;

    let client = h.engine.create_client(ClientOptions {
        connector: Connector::Native {
            endpoints: vec![Endpoint::Tcp { host: Some("127.0.0.1".into()), port }],
            tls: None,
        },
        peer: Config::default(),
    });
    // Sent before the handshake: queued, then flushed in order.
    h.engine.link(client).unwrap().write_lines(client, "a0[\"hello\",\"wörld ☃\",{\"n\":[1,2]}]\ns[\"k\",42]").unwrap();
    h.engine.start_client(client).unwrap();

    let conn_info = h.wait_for("server-side connection", |v| v[1] == CONNECTED && v[2]["server"] == server);
    let conn = conn_info[0].as_u64().unwrap() as u32;
    let sid = conn_info[2]["session"]["sessionID"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 24);
    assert_eq!(conn_info[2]["objectMode"], true);
    assert_eq!(conn_info[2]["extended"], true, "two of our peers negotiate the extensions");

    let msg = h.wait_for("hello on the server", |v| v[0] == conn && v[1] == MESSAGE);
    assert_eq!(msg[2], json!(["hello", "wörld ☃", {"n": [1, 2]}]));
    h.wait_for("the client's ack callback", |v| v[0] == client && v[1] == ACKED && v[2] == 0);

    h.engine.link(conn).unwrap().write_lines(conn, "e[\"back\",1]").unwrap();
    let back = h.wait_for("back on the client", |v| v[0] == client && v[1] == MESSAGE);
    assert_eq!(back[2], json!(["back", 1]));

    h.engine.client_disconnect(client).unwrap();
    h.wait_for("the server sees the disconnect", |v| v[0] == conn && v[1] == DISCONNECTED);
    h.engine.close_server(server);
    h.wait_for("server closed", |v| v[0] == server && v[1] == 7);
}

#[test]
fn a_unix_socket_server_replaces_a_stale_socket_file() {
    let dir = std::env::temp_dir().join(format!("uhura-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stale.sock");
    // A socket file nobody listens on, as a killed process leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let mut h = Harness::new();
    let server = h.engine.create_server(ServerOptions::default());
    h.engine.listen(server, ListenOptions { endpoint: Endpoint::Unix { path: path.clone() }, backlog: None }).unwrap();
    h.wait_for("listening on the stale path", |v| v[0] == server && v[1] == LISTENING);

    // A second server on the same live path is refused.
    let second = h.engine.create_server(ServerOptions::default());
    h.engine.listen(second, ListenOptions { endpoint: Endpoint::Unix { path: path.clone() }, backlog: None }).unwrap();
    let err = h.wait_for("EADDRINUSE", |v| v[0] == second && v[1] == 5);
    assert_eq!(err[2]["code"], "EADDRINUSE");

    h.engine.close_server(server);
    h.wait_for("server closed", |v| v[0] == server && v[1] == 7);
    assert!(!path.exists(), "close() removes the socket file");
    let _ = std::fs::remove_dir_all(&dir);
}
