//! The tokio side: one background runtime, listeners, connect and reconnect
//! loops. Everything the application sees leaves through `Delivery`; every
//! application call comes in through the `Engine` methods, addressed by
//! numeric handle.

// Without the Node binding (`--no-default-features`) the parts only it
// drives are unused: JavaScript streams and stores, reads on Node's loop,
// the line protocol. Dead code is checked with it (the default features).
#![cfg_attr(not(feature = "node"), allow(dead_code))]

pub(crate) mod client;
pub(crate) mod cork;
pub(crate) mod delivery;
pub(crate) mod diag;
pub(crate) mod entropy;
pub mod events;
pub(crate) mod fault;
pub(crate) mod fleet_bus;
pub(crate) mod js_pipe;
pub(crate) mod js_store;
pub mod lines;
pub(crate) mod link;
pub(crate) mod metrics;
pub mod redis_conn;
pub mod redis_store;
pub(crate) mod retention;
pub(crate) mod save_queue;
pub(crate) mod server;
pub(crate) mod snapshot;
pub mod store;
pub(crate) mod timers;
pub mod tls;
pub mod transport;
pub(crate) mod trim;

use delivery::{lock, Delivery};
use link::Link;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub(crate) use client::{Client, ClientOptions, Connector};
use js_pipe::JsPipe;
pub(crate) use server::{ListenOptions, Server, ServerOptions};
use transport::Addresses;
pub(crate) use transport::Endpoint;

/// What the runtime's tasks share.
pub(crate) struct Shared {
    pub delivery: Arc<Delivery>,
    next_handle: AtomicU32,
    links: Mutex<HashMap<u32, Arc<Link>>>,
    servers: Mutex<HashMap<u32, Arc<Server>>>,
    clients: Mutex<HashMap<u32, Arc<Client>>>,
    pipes: Mutex<HashMap<u32, Arc<JsPipe>>>,
    js_stores: Mutex<HashMap<u32, Arc<js_store::JsStore>>>,
    pub timers: Arc<timers::Timers>,
    /// Generation of the last batch handed to the application, and of the
    /// last one it finished handling.
    taken_gen: AtomicU64,
    delivered_gen: AtomicU64,
    /// Links with acks waiting for `delivered_gen` to advance.
    ack_waiters: Mutex<Vec<Weak<Link>>>,
    /// Transports read on the application's loop that paused because the
    /// delivery buffer was full: watched again once it is taken.
    delivery_paused: Mutex<Vec<(Weak<Link>, u64)>>,
    /// The application reads native sockets on its own loop (WATCH events).
    pub external_reads: std::sync::atomic::AtomicBool,
    /// The config of the last client made: the next client with an equal
    /// one shares it (10,000 clients in one process made with the same
    /// options would keep ~200 bytes each otherwise).
    client_config: Mutex<Option<Arc<crate::protocol::peer::Config>>>,
    /// What every client's link shares (`LinkEnv`), made by the first.
    client_env: std::sync::OnceLock<Arc<link::LinkEnv>>,
    pub rt: tokio::runtime::Handle,
}

