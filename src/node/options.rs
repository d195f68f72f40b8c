//! JavaScript options to engine settings: numbers saturated, absent
//! fields left at the engine's defaults, bad values a thrown error.

use crate::engine::redis_conn::{Connector, RedisTarget, RedisTls};
use crate::engine::server::StoreChoice;
use crate::engine::tls::TlsOptions;
use crate::engine::transport::Addresses;
use crate::engine::{js_store, redis_store, store, Endpoint};
use crate::protocol::framing::MAX_DEPTH_LIMIT;
use crate::protocol::json;
use crate::protocol::peer::Config;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::sync::Arc;
use std::time::Duration;

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

pub(super) fn count(v: Option<f64>) -> Option<usize> {
    v.filter(|n| *n >= 0.0).map(|n| if n.is_finite() { n as usize } else { usize::MAX })
}

pub(super) fn peer_config(o: Option<PeerOptions>) -> Result<Config> {
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
        c.cookie = Arc::new(
            json::parse_value(cookie, MAX_DEPTH_LIMIT)
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

pub(super) fn tls_options(o: JsTlsOptions) -> TlsOptions {
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
    /// Redis Cluster node URLs (instead of `redis_url`).
    pub redis_cluster: Option<Vec<String>>,
    /// `rediss://` options: `ca`, `cert`, `key` (the rest is not read).
    pub redis_tls: Option<JsTlsOptions>,
    /// Bound on the bytes of session saves queued while Redis is unavailable.
    pub redis_max_queued_bytes: Option<f64>,
}

/// A positive number of milliseconds from JavaScript, saturated.
pub(super) fn millis(v: Option<f64>) -> Option<Duration> {
    v.and_then(crate::engine::timers::millis)
}

pub(super) fn store_choice(o: &JsServerOptions) -> Result<StoreChoice> {
    Ok(match o.store.as_deref().unwrap_or("memory") {
        "memory" => StoreChoice::Memory {
            ttl: millis(o.session_ttl).unwrap_or(store::DEFAULT_SESSION_TTL),
            max_sessions: o.max_sessions.filter(|n| *n >= 1.0).map_or(store::DEFAULT_MAX_SESSIONS, |n| n as usize),
            max_bytes: count(o.max_store_bytes).unwrap_or(crate::engine::server::DEFAULT_MAX_STORE_BYTES),
        },
        "js" => StoreChoice::Js { timeout: millis(o.store_timeout).unwrap_or(js_store::DEFAULT_TIMEOUT) },
        "redis" => {
            let url = o.redis_url.as_deref().unwrap_or(redis_store::DEFAULT_URL);
            let target = match &o.redis_cluster {
                Some(nodes) => RedisTarget::Cluster(nodes.clone()),
                None => RedisTarget::Single(url.to_owned()),
            };
            let tls = o.redis_tls.as_ref().map(|t| RedisTls {
                ca: t.ca.iter().flatten().map(|b| b.to_vec()).collect(),
                cert: t.cert.as_ref().map(|b| b.to_vec()),
                key: t.key.as_ref().map(|b| b.to_vec()),
            });
            let ttl = o.redis_ttl.and_then(|s| crate::engine::timers::millis(s * 1000.0));
            let prefixes = (o.redis_prefix.clone(), o.redis_aux_prefix.clone());
            let bad = |e: String| Error::new(Status::InvalidArg, format!("uhura: bad redis store options: {e}"));
            let conn = Connector::new(&target, tls.as_ref()).map_err(bad)?;
            let mut store = redis_store::RedisStore::open_via(conn, prefixes.0, prefixes.1, ttl).map_err(bad)?;
            if let Some(max) = count(o.redis_max_queued_bytes) {
                store = store.with_max_queued_bytes(max);
            }
            StoreChoice::Redis(Arc::new(store))
        }
        other => return Err(Error::new(Status::InvalidArg, format!("uhura: unknown store kind {other:?}"))),
    })
}

/// A TCP address (`host`, `port`) or a Unix socket (`path`).
#[napi(object)]
pub(crate) struct JsEndpoint {
    pub host: Option<String>,
    pub port: Option<u32>,
    pub path: Option<String>,
}

pub(super) fn endpoint(e: JsEndpoint) -> Result<Endpoint> {
    if let Some(path) = e.path {
        return Ok(Endpoint::Unix { path: path.into() });
    }
    let port = e.port.unwrap_or(0);
    let port = u16::try_from(port)
        .map_err(|_| Error::new(Status::InvalidArg, format!("uhura: port should be >= 0 and < 65536, got {port}")))?;
    Ok(Endpoint::Tcp { host: e.host.filter(|h| !h.is_empty()), port })
}

/// Addresses of a JavaScript stream, for `.socket`-style reporting.
#[napi(object)]
pub(crate) struct JsAddresses {
    pub remote_address: Option<String>,
    pub remote_port: Option<u32>,
    pub local_address: Option<String>,
    pub local_port: Option<u32>,
}

pub(super) fn addresses(a: Option<JsAddresses>) -> Addresses {
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
