//! The defaults JavaScript needs to know, read from where Rust defines them,
//! so that `lib/` writes none of them again: what it shows on its objects
//! (a `redisStore()`'s fields, a server's `keepAliveInitialDelay`) and the
//! limits `send()` and `set()` check before anything reaches Rust. Defaults
//! that only Rust applies (session TTL, `maxSessions`, reconnect backoff,
//! ...) are left out: JavaScript omits the option and Rust fills it in.

use crate::engine::{redis_store, transport};
use crate::protocol::framing::MAX_DEPTH_LIMIT;
use crate::protocol::peer::Config;
use napi_derive::napi;

/// Numbers cross as f64, which holds every one of these exactly.
#[napi(object)]
pub(super) struct Defaults {
    /// `redisStore({ url })`.
    pub redis_url: String,
    /// `redisStore({ prefix })`: where sessions go.
    pub redis_prefix: String,
    /// `redisStore({ auxPrefix })`: where delivery state goes.
    pub redis_aux_prefix: String,
    /// `redisStore({ ttl })`, in seconds.
    pub redis_ttl: f64,
    /// `redisStore({ maxQueuedBytes })`: saves waiting out a Redis outage.
    pub redis_max_queued_bytes: f64,
    /// Options `maxMessageSize`, `maxArgs`, `maxDepth`, `maxSessionBytes`.
    pub max_message_size: f64,
    pub max_args: f64,
    pub max_depth: f64,
    pub max_session_bytes: f64,
    /// The highest `maxDepth` accepted.
    pub max_depth_limit: f64,
    /// TCP keepalive's idle time on native sockets, in ms.
    pub keep_alive_initial_delay: f64,
}

#[napi(catch_unwind)]
pub(super) fn defaults() -> Defaults {
    let peer = Config::default();
    Defaults {
        redis_url: redis_store::DEFAULT_URL.to_owned(),
        redis_prefix: redis_store::DEFAULT_PREFIX.to_owned(),
        redis_aux_prefix: redis_store::DEFAULT_AUX_PREFIX.to_owned(),
        redis_ttl: redis_store::DEFAULT_TTL.as_secs_f64(),
        redis_max_queued_bytes: redis_store::DEFAULT_MAX_QUEUED_BYTES as f64,
        max_message_size: peer.max_message_size as f64,
        max_args: peer.max_args as f64,
        max_depth: peer.max_depth as f64,
        max_session_bytes: peer.max_session_bytes as f64,
        max_depth_limit: MAX_DEPTH_LIMIT as f64,
        keep_alive_initial_delay: transport::KEEPALIVE_TIME.as_millis() as f64,
    }
}