impl Shared {
    pub(crate) fn alloc_handle(&self) -> u32 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }
    /// `config` as an `Arc`: the last client's, if that is an equal config.
    pub(crate) fn client_config(&self, config: crate::protocol::peer::Config) -> Arc<crate::protocol::peer::Config> {
        let mut last = lock(&self.client_config);
        match &*last {
            Some(c) if c.same_as(&config) => c.clone(),
            _ => last.insert(Arc::new(config)).clone(),
        }
    }
    /// What the links of clients share: no store, no retention.
    pub(crate) fn client_env(self: &Arc<Self>) -> Arc<link::LinkEnv> {
        self.client_env.get_or_init(|| link::LinkEnv::new(self, None, None)).clone()
    }
    pub(crate) fn register_link(&self, link: Arc<Link>) {
        lock(&self.links).insert(link.handle, link);
    }
    pub(crate) fn unregister_link(&self, handle: u32) {
        lock(&self.links).remove(&handle);
    }
    pub(crate) fn link(&self, handle: u32) -> Option<Arc<Link>> {
        lock(&self.links).get(&handle).cloned()
    }
    /// The counters of server `server`, which its links add to.
    pub(crate) fn server_metrics(&self, server: u32) -> Option<Arc<metrics::ServerMetrics>> {
        lock(&self.servers).get(&server).map(|s| s.metrics.clone())
    }
    pub(crate) fn delivered_gen(&self) -> u64 {
        self.delivered_gen.load(Ordering::Acquire)
    }

    pub(crate) fn pause_for_delivery(&self, link: &Arc<Link>, transport: u64) {
        lock(&self.delivery_paused).push((Arc::downgrade(link), transport));
    }

    /// The application took a batch: watch the paused transports again.
    fn resume_paused_reads(&self) {
        let paused = std::mem::take(&mut *lock(&self.delivery_paused));
        for (link, transport) in paused {
            if let Some(link) = link.upgrade() {
                link.resume_external(transport);
            }
        }
    }

    pub(crate) fn wait_for_delivery(&self, link: &Arc<Link>) {
        lock(&self.ack_waiters).push(Arc::downgrade(link));
    }

    /// The application has handled every batch up to generation `gen`:
    /// release the acks that waited for it.
    fn delivered(&self, gen: u64) {
        if self.delivered_gen.fetch_max(gen, Ordering::AcqRel) >= gen {
            return;
        }
        let waiters = std::mem::take(&mut *lock(&self.ack_waiters));
        let mut still = Vec::new();
        for w in waiters {
            if let Some(link) = w.upgrade() {
                if !link.release_acks(gen, true) {
                    still.push(w);
                }
            }
        }
        lock(&self.ack_waiters).extend(still);
    }

    /// Forgets the ack waiters of links that are gone, once there are more
    /// than `above` of them; returns how many are left if it did. For a
    /// consumer that never calls `delivered` (which otherwise drops them).
    pub(crate) fn prune_ack_waiters(&self, above: usize) -> Option<usize> {
        let mut waiters = lock(&self.ack_waiters);
        if waiters.len() <= above {
            return None;
        }
        waiters.retain(|w| w.strong_count() > 0);
        Some(waiters.len())
    }

    /// Routes an earlier connection's handle to the link that resumed its session.
    pub(crate) fn route(&self, handle: u32, link: Arc<Link>) {
        lock(&self.links).insert(handle, link);
    }
    pub(crate) fn register_js_store(&self, server: u32, store: Arc<js_store::JsStore>) {
        lock(&self.js_stores).insert(server, store);
    }
    pub(crate) fn forget_pipe(&self, handle: u32) {
        lock(&self.pipes).remove(&handle);
    }
    fn pipe(&self, handle: u32) -> Option<Arc<JsPipe>> {
        lock(&self.pipes).get(&handle).cloned()
    }
}

/// Which view of a server `Engine::server_snapshot` gives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View {
    Metrics,
    Connections,
    Sessions,
}

pub(crate) struct Engine {
    // Declared before the runtime so tasks' handles drop first.
    shared: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl Engine {
    /// `wake` is called (from any thread) when events are ready to `take()`.
    pub(crate) fn new(wake: impl Fn() + Send + Sync + 'static) -> std::io::Result<Self> {
        let threads = std::env::var("UHURA_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2usize);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("uhura")
            // Sessions are serde_json values, cloned and dropped recursively:
            // room for `maxDepth` up to framing::MAX_DEPTH_LIMIT (tests/hostile.rs).
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            delivery: Arc::new(Delivery::new(wake)),
            next_handle: AtomicU32::new(1),
            links: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            pipes: Mutex::new(HashMap::new()),
            js_stores: Mutex::new(HashMap::new()),
            timers: Arc::new(timers::Timers::default()),
            taken_gen: AtomicU64::new(0),
            delivered_gen: AtomicU64::new(0),
            ack_waiters: Mutex::new(Vec::new()),
            delivery_paused: Mutex::new(Vec::new()),
            external_reads: std::sync::atomic::AtomicBool::new(false),
            client_config: Mutex::new(None),
            client_env: std::sync::OnceLock::new(),
            rt: rt.handle().clone(),
        });
        rt.spawn(shared.timers.clone().run(Arc::downgrade(&shared)));
        Ok(Engine { shared, _rt: rt })
    }

