//! napi-rs bindings: type conversion and the wake-up into JavaScript, nothing
//! else. Events cross as one JSON text per batch (`take_events`); calls cross
//! once per batch of sends (`write`). Every export catches panics, so a bug
//! surfaces as a JS exception rather than aborting Node.

mod defaults;
mod uv;

use crate::engine::server::StoreChoice;
use crate::engine::tls::{TlsAcceptor, TlsConnector, TlsOptions};
use crate::engine::transport::Addresses;
use crate::engine::{js_store, redis_store, store};
use crate::engine::{ClientOptions, Connector, Endpoint, Engine, ListenOptions, ServerOptions};
use crate::protocol::framing::MAX_DEPTH_LIMIT;
use crate::protocol::peer::Config;
use crate::protocol::session;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static ENGINE: OnceLock<Engine> = OnceLock::new();

/// Weak: the wake-up function never keeps Node's event loop alive; index.js
/// holds a ref'd handle for each server and client that should.
type Wake = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

fn engine() -> Result<&'static Engine> {
    ENGINE.get().ok_or_else(|| Error::from_reason("uhura: init() was not called"))
}

fn js_err(e: String) -> Error {
    Error::from_reason(e)
}

/// The Node environment the engine delivers to. Events reach JavaScript
/// through one ThreadsafeFunction of one environment, so a second
/// environment (a worker thread) cannot share it.
static HOME_ENV: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[napi(catch_unwind)]
pub(crate) fn init(env: Env, wake: Wake) -> Result<()> {
    let this_env = env.raw() as usize;
    match HOME_ENV.compare_exchange(
        0,
        this_env,
        std::sync::atomic::Ordering::AcqRel,
        std::sync::atomic::Ordering::Acquire,
    ) {
        Ok(_) => {}
        Err(home) if home == this_env => return Ok(()),
        Err(_) => return Err(Error::from_reason(
            "uhura: the addon serves one Node environment per process; it cannot be loaded in several worker threads",
        )),
    }
    if ENGINE.get().is_some() {
        return Ok(());
    }
    let wake = Arc::new(wake);
    let engine = Engine::new(move || {
        wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    })
    .map_err(|e| Error::from_reason(format!("uhura: cannot start the runtime: {e}")))?;
    let _ = ENGINE.set(engine);
    Ok(())
}

/// All events delivered since the last call, as a JSON array text. Calling
/// it again means the previous batch was handled.
#[napi(catch_unwind)]
pub(crate) fn take_events() -> Result<Option<String>> {
    Ok(engine()?.take_events())
}

/// Every batch taken so far has been dispatched: their acks may go out.
#[napi(catch_unwind)]
pub(crate) fn events_handled() -> Result<()> {
    engine()?.events_handled();
    Ok(())
}

/// Options of the protocol state machine, shared by clients and servers.
#[napi(object)]
pub(crate) struct PeerOptions {
    pub max_message_size: Option<f64>,
    /// Arguments per event, after its name.
    pub max_args: Option<f64>,
    /// Nesting depth of an event's argument array (the array is level 1).
    pub max_depth: Option<f64>,
    pub max_queue_length: Option<f64>,
    pub max_queue_bytes: Option<f64>,
    /// ms; absent: no ack timeout.
    pub ack_timeout: Option<f64>,
    /// ms; 0 turns heartbeats off.
    pub heartbeat_interval: Option<f64>,
    /// ms.
    pub heartbeat_timeout: Option<f64>,
    /// ms.
    pub handshake_timeout: Option<f64>,
    /// Server: bytes of events held before the handshake completes.
    pub max_handshake_bytes: Option<f64>,
    /// Largest session, in bytes of JSON.
    pub max_session_bytes: Option<f64>,
    /// Client: the resume secret of the session it starts with.
    pub resume_secret: Option<String>,
    /// Offer our protocol extensions to peers (default true).
    pub extensions: Option<bool>,
    /// Server: the `cookie` field of new sessions, as JSON.
    pub cookie: Option<String>,
}

