//! A client: a connect loop around one `Link` whose session, queue and
//! unacknowledged events survive reconnects.

use super::delivery::lock;
use super::link::{self, kind, Addresses, Link};
use super::Shared;
use crate::protocol::backoff::{unit_random, Backoff};
use crate::protocol::peer::{Config, Peer, Role};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A connection that stayed up this long resets the backoff; one that
/// drops sooner keeps backing off, so a server that accepts and then drops
/// at once is not hammered.
const STABLE_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub host: Option<String>,
    pub port: u16,
    pub peer: Config,
}

#[derive(Default)]
struct Control {
    auto: Option<Backoff>,
    /// `disconnect()` was called: flush, close and stop.
    stop: bool,
    /// `reconnect()` was called: close and connect again at once.
    now: bool,
}

pub struct Client {
    pub link: Arc<Link>,
    options: ClientOptions,
    control: Mutex<Control>,
    wake: Notify,
}

impl Client {
    pub fn new(handle: u32, options: ClientOptions, shared: &Arc<Shared>) -> Arc<Self> {
        let link = Link::new(handle, None, Peer::new(Role::Client, options.peer.clone()), shared.delivery.clone(), None, shared.rt.clone());
        shared.register_link(link.clone());
        Arc::new(Client { link, options, control: Mutex::new(Control::default()), wake: Notify::new() })
    }

    pub fn reconnect_now(&self) {
        lock(&self.control).now = true;
        match self.link.transport() {
            Some(t) => t.end(),
            None => self.wake.notify_one(),
        }
    }

    pub fn auto_reconnect(&self, min_ms: f64, max_ms: f64) {
        let ms = |v: f64, d: u64| if v.is_finite() && v > 0.0 { Duration::from_secs_f64(v / 1000.0) } else { Duration::from_millis(d) };
        lock(&self.control).auto = Some(Backoff::new(ms(min_ms, 100), ms(max_ms, 60_000)));
    }

    pub fn disconnect(&self) {
        {
            let mut c = lock(&self.control);
            c.stop = true;
            c.auto = None;
        }
        // Queued sends go out first: the link ends its transport once the
        // handshake has flushed them.
        self.link.end_when_ready();
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        lock(&self.control).stop
    }
}

async fn connect(options: &ClientOptions) -> std::io::Result<(TcpStream, Addresses)> {
    let host = options.host.as_deref().filter(|h| !h.is_empty()).unwrap_or("localhost");
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("getaddrinfo ENOTFOUND {host}"));
    for addr in tokio::net::lookup_host((host, options.port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let addrs = Addresses { remote: s.peer_addr().ok(), local: s.local_addr().ok() };
                return Ok((s, addrs));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub async fn run(shared: Arc<Shared>, client: Arc<Client>) {
    let link = client.link.clone();
    loop {
        if client.stopping() && lock(&link.peer).queued_len() == 0 {
            break;
        }
        lock(&client.control).now = false;
        let started = Instant::now();
        match connect(&client.options).await {
            Ok((stream, addrs)) => {
                link.drive(stream, addrs).await;
            }
            Err(e) => {
                let port = client.options.port;
                let msg = format!("connect {} {}:{port}: {e}", link::io_code(&e).unwrap_or("error"), client.options.host.as_deref().unwrap_or("localhost"));
                link.deliver_error(&msg, link::io_code(&e));
            }
        }
        let (again, delay, attempt) = {
            let mut c = lock(&client.control);
            if c.stop {
                (false, Duration::ZERO, 0)
            } else if c.now {
                (true, Duration::ZERO, 0)
            } else if let Some(b) = c.auto.as_mut() {
                if started.elapsed() >= STABLE_AFTER {
                    b.reset();
                }
                let attempt = b.attempt();
                (true, b.next_delay(unit_random()), attempt)
            } else {
                (false, Duration::ZERO, 0)
            }
        };
        link.deliver(kind::DISCONNECTED, |b| b.push_str(if again { "true" } else { "false" }));
        if !again {
            // Wait for `reconnect()` or `disconnect()`; `autoReconnect()`
            // alone does not reconnect a closed client, as in the original.
            loop {
                client.wake.notified().await;
                let c = lock(&client.control);
                if c.stop {
                    drop(c);
                    shared.unregister_link(link.handle);
                    return;
                }
                if c.now {
                    break;
                }
            }
            continue;
        }
        if !delay.is_zero() {
            let delay_ms = delay.as_secs_f64() * 1000.0;
            link.deliver(kind::RECONNECTING, |b| b.push_str(&format!("{{\"attempt\":{attempt},\"delay\":{delay_ms:.3}}}")));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = client.wake.notified() => {}
            }
        }
        if client.stopping() {
            break;
        }
    }
    shared.unregister_link(link.handle);
}

