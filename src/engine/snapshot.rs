//! What operators read (`server.metrics()`, `server.connections()`, the
//! admin endpoint's `/sessions`, `client.stats()`): the counters of
//! `metrics.rs` together with gauges read from the state itself, as JSON.
//! Only a scrape pays for this: it takes each link's peer lock once.

use super::delivery::lock;
use super::link::Link;
use super::metrics::{now_ms, LinkMetrics};
use super::server::Server;
use super::Shared;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// The links of `server`, each once (a resumed session's old handles route
/// to the link that took it over), live or kept for a resume.
fn links_of(shared: &Shared, server: &Server) -> Vec<Arc<Link>> {
    lock(&shared.links)
        .iter()
        .filter(|(h, l)| l.server == Some(server.handle) && **h == l.handle)
        .map(|(_, l)| l.clone())
        .collect()
}

/// What one link's peer and transport say now.
struct LinkState {
    session: Option<String>,
    /// '0.0.x' (array mode), '0.1.x' (object mode) or 'uhura' (ours, with
    /// extensions); none before the handshake.
    mode: Option<&'static str>,
    queued: usize,
    unacked: usize,
    pending_bytes: usize,
    open: bool,
    remote: Option<std::net::SocketAddr>,
    /// The socket of a plain TCP or Unix transport, for the kernel's
    /// round-trip estimate (read in `traffic`, not under the peer lock).
    direct: Option<std::sync::Arc<dyn crate::engine::transport::DirectWrite>>,
}

fn state_of(link: &Link) -> LinkState {
    let peer = lock(&link.peer);
    let mode = peer.is_ready().then(|| match (peer.extended(), peer.object_mode()) {
        (true, _) => "uhura",
        (false, true) => "0.1.x",
        (false, false) => "0.0.x",
    });
    let transport = link.transport();
    LinkState {
        // A client's peer knows its session id from the session it was given.
        session: peer
            .session_id()
            .map(str::to_owned)
            .or_else(|| peer.session().get("sessionID").and_then(serde_json::Value::as_str).map(str::to_owned)),
        mode,
        queued: peer.queued_len(),
        unacked: peer.unacked_len(),
        pending_bytes: peer.pending_bytes(),
        open: transport.is_some(),
        remote: transport.as_ref().and_then(|t| lock(&t.addresses).remote),
        direct: transport.and_then(|t| t.direct_socket()),
    }
}

/// A time in ms since the epoch, or null for 0 (never).
fn ms(at: u64) -> Value {
    if at == 0 {
        Value::Null
    } else {
        at.into()
    }
}

/// The fields a connection and a client share.
fn traffic(m: &LinkMetrics, s: &LinkState, out: &mut Map<String, Value>) {
    out.insert("session".into(), s.session.clone().into());
    out.insert("mode".into(), s.mode.into());
    out.insert("connectedSince".into(), ms(m.connected_since.load(Relaxed)));
    out.insert("lastActivity".into(), ms(m.last_activity.load(Relaxed)));
    // Heartbeats are one-way (docs/PROTOCOL.md §9), so the round trip is
    // the kernel's estimate for the TCP socket, in ms.
    let rtt_us = s.direct.as_deref().and_then(crate::engine::transport::kernel_rtt_us);
    out.insert("rtt".into(), rtt_us.map_or(Value::Null, |us| json!(f64::from(us) / 1000.0)));
    out.insert("pendingEvents".into(), (s.queued + s.unacked).into());
    out.insert("pendingBytes".into(), s.pending_bytes.into());
    out.insert("eventsIn".into(), m.events_in.load(Relaxed).into());
    out.insert("eventsOut".into(), m.events_out.load(Relaxed).into());
    out.insert("bytesIn".into(), m.bytes_in.load(Relaxed).into());
    out.insert("bytesOut".into(), m.bytes_out.load(Relaxed).into());
}

