//! A client: a connect loop around one `Link` whose session, queue and
//! unacknowledged events survive reconnects.

use super::delivery::lock;
use super::diag::Ns;
use super::events::Kind;
use super::link::{Link, Then};
use super::tls::TlsConnector;
use super::transport::{self, io_code, Addresses, BoxStream, Endpoint};
use super::Shared;
use crate::protocol::backoff::{self, unit_random, Backoff};
use crate::protocol::peer::{Config, Peer, Role};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// A connection that stayed up this long resets the backoff; one that
/// drops sooner keeps backing off, so a server that accepts and then drops
/// at once is not hammered.
const STABLE_AFTER: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) enum Connector {
    /// Our own sockets, tried in turn (several addresses: fail over).
    Native { endpoints: Vec<Endpoint>, tls: Option<Arc<TlsConnector>> },
    /// A JavaScript `createConnection` factory supplies each stream.
    Js,
}

#[derive(Clone)]
pub(crate) struct ClientOptions {
    pub connector: Connector,
    pub peer: Config,
}

#[derive(Default)]
struct Control {
    auto: Option<Backoff>,
    /// `disconnect()` was called: flush, close and stop until `reconnect()`.
    stop: bool,
    /// The application let go of the client: end its task for good.
    released: bool,
    /// `reconnect()` was called: close and connect again at once.
    now: bool,
    started: bool,
    /// Waiting for JavaScript to hand over a stream.
    js_waiter: Option<oneshot::Sender<Result<(BoxStream, Addresses), String>>>,
}

pub(crate) struct Client {
    pub link: Arc<Link>,
    /// How it connects. (The peer's config went to the peer: a second copy
    /// would be ~300 bytes more per client.)
    connector: Connector,
    control: Mutex<Control>,
    wake: Notify,
}

impl Client {
    pub(crate) fn new(handle: u32, options: ClientOptions, shared: &Arc<Shared>) -> Arc<Self> {
        // The engine's events always go through an application that takes
        // them, so acks wait until it has (see `Engine::events_handled`).
        let ClientOptions { connector, peer } = options;
        let config = shared.client_config(Config { defer_acks: true, entropy: Some(super::entropy::os()), ..peer });
        let env = shared.client_env();
        let link = Link::new(handle, None, Peer::new(Role::Client, config, Instant::now()), shared, &env);
        shared.register_link(link.clone());
        Arc::new(Client { link, connector, control: Mutex::new(Control::default()), wake: Notify::new() })
    }

    /// Closes the current connection (if any) and connects again at once;
    /// also starts a client stopped by `disconnect()` again, as the original's
    /// reconnect() did.
    pub(crate) fn reconnect_now(&self) {
        {
            let mut c = lock(&self.control);
            c.now = true;
            c.stop = false;
        }
        self.link.cancel_end();
        match self.link.transport() {
            Some(t) => t.end(),
            None => self.wake.notify_one(),
        }
    }

    pub(crate) fn auto_reconnect(&self, min_ms: f64, max_ms: f64) {
        let ms = |v: f64, d: Duration| super::timers::millis(v).unwrap_or(d);
        lock(&self.control).auto =
            Some(Backoff::new(ms(min_ms, backoff::DEFAULT_MIN), ms(max_ms, backoff::DEFAULT_MAX)));
    }

    pub(crate) fn disconnect(&self) {
        {
            let mut c = lock(&self.control);
            c.stop = true;
            c.auto = None;
            c.js_waiter = None;
        }
        // Queued sends go out first: the link ends its transport once the
        // handshake has flushed them.
        self.link.end_when_ready();
        self.wake.notify_one();
    }

    /// The application holds the client no more: stop and free it.
    pub(crate) fn release(&self) {
        {
            let mut c = lock(&self.control);
            c.released = true;
            c.stop = true;
            c.auto = None;
            c.js_waiter = None;
        }
        self.link.end_when_ready();
        self.wake.notify_one();
    }

    /// Stopped: waits for `reconnect()` (true) or `release()` (false).
    async fn parked(&self) -> bool {
        loop {
            {
                let c = lock(&self.control);
                if c.released {
                    return false;
                }
                if !c.stop {
                    return true;
                }
            }
            self.wake.notified().await;
        }
    }

    /// JavaScript's factory produced a stream (or failed) for this attempt.
    pub(crate) fn js_opened(&self, result: Result<(BoxStream, Addresses), String>) -> bool {
        match lock(&self.control).js_waiter.take() {
            Some(tx) => tx.send(result).is_ok(),
            None => false,
        }
    }

    /// True the first time only.
    pub(crate) fn mark_started(&self) -> bool {
        !std::mem::replace(&mut lock(&self.control).started, true)
    }

    fn stopping(&self) -> bool {
        lock(&self.control).stop
    }

