//! napi-rs bindings: type conversion and the wake-up into JavaScript, nothing
//! else. Events cross as one JSON text per batch (`take_events`); calls cross
//! once per batch of sends (`write`). Every export catches panics, so a bug
//! surfaces as a JS exception rather than aborting Node.

use crate::engine::{ClientOptions, Engine, ListenOptions, ServerOptions};
use crate::protocol::peer::Config;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::sync::{Arc, OnceLock};

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

#[napi(catch_unwind)]
pub fn init(wake: Wake) -> Result<()> {
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

/// All events delivered since the last call, as a JSON array text.
#[napi(catch_unwind)]
pub fn take_events() -> Result<Option<String>> {
    Ok(engine()?.take_events())
}

#[napi(object)]
pub struct PeerOptions {
    pub max_message_size: Option<f64>,
    pub max_queue_length: Option<f64>,
}

fn peer_config(o: Option<PeerOptions>) -> Config {
    let mut c = Config::default();
    if let Some(o) = o {
        if let Some(n) = o.max_message_size.filter(|n| *n >= 1.0) {
            c.max_message_size = n as usize;
        }
        if let Some(n) = o.max_queue_length.filter(|n| *n >= 0.0) {
            c.max_queue_length = if n.is_finite() { n as usize } else { usize::MAX };
        }
    }
    c
}

#[napi(catch_unwind)]
pub fn create_server(options: Option<PeerOptions>) -> Result<u32> {
    Ok(engine()?.create_server(ServerOptions { peer: peer_config(options), store: None }))
}

#[napi(catch_unwind)]
pub fn listen(server: u32, host: Option<String>, port: u32, backlog: Option<u32>) -> Result<()> {
    let port = u16::try_from(port).map_err(|_| Error::new(Status::InvalidArg, format!("port should be >= 0 and < 65536. Received {port}")))?;
    engine()?.listen(server, ListenOptions { host, port, backlog }).map_err(js_err)
}

#[napi(catch_unwind)]
pub fn close_server(server: u32) -> Result<()> {
    engine()?.close_server(server);
    Ok(())
}

#[napi(catch_unwind)]
pub fn create_client(host: Option<String>, port: u32, options: Option<PeerOptions>) -> Result<u32> {
    let port = u16::try_from(port).map_err(|_| Error::new(Status::InvalidArg, format!("port should be >= 0 and < 65536. Received {port}")))?;
    Ok(engine()?.create_client(ClientOptions { host, port, peer: peer_config(options) }))
}

#[napi(catch_unwind)]
pub fn client_reconnect(client: u32) -> Result<()> {
    engine()?.client_reconnect(client).map_err(js_err)
}

#[napi(catch_unwind)]
pub fn client_auto_reconnect(client: u32, min_ms: f64, max_ms: f64) -> Result<()> {
    engine()?.client_auto_reconnect(client, min_ms, max_ms).map_err(js_err)
}

#[napi(catch_unwind)]
pub fn client_disconnect(client: u32) -> Result<()> {
    engine()?.client_disconnect(client).map_err(js_err)
}

/// A batch of sends and sets, one per line (see `Link::write_lines`).
#[napi(catch_unwind)]
pub fn write(handle: u32, lines: String) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.write_lines(&lines).map_err(js_err)
}

#[napi(catch_unwind)]
pub fn write_raw(handle: u32, data: Buffer) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.write_raw(&data);
    Ok(())
}

#[napi(catch_unwind)]
pub fn set_max_queue_length(handle: u32, n: f64) -> Result<()> {
    let link = engine()?.link(handle).map_err(js_err)?;
    let n = if n.is_finite() && n >= 0.0 { n as usize } else { usize::MAX };
    crate::engine::delivery::lock(&link.peer).set_max_queue_length(n);
    Ok(())
}

#[napi(catch_unwind)]
pub fn end(handle: u32) -> Result<()> {
    engine()?.end(handle);
    Ok(())
}

#[napi(catch_unwind)]
pub fn destroy(handle: u32) -> Result<()> {
    engine()?.destroy(handle);
    Ok(())
}

#[napi(catch_unwind)]
pub fn invalidate_session(handle: u32) -> Result<()> {
    engine()?.link(handle).map_err(js_err)?.invalidate_session();
    Ok(())
}