fn count(v: Option<f64>) -> Option<usize> {
    v.filter(|n| *n >= 0.0).map(|n| if n.is_finite() { n as usize } else { usize::MAX })
}

fn peer_config(o: Option<PeerOptions>) -> Result<Config> {
    let mut c = Config::default();
    let Some(o) = o else { return Ok(c) };
    if let Some(n) = count(o.max_message_size).filter(|n| *n >= 1) {
        c.max_message_size = n;
    }
    if let Some(n) = count(o.max_args) {
        c.max_args = n;
    }
    if let Some(n) = count(o.max_depth).filter(|n| *n >= 1) {
        // Session values are plain serde_json values, whose drop, clone and
        // serialisation recurse: beyond this they could exhaust a 2 MiB stack.
        c.max_depth = n.min(crate::protocol::framing::MAX_DEPTH_LIMIT);
    }
    if let Some(n) = count(o.max_queue_length) {
        c.max_queue_length = n;
    }
    if let Some(n) = count(o.max_queue_bytes) {
        c.max_queue_bytes = n;
    }
    if let Some(t) = millis(o.ack_timeout) {
        c.ack_timeout = Some(t);
    }
    if o.heartbeat_interval.is_some() {
        // Present but zero (or nonsense) turns heartbeats off.
        c.heartbeat_interval = millis(o.heartbeat_interval);
    }
    if let Some(t) = millis(o.heartbeat_timeout) {
        c.heartbeat_timeout = t;
    }
    if let Some(t) = millis(o.handshake_timeout) {
        c.handshake_timeout = t;
    }
    if let Some(n) = count(o.max_handshake_bytes) {
        c.max_handshake_bytes = n;
    }
    if let Some(n) = count(o.max_session_bytes) {
        c.max_session_bytes = n;
    }
    c.resume_secret = o.resume_secret;
    if let Some(e) = o.extensions {
        c.extensions = e;
    }
    if let Some(cookie) = o.cookie.as_deref() {
        // The same JSON.parse-compatible parser as session data (serde_json's own would
        // read a `$serde_json::private::RawValue` key as an embedded raw value).
        c.cookie = std::sync::Arc::new(
            session::parse_value(cookie, MAX_DEPTH_LIMIT)
                .map_err(|e| Error::new(Status::InvalidArg, format!("uhura: bad cookie option: {e:?}")))?,
        );
    }
    Ok(c)
}

/// TLS options with Node's names; PEM text as Buffers (lib/options.js converts strings).
#[napi(object)]
pub(crate) struct JsTlsOptions {
    pub key: Option<Buffer>,
    pub cert: Option<Buffer>,
    pub ca: Option<Vec<Buffer>>,
    pub request_cert: Option<bool>,
    pub reject_unauthorized: Option<bool>,
    pub servername: Option<String>,
}

fn tls_options(o: JsTlsOptions) -> TlsOptions {
    TlsOptions {
        key: o.key.map(|b| b.to_vec()),
        cert: o.cert.map(|b| b.to_vec()),
        ca: o.ca.unwrap_or_default().into_iter().map(|b| b.to_vec()).collect(),
        request_cert: o.request_cert.unwrap_or(false),
        reject_unauthorized: o.reject_unauthorized.unwrap_or(true),
        servername: o.servername,
    }
}

#[napi(object)]
pub(crate) struct JsServerOptions {
    pub peer: Option<PeerOptions>,
    /// ms a dropped connection's pending events wait for its session; 0: not at all.
    pub resume_window: Option<f64>,
    pub tls: Option<JsTlsOptions>,
    /// "memory" (default), "js" (a connect-style JS store) or "redis".
    pub store: Option<String>,
    /// Idle expiry of the memory store, in ms.
    pub session_ttl: Option<f64>,
    /// Cap on the memory store's number of sessions.
    pub max_sessions: Option<f64>,
    /// The default store's cap on the bytes of all sessions.
    pub max_store_bytes: Option<f64>,
    /// How long a JS store may take to answer, in ms.
    pub store_timeout: Option<f64>,
    pub redis_url: Option<String>,
    pub redis_prefix: Option<String>,
    /// Where the Redis store keeps delivery state (default "uhura:").
    pub redis_aux_prefix: Option<String>,
    /// Redis key expiry, in seconds.
    pub redis_ttl: Option<f64>,
}