/// `server.metrics()`: totals since the server was created, and gauges now.
pub(crate) fn server_metrics(shared: &Shared, server: &Server) -> Value {
    let m = &server.metrics;
    let (mut pending, mut pending_bytes, mut unacked) = (0, 0, 0);
    for link in links_of(shared, server) {
        let s = state_of(&link);
        pending += s.queued + s.unacked;
        pending_bytes += s.pending_bytes;
        unacked += s.unacked;
    }
    let (by_code, recent) = m.errors();
    let recent: Vec<Value> = recent
        .into_iter()
        .map(|e| json!({"at": e.at, "connection": e.connection, "code": e.code, "message": e.message}))
        .collect();
    json!({
        "connections": {
            "current": server.connections(),
            "accepted": m.accepted.load(Relaxed),
            "refused": m.refused.load(Relaxed),
        },
        "handshakes": { "new": m.handshakes_new.load(Relaxed), "resumed": m.handshakes_resumed.load(Relaxed) },
        "sessions": {
            "stored": server.sessions_stored(),
            "retained": server.retention.as_ref().map_or(0, |r| r.len()),
        },
        "events": { "in": m.events_in.load(Relaxed), "out": m.events_out.load(Relaxed) },
        "bytes": { "in": m.bytes_in.load(Relaxed), "out": m.bytes_out.load(Relaxed) },
        "pending": { "events": pending, "bytes": pending_bytes },
        "acks": { "pending": unacked },
        "drops": m.drops.load(Relaxed),
        "heartbeatTimeouts": m.heartbeat_timeouts.load(Relaxed),
        "errors": by_code,
        "recentErrors": recent,
        "store": { "operations": m.store_operations.load(Relaxed), "failures": m.store_failures.load(Relaxed) },
    })
}

/// `server.connections()`: one entry per open connection, by handle.
pub(crate) fn server_connections(shared: &Shared, server: &Server) -> Value {
    let mut links = links_of(shared, server);
    links.sort_by_key(|l| l.handle);
    let list = links
        .iter()
        .filter_map(|link| {
            let s = state_of(link);
            if !s.open {
                return None;
            }
            let mut c = Map::new();
            c.insert("id".into(), link.handle.into());
            c.insert("remoteAddress".into(), s.remote.map(|a| a.ip().to_canonical().to_string()).into());
            c.insert("remotePort".into(), s.remote.map(|a| a.port()).into());
            traffic(&link.metrics, &s, &mut c);
            Some(Value::Object(c))
        })
        .collect();
    Value::Array(list)
}

/// The admin endpoint's `/sessions`: the sessions of open connections
/// (`connected`) and of dropped ones waiting for a resume (`retained`).
pub(crate) fn server_sessions(shared: &Shared, server: &Server) -> Value {
    let mut out = Vec::new();
    let mut links = links_of(shared, server);
    links.sort_by_key(|l| l.handle);
    for link in links {
        let s = state_of(&link);
        if let (true, Some(id)) = (s.open, s.session) {
            out.push(json!({
                "id": id, "state": "connected", "connection": link.handle,
                "pendingEvents": s.queued + s.unacked, "retainedUntil": null,
            }));
        }
    }
    if let Some(r) = &server.retention {
        let (now, wall) = (Instant::now(), now_ms());
        let mut kept = r.kept();
        kept.sort_by_key(|k| k.2);
        for (id, link, until) in kept {
            let s = state_of(&link);
            let until = wall + until.saturating_duration_since(now).as_millis() as u64;
            out.push(json!({
                "id": id, "state": "retained", "connection": link.handle,
                "pendingEvents": s.queued + s.unacked, "retainedUntil": until,
            }));
        }
    }
    Value::Array(out)
}

/// `client.stats()`.
pub(crate) fn client_stats(link: &Link) -> Value {
    let s = state_of(link);
    let mut c = Map::new();
    c.insert("connected".into(), (s.open && s.mode.is_some()).into());
    c.insert("reconnects".into(), link.metrics.connects.load(Relaxed).saturating_sub(1).into());
    traffic(&link.metrics, &s, &mut c);
    Value::Object(c)
}
