//! The Rust API against the original Node package, uhura 0.1.2 (from
//! `node_modules/uhura-0.1.2`, a devDependency): a Rust client with a Node
//! server, and a Node client with a Rust server. Events both ways with
//! arguments, acks, session keys, and a reconnect that resumes the session.
//! Skipped, saying so, when `node` or the package is missing.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use support::{message, until, within};
use tokio::sync::mpsc;
use uhura::{Client, Event, Options, Server, ServerOptions};

/// `node_modules/uhura-0.1.2`, if it and `node` are there.
fn uhura_0_1_2() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules").join("uhura-0.1.2");
    if !dir.join("package.json").exists() {
        eprintln!("SKIPPED: {} is missing (run `npm install`)", dir.display());
        return None;
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Some(dir),
        _ => {
            eprintln!("SKIPPED: `node` is not on PATH");
            None
        }
    }
}

/// A Node process running `script`, which prints one JSON object per line
/// and may read commands (JSON lines) on stdin. Killed on drop.
struct NodePeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl NodePeer {
    fn spawn(script: &str, args: &[String]) -> NodePeer {
        let mut child = Command::new("node")
            .arg("-e")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("node: {line}"),
                }
            }
        });
        NodePeer { child, stdin, lines, seen: Vec::new() }
    }

    /// Waits (bounded) for a line with `"ev": ev` matching `pred`.
    async fn wait(&mut self, ev: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let what = format!("node's {ev:?}");
        let found = within(&what, async {
            loop {
                let line = self.lines.recv().await.expect("node exited");
                if line["ev"] == ev && pred(&line) {
                    return line;
                }
                self.seen.push(line);
            }
        })
        .await;
        found
    }

    fn command(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("node reads its stdin");
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PRELUDE: &str = r#"
const Uhura = require(process.argv[1])
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')
process.stdin.on('end', () => process.exit(0))
"#;

const NODE_SERVER: &str = r#"
let n = 0
const server = Uhura.createServer((conn, reconnect) => {
  const id = ++n
  out({ ev: 'connection', id, reconnect: !!reconnect, session: conn.get() })
  conn.on('hello', (a, b) => {
    out({ ev: 'hello', id, args: [a, b] })
    conn.set('fromNode', 7)
    conn.send('welcome', { got: a }, () => out({ ev: 'welcome-acked', id }))
  })
  conn.on('_set', (key, value) => out({ ev: '_set', id, key, value }))
  conn.on('disconnect', () => out({ ev: 'disconnect', id }))
  conn.on('error', (e) => out({ ev: 'error', id, message: e.message }))
})
server.listen(0, '127.0.0.1', () => out({ ev: 'listening', port: server.address().port }))
process.stdin.resume()
"#;

#[tokio::test]
async fn a_rust_client_and_a_node_0_1_2_server() {
    let Some(pkg) = uhura_0_1_2() else { return };
    let mut node = NodePeer::spawn(&format!("{PRELUDE}{NODE_SERVER}"), &[pkg.display().to_string()]);
    let port = node.wait("listening", |_| true).await["port"].as_u64().unwrap() as u16;

    let client = within("connect", Client::connect(("127.0.0.1", port), Options::default())).await.unwrap();
    let (connect, _) = until("connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    assert_eq!(connect, Event::Connect { resumed: false });
    let sid = client.session_id().expect("the old server gives a session id");
    assert_eq!(sid.len(), 24);
    let first = node.wait("connection", |_| true).await;
    assert_eq!(first["reconnect"], false);

    // A session key, Rust to Node.
    client.set("role", "rust").unwrap();
    let set = node.wait("_set", |l| l["key"] == "role").await;
    assert_eq!(set["value"], "rust");

    // An event with arguments, acked by the old server.
    let hello = client.send("hello", ("wörld ☃", json!({"n": [1, 2]})));
    let got = node.wait("hello", |_| true).await;
    assert_eq!(got["args"], json!(["wörld ☃", {"n": [1, 2]}]));
    within("0.1.2's ack", hello).await.unwrap();

    // Node to Rust: a session key, and an event whose ack the old server waits for.
    until(
        "the server's set",
        || client.next_event(),
        |e| matches!(e, Event::Set { fields } if fields.contains_key("fromNode")),
    )
    .await;
    assert_eq!(client.get("fromNode"), Some(json!(7)));
    assert_eq!(message("welcome", || client.next_event()).await, vec![json!({"got": "wörld ☃"})]);
    node.wait("welcome-acked", |_| true).await;

    // A reconnect resumes the session on the old server.
    client.reconnect();
    node.wait("disconnect", |l| l["id"] == 1).await;
    let second = node.wait("connection", |_| true).await;
    assert_eq!(second["reconnect"], true, "0.1.2 resumed the session");
    assert_eq!(second["session"]["sessionID"], sid.as_str());
    assert_eq!(second["session"]["role"], "rust");
    let (resumed, _) =
        until("the resumed connect", || client.next_event(), |e| matches!(e, Event::Connect { .. })).await;
    assert_eq!(resumed, Event::Connect { resumed: true });
    assert_eq!(client.session_id().as_deref(), Some(sid.as_str()));
    assert_eq!(client.get("role"), Some(json!("rust")));

    let again = client.send("hello", ("again", 2));
    assert_eq!(node.wait("hello", |l| l["id"] == 2).await["args"], json!(["again", 2]));
    within("the ack after the resume", again).await.unwrap();
    within("disconnect", client.disconnect()).await;
}

const NODE_CLIENT: &str = r#"
const client = Uhura.createClient(Number(process.argv[2]), '127.0.0.1')
client.autoReconnect(10, 100)
client.on('connect', (config) => out({ ev: 'connect', config: config || null, session: client.get() }))
client.on('welcome', (...args) => out({ ev: 'welcome', args }))
client.on('again', (...args) => out({ ev: 'again', args }))
client.on('_set', (key, value) => out({ ev: '_set', key, value }))
client.on('disconnect', () => out({ ev: 'disconnect' }))
client.on('error', (e) => out({ ev: 'error', message: e.message }))
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const c = JSON.parse(line)
  if (c.cmd === 'send') client.send(c.name, ...c.args, () => out({ ev: 'acked', name: c.name }))
  if (c.cmd === 'set') client.set(c.key, c.value)
})
"#;