/// A positive number of milliseconds from JavaScript, saturated.
fn millis(v: Option<f64>) -> Option<Duration> {
    v.and_then(crate::engine::timers::millis)
}

fn store_choice(o: &JsServerOptions) -> Result<StoreChoice> {
    Ok(match o.store.as_deref().unwrap_or("memory") {
        "memory" => StoreChoice::Memory {
            ttl: millis(o.session_ttl).unwrap_or(store::DEFAULT_SESSION_TTL),
            max_sessions: o.max_sessions.filter(|n| *n >= 1.0).map_or(store::DEFAULT_MAX_SESSIONS, |n| n as usize),
            max_bytes: count(o.max_store_bytes).unwrap_or(crate::engine::server::DEFAULT_MAX_STORE_BYTES),
        },
        "js" => StoreChoice::Js { timeout: millis(o.store_timeout).unwrap_or(js_store::DEFAULT_TIMEOUT) },
        "redis" => {
            let url = o.redis_url.as_deref().unwrap_or(redis_store::DEFAULT_URL);
            let ttl = o.redis_ttl.and_then(|s| crate::engine::timers::millis(s * 1000.0));
            let prefixes = (o.redis_prefix.clone(), o.redis_aux_prefix.clone());
            let store = redis_store::RedisStore::open(url, prefixes.0, prefixes.1, ttl)
                .map_err(|e| Error::new(Status::InvalidArg, format!("uhura: bad redis store options: {e}")))?;
            StoreChoice::Custom(Arc::new(store))
        }
        other => return Err(Error::new(Status::InvalidArg, format!("uhura: unknown store kind {other:?}"))),
    })
}

#[napi(catch_unwind)]
pub(crate) fn create_server(mut options: JsServerOptions) -> Result<u32> {
    let store = store_choice(&options)?;
    let tls = match options.tls.take() {
        Some(t) => Some(Arc::new(
            TlsAcceptor::new(&tls_options(t))
                .map_err(|e| Error::new(Status::InvalidArg, format!("uhura: bad tls options: {e}")))?,
        )),
        None => None,
    };
    let peer = peer_config(options.peer.take())?;
    let mut server = ServerOptions { peer, store, tls, ..ServerOptions::default() };
    if let Some(w) = options.resume_window.filter(|w| w.is_finite() && *w >= 0.0) {
        server.resume_window = millis(Some(w)).unwrap_or(Duration::ZERO);
    }
    Ok(engine()?.create_server(server))
}

/// A TCP address (`host`, `port`) or a Unix socket (`path`).
#[napi(object)]
pub(crate) struct JsEndpoint {
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
}

fn endpoint(e: JsEndpoint) -> Result<Endpoint> {
    if let Some(path) = e.path {
        return Ok(Endpoint::Unix { path: path.into() });
    }
    let port = e.port.unwrap_or(0);
    let port = u16::try_from(port)
        .map_err(|_| Error::new(Status::InvalidArg, format!("uhura: port should be >= 0 and < 65536, got {port}")))?;
    Ok(Endpoint::Tcp { host: e.host.filter(|h| !h.is_empty()), port })
}

#[napi(catch_unwind)]
/// Returns the number the `LISTENING` of this listen() carries.
pub(crate) fn listen(server: u32, at: JsEndpoint, backlog: Option<u32>) -> Result<u32> {
    engine()?.listen(server, ListenOptions { endpoint: endpoint(at)?, backlog }).map_err(js_err)
}

#[napi(catch_unwind)]
pub(crate) fn close_server(server: u32) -> Result<()> {
    engine()?.close_server(server);
    Ok(())
}

/// net.Server's getConnections(): connections open now; null once the server is gone.
#[napi(catch_unwind)]
pub(crate) fn server_connections(server: u32) -> Result<Option<u32>> {
    Ok(engine()?.server_connections(server).map(|n| n.min(u32::MAX as usize) as u32))
}

