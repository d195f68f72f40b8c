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
