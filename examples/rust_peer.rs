//! A Rust program as a uhura peer, without Node: the engine's server and
//! client talk over 127.0.0.1, or the client joins any uhura server (Node,
//! old or new) given as an argument.
//!
//!     cargo run --no-default-features --example rust_peer            # both ends here
//!     cargo run --no-default-features --example rust_peer -- 5555    # join a server on port 5555
//!
//! The engine delivers events as JSON batches (`[handle, kind, ...]`, kinds
//! in `engine::link::kind`); sends are lines: `e<json args>`,
//! `a<seq><json args>` (report the ack as `seq`), `s<json set args>`.

use serde_json::Value;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uhura::engine::link::kind;
use uhura::engine::{ClientOptions, Connector, Endpoint, Engine, ListenOptions, ServerOptions};
use uhura::protocol::peer::Config;

fn main() {
    let (tx, woke) = mpsc::channel();
    let engine = Engine::new(move || {
        let _ = tx.send(());
    })
    .expect("a tokio runtime");
    let mut events = Events { engine: &engine, woke, seen: Vec::new() };

    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().expect("a port number"),
        None => {
            let server = engine.create_server(ServerOptions::default());
            let endpoint = Endpoint::Tcp { host: Some("127.0.0.1".into()), port: 0 };
            engine.listen(server, ListenOptions { endpoint, backlog: None }).expect("listen");
            let listening = events.wait(|e| e[0] == server && e[1] == kind::LISTENING);
            let port = listening[2]["port"].as_u64().expect("a port") as u16;
            println!("[server] listening on 127.0.0.1:{port}");
            port
        }
    };

    let endpoint = Endpoint::Tcp { host: Some("127.0.0.1".into()), port };
    let client = engine.create_client(ClientOptions {
        connector: Connector::Native { endpoints: vec![endpoint], tls: None },
        peer: Config::default(),
    });
    // Queued until the handshake completes, then sent in order.
    engine
        .link(client)
        .expect("client link")
        .write_lines(client, "s[\"name\",\"rust\"]\na0[\"hello\",\"from Rust ☃\",[1,2,3]]")
        .unwrap();
    engine.start_client(client).unwrap();

    let connected = events.wait(|e| e[0] == client && e[1] == kind::CONNECTED);
    println!("[client] connected: session {}", connected[2]["session"]["sessionID"]);
    events.wait(|e| e[0] == client && e[1] == kind::ACKED && e[2] == 0);
    println!("[client] the server acknowledged 'hello'");

    // With our own server, answer from the server side too.
    if std::env::args().nth(1).is_none() {
        let hello = events.wait(|e| e[1] == kind::MESSAGE && e[2][0] == "hello");
        let conn = hello[0].as_u64().expect("a handle") as u32;
        println!("[server] got {}", hello[2]);
        engine.link(conn).unwrap().write_lines(conn, "e[\"welcome\",{\"to\":\"rust\"}]").unwrap();
        let welcome = events.wait(|e| e[0] == client && e[1] == kind::MESSAGE);
        println!("[client] got {}", welcome[2]);
    }
    engine.client_disconnect(client).unwrap();
    events.wait(|e| e[0] == client && e[1] == kind::STOPPED);
    println!("[client] disconnected");
}

/// The engine's events so far, and a way to wait for one.
struct Events<'a> {
    engine: &'a Engine,
    woke: mpsc::Receiver<()>,
    seen: Vec<Value>,
}

impl Events<'_> {
    fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return self.seen.remove(i);
            }
            assert!(Instant::now() < deadline, "timed out; events so far: {:?}", self.seen);
            let _ = self.woke.recv_timeout(Duration::from_millis(50));
            // Taking a batch also tells the engine the previous one was handled,
            // which releases the acks of its events.
            while let Some(batch) = self.engine.take_events() {
                self.seen.extend(serde_json::from_str::<Vec<Value>>(&batch).expect("a JSON array"));
            }
        }
    }
}
