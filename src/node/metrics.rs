//! The operator views of `snapshot.rs` for JavaScript, as JSON text:
//! `server.metrics()`, `server.connections()`, the admin endpoint's
//! `/sessions`, `client.stats()`. Read on demand; nothing here runs per event.

use super::engine;
use crate::engine::View;
use napi::bindgen_prelude::*;
use napi_derive::napi;

/// A server's view (0 metrics, 1 connections, 2 sessions) as JSON text;
/// null once the server is gone.
#[napi(catch_unwind)]
pub(crate) fn server_snapshot(server: u32, view: u32) -> Result<Option<String>> {
    let view = match view {
        0 => View::Metrics,
        1 => View::Connections,
        2 => View::Sessions,
        _ => return Err(Error::new(Status::InvalidArg, format!("uhura: no view {view}"))),
    };
    Ok(engine()?.server_snapshot(server, view).map(|v| v.to_string()))
}

/// A client's stats as JSON text; null once the client is gone.
#[napi(catch_unwind)]
pub(crate) fn client_stats(client: u32) -> Result<Option<String>> {
    Ok(engine()?.client_stats(client).map(|v| v.to_string()))
}