    async fn open(&self, attempt: usize) -> Result<(BoxStream, Addresses), (String, Option<&'static str>)> {
        match &self.connector {
            Connector::Native { endpoints, tls } => {
                let endpoint = &endpoints[attempt % endpoints.len()];
                let io = async {
                    let (stream, mut addrs) = transport::connect(endpoint).await?;
                    let stream: BoxStream = match tls {
                        Some(tls) => {
                            let host = match endpoint {
                                Endpoint::Tcp { host, .. } => host.as_deref().unwrap_or("localhost"),
                                Endpoint::Unix { .. } => "localhost",
                            };
                            // Takes `addrs.direct`: bytes must go through TLS.
                            Box::new(tls.connect(host, stream, &mut addrs.direct).await?)
                        }
                        None => stream,
                    };
                    Ok::<_, std::io::Error>((stream, addrs))
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, io).await {
                    Ok(Ok(c)) => Ok(c),
                    Ok(Err(e)) => {
                        let code = io_code(&e);
                        Err((
                            format!("connect {} {endpoint}: {e}", code.unwrap_or("error")),
                            code.or(tls.as_ref().map(|_| "ETLS")),
                        ))
                    }
                    Err(_) => Err((format!("connect ETIMEDOUT {endpoint}"), Some("ETIMEDOUT"))),
                }
            }
            Connector::Js => {
                let (tx, rx) = oneshot::channel();
                lock(&self.control).js_waiter = Some(tx);
                self.link.deliver(Kind::OpenTransport, |b| b.push('0'));
                tokio::select! {
                    r = rx => match r {
                        Ok(Ok(c)) => Ok(c),
                        Ok(Err(e)) => Err((e, None)),
                        Err(_) => Err(("connection attempt cancelled".into(), None)),
                    },
                    _ = self.wake.notified() => Err(("connection attempt cancelled".into(), None)),
                }
            }
        }
    }
}

/// The client's task: the connect loop, `STOPPED` after each
/// `disconnect()`, until the application releases the client.
pub(crate) async fn run(shared: Arc<Shared>, client: Arc<Client>) {
    run_from(shared, client, None).await;
}

/// The connect loop from its start, or (`after`) from the end of a
/// connection, in a new task the connection's reader started (`Then`).
fn run_from(
    shared: Arc<Shared>,
    client: Arc<Client>,
    after: Option<Attempt>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if connect_loop(&shared, &client, after).await == Loop::Handed {
            return;
        }
        lock(&client.control).js_waiter = None;
        for h in client.link.handles() {
            shared.unregister_link(h);
        }
        lock(&shared.clients).remove(&client.link.handle);
    })
}

/// A connection attempt that connected, for the loop's turn after it.
struct Attempt {
    target: usize,
    started: Instant,
}

/// How `connect_loop` returned.
#[derive(PartialEq, Eq)]
enum Loop {
    /// The client is released.
    Done,
    /// A connection's reader goes on with the loop once the connection
    /// ends: an idle connection read on Node's loop parks its reader, and
    /// no task need wait for it (`Link::read_loop`).
    Handed,
}

async fn connect_loop(shared: &Arc<Shared>, client: &Arc<Client>, mut after: Option<Attempt>) -> Loop {
    let link = client.link.clone();
    let mut target = after.as_ref().map_or(0, |a| a.target);
    loop {
        let (started, connected) = match after.take() {
            Some(a) => {
                shared.forget_pipe(link.handle);
                (a.started, true)
            }
            None => {
                if client.stopping() {
                    // Session, queue and unacknowledged events stay, for a later
                    // reconnect() to resume with.
                    link.deliver(Kind::Stopped, |b| b.push('0'));
                    if !client.parked().await {
                        return Loop::Done;
                    }
                }
                lock(&client.control).now = false;
                let started = Instant::now();
                match client.open(target).await {
                    Ok((stream, addrs)) => {
                        let (shared, client) = (shared.clone(), client.clone());
                        let then: Then = Box::new(move || {
                            let rt = shared.rt.clone();
                            rt.spawn(run_from(shared, client, Some(Attempt { target, started })));
                        });
                        link.drive(stream, addrs, Some(then)).await;
                        return Loop::Handed;
                    }
                    Err((message, code)) => {
                        link.log(Ns::Reconnect, || format!("{} connection attempt failed: {message}", link.who()));
                        // A JavaScript factory's failure was already reported there,
                        // with the factory's own error object.
                        if !client.stopping() && !matches!(client.connector, Connector::Js) {
                            link.deliver_error(&message, code);
                        }
                    }
                }
                (started, false)
            }
        };
        if !connected {
            // With several servers, the next attempt tries the next one.
            target = target.wrapping_add(1);
        }
        let (again, delay, attempt) = {
            let mut c = lock(&client.control);
            if c.stop {
                (false, Duration::ZERO, 0)
            } else if c.now {
                (true, Duration::ZERO, 0)
            } else if let Some(b) = c.auto.as_mut() {
                if connected && started.elapsed() >= STABLE_AFTER {
                    b.reset();
                }
                let attempt = b.attempt();
                (true, b.next_delay(unit_random(&super::entropy::os())), attempt)
            } else {
                (false, Duration::ZERO, 0)
            }
        };
        link.log(Ns::Reconnect, || {
            let c = lock(&client.control);
            let who = link.who();
            if c.stop {
                format!("{who} stopped (disconnect())")
            } else if !again {
                format!("{who} not reconnecting: autoReconnect() is off; waiting for reconnect()")
            } else if c.now {
                format!("{who} reconnecting now (reconnect())")
            } else {
                format!("{who} reconnect attempt {attempt} in {:.0} ms", delay.as_secs_f64() * 1000.0)
            }
        });
        link.deliver(Kind::Disconnected, |b| b.push_str(if again { "true" } else { "false" }));
        if !again {
            // Wait for `reconnect()` or `disconnect()`; `autoReconnect()`
            // alone does not reconnect a closed client, as in the original.
            loop {
                client.wake.notified().await;
                let c = lock(&client.control);
                if c.stop || c.now {
                    break;
                }
            }
            continue;
        }
        if !delay.is_zero() {
            let delay_ms = delay.as_secs_f64() * 1000.0;
            link.deliver(Kind::Reconnecting, |b| {
                b.push_str(&format!("{{\"attempt\":{attempt},\"delay\":{delay_ms:.3}}}"))
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = client.wake.notified() => {}
            }
        }
    }
}