#[tokio::test]
async fn a_node_0_1_2_client_and_a_rust_server() {
    let Some(pkg) = uhura_0_1_2() else { return };
    let server = within("listen", Server::bind("127.0.0.1:0", ServerOptions::default())).await.unwrap();
    let port = server.local_addr().socket_addr().unwrap().port();
    let mut node = NodePeer::spawn(&format!("{PRELUDE}{NODE_CLIENT}"), &[pkg.display().to_string(), port.to_string()]);

    let conn = within("accept", server.accept()).await.unwrap();
    assert!(!conn.resumed());
    assert!(conn.acks(), "0.1.2 asks for object mode with acks");
    assert!(!conn.extensions(), "0.1.2 knows nothing of ours");
    let sid = conn.session_id().unwrap().to_owned();
    // 0.1.2 emits `connect` with the server's config once the handshake is done.
    let connected = node.wait("connect", |l| l["config"].is_object()).await;
    assert_eq!(connected["config"], json!({"objectMode": true, "enableAcks": true}));
    assert_eq!(connected["session"]["sessionID"], sid.as_str());

    // Session keys both ways.
    conn.set("fromRust", "hi").unwrap();
    assert_eq!(node.wait("_set", |l| l["key"] == "fromRust").await["value"], "hi");
    node.command(json!({"cmd": "set", "key": "role", "value": "node"}));
    let (set, _) = until("the client's set", || conn.next_event(), |e| matches!(e, Event::Set { .. })).await;
    assert_eq!(set, Event::Set { fields: json!({"role": "node"}).as_object().unwrap().clone() });
    assert_eq!(conn.get("role"), Some(json!("node")));

    // Node to Rust, acked once taken.
    node.command(json!({"cmd": "send", "name": "hello", "args": ["x", {"y": [2]}]}));
    assert_eq!(message("hello", || conn.next_event()).await, vec![json!("x"), json!({"y": [2]})]);
    node.wait("acked", |l| l["name"] == "hello").await;

    // Rust to Node, acked by 0.1.2.
    let welcome = conn.send("welcome", (json!({"a": 1}), "b"));
    assert_eq!(node.wait("welcome", |_| true).await["args"], json!([{"a": 1}, "b"]));
    within("0.1.2's ack", welcome).await.unwrap();

    // The server closes the connection; 0.1.2's autoReconnect comes back
    // and resends its session, and the Rust server resumes it. (Not 0.1.2's
    // reconnect(): when its old socket's close comes after the new
    // handshake, that client stops sending until its next connect.)
    within("the server's disconnect", conn.disconnect()).await;
    assert!(!conn.is_connected());
    node.wait("disconnect", |_| true).await;
    let resumed = within("the resumed connection", server.accept()).await.unwrap();
    assert!(resumed.resumed());
    assert_eq!(resumed.session_id(), Some(sid.as_str()));
    assert_eq!(resumed.get("role"), Some(json!("node")));
    assert_eq!(resumed.get("fromRust"), Some(json!("hi")));
    until("the old connection's end", || conn.next_event(), |e| matches!(e, Event::Disconnect { .. })).await;
    node.wait("connect", |l| l["config"].is_object() && l["session"]["sessionID"] == sid.as_str()).await;

    let again = resumed.send("again", (3,));
    assert_eq!(node.wait("again", |_| true).await["args"], json!([3]));
    within("the ack after the resume", again).await.unwrap();
    node.command(json!({"cmd": "send", "name": "after", "args": []}));
    message("after", || resumed.next_event()).await;
    node.wait("acked", |l| l["name"] == "after").await;
}