/// net.Server's maxConnections; a negative or missing value: no limit.
#[napi(catch_unwind)]
pub(crate) fn set_max_connections(server: u32, max: Option<f64>) -> Result<()> {
    let max = max.filter(|m| *m >= 0.0 && m.is_finite()).map(|m| m as usize);
    engine()?.set_max_connections(server, max);
    Ok(())
}

#[napi(object)]
pub(crate) struct JsClientOptions {
    /// Addresses tried in turn; empty with `js` set.
    pub servers: Vec<JsEndpoint>,
    /// Streams come from a JavaScript `createConnection` factory.
    pub js: Option<bool>,
    pub tls: Option<JsTlsOptions>,
    pub peer: Option<PeerOptions>,
}

#[napi(catch_unwind)]
pub(crate) fn create_client(mut options: JsClientOptions) -> Result<u32> {
    let connector = if options.js.unwrap_or(false) {
        Connector::Js
    } else {
        let endpoints = options.servers.into_iter().map(endpoint).collect::<Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            return Err(Error::new(Status::InvalidArg, "uhura: a client needs at least one server address"));
        }
        let tls = match options.tls {
            Some(t) => Some(Arc::new(
                TlsConnector::new(&tls_options(t))
                    .map_err(|e| Error::new(Status::InvalidArg, format!("uhura: bad tls options: {e}")))?,
            )),
            None => None,
        };
        Connector::Native { endpoints, tls }
    };
    Ok(engine()?.create_client(ClientOptions { connector, peer: peer_config(options.peer.take())? }))
}

/// Addresses of a JavaScript stream, for `.socket`-style reporting.
#[napi(object)]
pub(crate) struct JsAddresses {
    pub remote_address: Option<String>,
    pub remote_port: Option<u32>,
    pub local_address: Option<String>,
    pub local_port: Option<u32>,
}

fn addresses(a: Option<JsAddresses>) -> Addresses {
    let parse = |ip: Option<String>, port: Option<u32>| -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = ip?.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, u16::try_from(port?).ok()?))
    };
    match a {
        Some(a) => Addresses {
            remote: parse(a.remote_address, a.remote_port),
            local: parse(a.local_address, a.local_port),
            direct: None,
        },
        None => Addresses::default(),
    }
}

/// A server created with a JavaScript factory got a stream: returns the connection handle.
#[napi(catch_unwind)]
pub(crate) fn adopt_stream(server: u32, addrs: Option<JsAddresses>) -> Result<u32> {
    engine()?.adopt_js_stream(server, addresses(addrs)).map_err(js_err)
}

/// A client's `createConnection` factory called back with a stream.
#[napi(catch_unwind)]
pub(crate) fn client_opened(client: u32, addrs: Option<JsAddresses>) -> Result<()> {
    engine()?.client_js_opened(client, Ok(addresses(addrs))).map_err(js_err)
}

/// A client's `createConnection` factory called back with an error.
#[napi(catch_unwind)]
pub(crate) fn client_open_failed(client: u32, message: String) -> Result<()> {
    let _ = engine()?.client_js_opened(client, Err(message));
    Ok(())
}

/// Bytes read by a JavaScript stream; false means pause it until told to resume.
#[napi(catch_unwind)]
pub(crate) fn feed(handle: u32, data: Buffer) -> Result<bool> {
    Ok(engine()?.pipe_feed(handle, &data))
}

#[napi(catch_unwind)]
pub(crate) fn feed_end(handle: u32) -> Result<()> {
    engine()?.pipe_end(handle);
    Ok(())
}

/// Bytes to write to a JavaScript stream.
#[napi(catch_unwind)]
pub(crate) fn take_output(handle: u32) -> Result<Buffer> {
    Ok(engine()?.pipe_take(handle).into())
}

#[napi(catch_unwind)]
pub(crate) fn client_start(client: u32) -> Result<()> {
    engine()?.start_client(client).map_err(js_err)
}