    /// Native sockets are then read on the application's loop: it must act
    /// on WATCH / UNWATCH events (the Node binding does).
    pub(crate) fn enable_external_reads(&self, on: bool) {
        self.shared.external_reads.store(on, Ordering::Release);
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Takes the events delivered so far, as one JSON array text. Taking
    /// again means the previous batch was handled (see `events_handled`).
    pub(crate) fn take_events(&self) -> Option<String> {
        self.events_handled();
        let (text, gen) = self.shared.delivery.take()?;
        self.shared.taken_gen.store(gen, Ordering::Release);
        self.shared.resume_paused_reads();
        Some(text)
    }

    /// Takes the events delivered so far with their batch generation,
    /// saying nothing about earlier batches: for a consumer that releases
    /// acks link by link (`Link::release_acks`, as `crate::api` does) and
    /// never calls `take_events` or `events_handled`.
    pub(crate) fn take_batch(&self) -> Option<(String, u64)> {
        let taken = self.shared.delivery.take()?;
        self.shared.resume_paused_reads();
        Some(taken)
    }

    /// The application has handled every batch taken so far. Acks of those
    /// events go out only now, so an ack never vouches for an event that
    /// was still waiting in a buffer.
    pub(crate) fn events_handled(&self) {
        self.shared.delivered(self.shared.taken_gen.load(Ordering::Acquire));
    }

    /// `server.sendTo(sid, ...)`: reported to the server's `seq`.
    pub(crate) fn server_send_to(&self, server: u32, sid: String, args: String, seq: u64) -> Result<(), String> {
        self.server(server)?.fleet().send_to(sid, args, seq);
        Ok(())
    }

    /// `server.broadcast(...)`: reported to the server's `seq`.
    pub(crate) fn server_broadcast(&self, server: u32, args: String, seq: u64) -> Result<(), String> {
        self.server(server)?.fleet().broadcast(args, seq);
        Ok(())
    }

    pub(crate) fn create_server(&self, options: ServerOptions) -> u32 {
        let handle = self.shared.alloc_handle();
        let server = Server::new(handle, options, &self.shared);
        lock(&self.shared.servers).insert(handle, server);
        handle
    }

    fn server(&self, server: u32) -> Result<Arc<Server>, String> {
        lock(&self.shared.servers).get(&server).cloned().ok_or_else(|| "unknown server".into())
    }

    /// Starts listening; returns the number its `LISTENING` will carry.
    pub(crate) fn listen(&self, server: u32, options: ListenOptions) -> Result<u32, String> {
        let server = self.server(server)?;
        let shared = self.shared.clone();
        let (shutdown, listen) = server.begin_listen();
        self.shared
            .rt
            .spawn(async move { server::listen_and_serve(shared, server, options, (shutdown, listen)).await });
        Ok(listen)
    }

    pub(crate) fn close_server(&self, server: u32) {
        if let Some(s) = lock(&self.shared.servers).get(&server).cloned() {
            s.close(&self.shared);
        }
    }

    /// The application dropped the server object: close it and forget it.
    /// A closed server stays in the map while its object lives, since it may
    /// listen again; once gone, what it alone held goes with it (its store,
    /// its fleet bus's Redis subscription and tasks). Its open connections
    /// and their sessions keep what they use.
    pub(crate) fn server_release(&self, server: u32) {
        let removed = lock(&self.shared.servers).remove(&server);
        if let Some(s) = removed {
            s.close(&self.shared);
        }
    }

    /// Open connections of a server (accepted, not yet ended).
    pub(crate) fn server_connections(&self, server: u32) -> Option<usize> {
        lock(&self.shared.servers).get(&server).map(|s| s.connections())
    }

    /// An operator's view of a server (see `snapshot.rs`); none once it is gone.
    pub(crate) fn server_snapshot(&self, server: u32, view: View) -> Option<serde_json::Value> {
        let s = lock(&self.shared.servers).get(&server).cloned()?;
        Some(match view {
            View::Metrics => snapshot::server_metrics(&self.shared, &s),
            View::Connections => snapshot::server_connections(&self.shared, &s),
            View::Sessions => snapshot::server_sessions(&self.shared, &s),
        })
    }

    /// A client's traffic and state (`client.stats()`); none once it is gone.
    pub(crate) fn client_stats(&self, handle: u32) -> Option<serde_json::Value> {
        self.client(handle).ok().map(|c| snapshot::client_stats(&c.link))
    }

    pub(crate) fn set_max_connections(&self, server: u32, max: Option<usize>) {
        if let Some(s) = lock(&self.shared.servers).get(&server) {
            s.set_max_connections(max);
        }
    }

    pub(crate) fn create_client(&self, options: ClientOptions) -> u32 {
        let handle = self.shared.alloc_handle();
        let client = Client::new(handle, options, &self.shared);
        lock(&self.shared.clients).insert(handle, client);
        handle
    }

    /// Starts a created client's connect loop. Separate from creation so
    /// that options set right after `createClient` (autoReconnect) apply to
    /// the first attempt too, as they did in the original.
    pub(crate) fn start_client(&self, handle: u32) -> Result<(), String> {
        let client = self.client(handle)?;
        if client.mark_started() {
            let shared = self.shared.clone();
            self.shared.rt.spawn(async move { client::run(shared, client).await });
        }
        Ok(())
    }

    /// A JavaScript store answered request `req` of `server`'s store.
    pub(crate) fn store_reply(&self, server: u32, req: u64, result: Result<Option<String>, String>) {
        if let Some(store) = lock(&self.shared.js_stores).get(&server).cloned() {
            store.reply(req, result);
        }
    }

    /// A server-side connection over a JavaScript stream; returns its handle.
    pub(crate) fn adopt_js_stream(&self, server: u32, addresses: Addresses) -> Result<u32, String> {
        let server = self.server(server)?;
        let link = server.new_link(&self.shared);
        let (pipe, stream) = JsPipe::start(&link, &self.shared.rt);
        lock(&self.shared.pipes).insert(link.handle, pipe);
        server.run_link(&self.shared, link.clone(), async move { Ok(stream) }, addresses);
        Ok(link.handle)
    }

    /// A client's `createConnection` factory produced a stream (`Ok`) or failed.
    pub(crate) fn client_js_opened(&self, handle: u32, result: Result<Addresses, String>) -> Result<(), String> {
        let client = self.client(handle)?;
        let opened = match result {
            Ok(addresses) => {
                let (pipe, stream) = JsPipe::start(&client.link, &self.shared.rt);
                lock(&self.shared.pipes).insert(handle, pipe);
                client.js_opened(Ok((stream, addresses)))
            }
            Err(e) => client.js_opened(Err(e)),
        };
        if opened {
            Ok(())
        } else {
            self.shared.forget_pipe(handle);
            Err("this client is not waiting for a connection".into())
        }
    }

    /// Bytes the JavaScript stream of `handle` read; false asks JS to pause it.
    pub(crate) fn pipe_feed(&self, handle: u32, data: &[u8]) -> bool {
        self.shared.pipe(handle).is_none_or(|p| p.feed(data))
    }

    /// The JavaScript stream of `handle` ended or closed.
    pub(crate) fn pipe_end(&self, handle: u32) {
        if let Some(p) = self.shared.pipe(handle) {
            p.feed_end();
        }
    }

    /// Output for the JavaScript stream of `handle`.
    pub(crate) fn pipe_take(&self, handle: u32) -> Vec<u8> {
        self.shared.pipe(handle).map(|p| p.take_output()).unwrap_or_default()
    }

    fn client(&self, handle: u32) -> Result<Arc<Client>, String> {
        lock(&self.shared.clients).get(&handle).cloned().ok_or_else(|| "unknown client".into())
    }

    pub(crate) fn client_reconnect(&self, handle: u32) -> Result<(), String> {
        self.client(handle)?.reconnect_now();
        Ok(())
    }

    pub(crate) fn client_auto_reconnect(&self, handle: u32, min_ms: f64, max_ms: f64) -> Result<(), String> {
        self.client(handle)?.auto_reconnect(min_ms, max_ms);
        Ok(())
    }

    pub(crate) fn client_disconnect(&self, handle: u32) -> Result<(), String> {
        self.client(handle)?.disconnect();
        Ok(())
    }

    /// The application dropped the client object: free it.
    pub(crate) fn client_release(&self, handle: u32) {
        if let Ok(c) = self.client(handle) {
            c.release();
        }
    }

    pub(crate) fn link(&self, handle: u32) -> Result<Arc<Link>, String> {
        self.shared.link(handle).ok_or_else(|| "connection is closed".into())
    }

    /// `socket.end()`: flush, then close.
    pub(crate) fn end(&self, handle: u32) {
        if let Some(t) = self.shared.link(handle).and_then(|l| l.transport()) {
            t.end();
        }
    }

    /// `socket.destroy()`: close now.
    pub(crate) fn destroy(&self, handle: u32) {
        let Some(link) = self.shared.link(handle) else { return };
        cork::flush(&link);
        if let Some(t) = link.transport() {
            t.destroy();
        }
    }
}
