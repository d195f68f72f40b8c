//! A private redis-server per test, on a random loopback port, and what the
//! Redis store tests check it with. Each test binary uses some of it, so the
//! rest is dead code there.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uhura::engine::redis_store::RedisStore;
use uhura::protocol::session::Session;

/// The store's own bound on one operation, plus slack for a loaded machine.
pub(crate) const OP_BOUND: Duration = Duration::from_millis(3500);

/// A redis-server child, killed when dropped so a failing test leaves no
/// server behind.
pub(crate) struct RedisServer {
    child: Option<Child>,
    pub(crate) port: u16,
}

impl RedisServer {
    /// `None` only when redis-server is missing and UHURA_SKIP_REDIS=1.
    pub(crate) fn start() -> Option<RedisServer> {
        Self::start_on(free_port())
    }

    pub(crate) fn start_on(port: u16) -> Option<RedisServer> {
        let port_arg = port.to_string();
        let mut server = Self::spawn(port, &["--port", &port_arg, "--save", "", "--appendonly", "no"])?;
        server.wait_ready();
        Some(server)
    }

    /// redis-server with `args` (bound to 127.0.0.1), not waited for;
    /// `port` is what `url` and the waits use.
    pub(crate) fn spawn(port: u16, args: &[&str]) -> Option<RedisServer> {
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(args)
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
        Some(RedisServer { child: Some(child), port })
    }

    /// Until something accepts connections on the port (a TLS port, which
    /// a plain PING cannot check).
    pub(crate) fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited early: {status}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server on port {} never listened", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn wait_ready(&mut self) {
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

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, like a crash: no goodbye on the store's connections.
    pub(crate) fn kill(&mut self) {
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

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A plain connection, for checking what the store wrote.
pub(crate) async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

pub(crate) async fn raw_cmd<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.unwrap()
}

pub(crate) fn session(v: Value) -> Session {
    match v {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

pub(crate) fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(&server.url(), None, None).unwrap()
}

/// A Redis Cluster of three masters (no replicas) on loopback, each with
/// its `nodes.conf` and append-only file in a private directory, so a node
/// killed and restarted comes back with its slots and data. Nodes serve
/// their slots while another is down (`cluster-require-full-coverage no`).
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// `None` only when redis-server is missing and UHURA_SKIP_REDIS=1.
    pub(crate) fn start() -> Option<RedisCluster> {
        let dir = std::env::temp_dir().join(format!("uhura-cluster-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = RedisCluster { nodes: Vec::new(), dir };
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on port + 10000.
            let port = free_port();
            if port < 55000 && !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
                ports.push(port);
            }
        }
        for port in ports {
            cluster.nodes.push(cluster.spawn_node(port)?);
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (Debian: redis-tools) makes the test cluster");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        cluster.wait_ok();
        Some(cluster)
    }

    fn spawn_node(&self, port: u16) -> Option<RedisServer> {
        let (p, conf, dir) = (port.to_string(), format!("nodes-{port}.conf"), self.dir.to_string_lossy().into_owned());
        #[rustfmt::skip]
        let args = [
            "--port", &p, "--cluster-enabled", "yes", "--cluster-config-file", &conf, "--dir", &dir,
            "--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
        ];
        let mut node = RedisServer::spawn(port, &args)?;
        node.wait_ready();
        Some(node)
    }

    /// Restarts node `i` (killed before) from its own nodes.conf and data.
    pub(crate) fn restart(&mut self, i: usize) {
        let port = self.nodes[i].port;
        self.nodes[i] = self.spawn_node(port).unwrap();
        self.wait_ok();
    }

    /// Until every running node says `cluster_state:ok`.
    pub(crate) fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            while !cluster_info(node.port).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "node {} never reached cluster_state:ok", node.port);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `CLUSTER INFO` of the node on `port` (empty if it does not answer).
pub(crate) fn cluster_info(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"CLUSTER INFO\r\n").is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(13).any(|w| w == b"cluster_state") && got.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