#[napi(catch_unwind)]
pub(crate) fn client_reconnect(client: u32) -> Result<()> {
    engine()?.client_reconnect(client).map_err(js_err)
}

#[napi(catch_unwind)]
pub(crate) fn client_auto_reconnect(client: u32, min_ms: f64, max_ms: f64) -> Result<()> {
    engine()?.client_auto_reconnect(client, min_ms, max_ms).map_err(js_err)
}

#[napi(catch_unwind)]
pub(crate) fn client_disconnect(client: u32) -> Result<()> {
    engine()?.client_disconnect(client).map_err(js_err)
}

/// The JavaScript client object was garbage-collected: free its Rust side.
#[napi(catch_unwind)]
pub(crate) fn client_release(client: u32) -> Result<()> {
    engine()?.client_release(client);
    Ok(())
}

/// A batch of sends and sets, one per line (see `Link::write_lines`).
#[napi(catch_unwind)]
pub(crate) fn write(handle: u32, lines: String) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.write_lines(handle, &lines).map_err(js_err)
}

#[napi(catch_unwind)]
pub(crate) fn write_raw(handle: u32, data: Buffer) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.write_raw(&data);
    Ok(())
}

#[napi(catch_unwind)]
pub(crate) fn set_max_queue_length(handle: u32, n: f64) -> Result<()> {
    let link = engine()?.link(handle).map_err(js_err)?;
    let n = if n.is_finite() && n >= 0.0 { n as usize } else { usize::MAX };
    crate::engine::delivery::lock(&link.peer).set_max_queue_length(n);
    Ok(())
}

#[napi(catch_unwind)]
pub(crate) fn end(handle: u32) -> Result<()> {
    engine()?.end(handle);
    Ok(())
}

#[napi(catch_unwind)]
pub(crate) fn destroy(handle: u32) -> Result<()> {
    engine()?.destroy(handle);
    Ok(())
}

#[napi(catch_unwind)]
pub(crate) fn invalidate_session(handle: u32) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.invalidate_session();
    Ok(())
}

/// A JavaScript store's answer to request `req`: the session JSON for `get`, or an error message.
#[napi(catch_unwind)]
pub(crate) fn store_reply(server: u32, req: f64, error: Option<String>, session: Option<String>) -> Result<()> {
    let result = match error {
        Some(e) => Err(e),
        None => Ok(session),
    };
    engine()?.store_reply(server, req as u64, result);
    Ok(())
}

/// Reads native sockets on Node's loop from now on (see `uv.rs`); off with
/// UHURA_NODE_READS=0.
#[napi(catch_unwind)]
pub(crate) fn enable_node_reads(on: bool) -> Result<()> {
    engine()?.enable_external_reads(on);
    Ok(())
}

/// WATCH: watch link `handle`'s socket on this (the JS) thread.
#[napi(catch_unwind)]
pub(crate) fn watch(env: Env, handle: u32, transport: f64) -> Result<()> {
    let Ok(link) = engine()?.link(handle) else { return Ok(()) };
    let mut uv_loop = std::ptr::null_mut();
    // SAFETY: env is the current, valid environment of this call.
    let status = unsafe { napi::sys::napi_get_uv_event_loop(env.raw(), &mut uv_loop) };
    if status != napi::sys::Status::napi_ok || uv_loop.is_null() {
        return Err(Error::from_reason("uhura: no event loop"));
    }
    uv::watch(uv_loop as *mut std::ffi::c_void, &link, transport as u64).map_err(js_err)
}

/// UNWATCH: stop watching the socket of `transport`.
#[napi(catch_unwind)]
pub(crate) fn unwatch(transport: f64) -> Result<()> {
    uv::unwatch(transport as u64);
    Ok(())
}

/// Which `debug` namespaces are on (lib/debug.js): bit 0 `uhura:protocol`,
/// 1 `uhura:connection`, 2 `uhura:reconnect`, 3 `uhura:session`.
#[napi(catch_unwind)]
pub(crate) fn set_debug(bits: u32) -> Result<()> {
    crate::engine::diag::set(bits);
    Ok(())
}
