//! napi-rs bindings: type conversion and the wake-up into JavaScript, nothing
//! else. Events cross as one JSON text per batch (`take_events`); calls cross
//! once per batch of sends (`write`). Every export catches panics, so a bug
//! surfaces as a JS exception rather than aborting Node.

mod defaults;
mod metrics;
mod options;
// Polls sockets by fd with libuv: Unix only (elsewhere tokio reads them).
#[cfg(all(unix, not(uhura_portable)))]
mod busy_poll;
#[cfg(all(unix, not(uhura_portable)))]
mod uv;

use options::{addresses, endpoint, millis, peer_config, store_choice, tls_options};
use options::{JsAddresses, JsEndpoint, JsServerOptions, JsTlsOptions, PeerOptions};

use crate::engine::tls::{TlsAcceptor, TlsConnector};
use crate::engine::{ClientOptions, Connector, Engine, ListenOptions, ServerOptions};
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
pub(crate) fn init(env: Env, drain: Function<'_, (), Unknown<'static>>) -> Result<()> {
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
    let wake: Arc<Wake> = Arc::new(drain.build_threadsafe_function().weak::<true>().callee_handled::<false>().build()?);
    #[cfg(all(unix, not(uhura_portable)))]
    {
        let wake = wake.clone();
        uv::set_drain(
            &env,
            &drain,
            Box::new(move || {
                wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
            }),
        )?;
    }
    let engine = Engine::new(move || {
        // Events from a read on Node's loop are handed over when the read
        // is done, with no trip through the ThreadsafeFunction (`uv.rs`).
        #[cfg(all(unix, not(uhura_portable)))]
        if uv::defer_wake() {
            return;
        }
        wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    })
    .map_err(|e| Error::from_reason(format!("uhura: cannot start the runtime: {e}")))?;
    let _ = ENGINE.set(engine);
    Ok(())
}

/// All events delivered since the last call, as a JSON array text. Calling
/// it again means the previous batch was handled.
/// Corks this thread's writes (`engine::cork`) until `events_handled`, so
/// the listeners' replies and the batch's acks leave together.
#[napi(catch_unwind)]
pub(crate) fn take_events() -> Result<Option<String>> {
    let engine = engine()?;
    crate::engine::cork::begin_batch();
    Ok(engine.take_events())
}

/// Every batch taken so far has been dispatched: their acks may go out,
/// with what the listeners sent (the cork of `take_events` is released).
#[napi(catch_unwind)]
pub(crate) fn events_handled() -> Result<()> {
    let engine = engine()?;
    engine.events_handled();
    crate::engine::cork::end_batch();
    Ok(())
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

#[napi(catch_unwind)]
/// Returns the number the `LISTENING` of this listen() carries.
pub(crate) fn listen(server: u32, at: JsEndpoint, backlog: Option<u32>) -> Result<u32> {
    engine()?.listen(server, ListenOptions { endpoint: endpoint(at)?, backlog }).map_err(js_err)
}

/// `server.sendTo(sid, event, ...args)`: `args` is the JSON array, name
/// first; the outcome comes back as a PERSISTED entry for `seq`.
#[napi(catch_unwind)]
pub(crate) fn server_send_to(server: u32, sid: String, args: String, seq: f64) -> Result<()> {
    engine()?.server_send_to(server, sid, args, seq as u64).map_err(js_err)
}

/// `server.broadcast(event, ...args)`, reported as `server_send_to` is.
#[napi(catch_unwind)]
pub(crate) fn server_broadcast(server: u32, args: String, seq: f64) -> Result<()> {
    engine()?.server_broadcast(server, args, seq as u64).map_err(js_err)
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

/// The JavaScript server object was garbage-collected: free its Rust side.
#[napi(catch_unwind)]
pub(crate) fn server_release(server: u32) -> Result<()> {
    engine()?.server_release(server);
    Ok(())
}

/// A batch of sends and sets, one per line (see `Link::write_lines`): the
/// UTF-8 text of `buf[start..end]`, read in place (lib/outbox.js writes it).
/// Returns null; or, when the connection is gone for good, the sequence
/// number of each line (-1 for a line without one), whose callbacks
/// JavaScript then fails: the line protocol is read here only.
#[napi(catch_unwind)]
pub(crate) fn write(handle: u32, buf: BufferSlice, start: u32, end: u32) -> Result<Option<Vec<f64>>> {
    let lines = buf
        .get(start as usize..end as usize)
        .ok_or_else(|| js_err(format!("lines {start}..{end} are outside the buffer ({} bytes)", buf.len())))?;
    let lines = std::str::from_utf8(lines).map_err(|e| js_err(format!("lines are not UTF-8: {e}")))?;
    let Ok(link) = engine()?.link(handle) else {
        // JavaScript's sequence numbers are below 2^53: exact as f64.
        let seqs = crate::engine::lines::sequence_numbers(lines);
        return Ok(Some(seqs.into_iter().map(|seq| seq.map_or(-1.0, |s| s as f64)).collect()));
    };
    let result = link.write_lines(handle, lines);
    #[cfg(all(unix, not(uhura_portable)))]
    uv::read_for_acks(&link);
    result.map(|()| None).map_err(js_err)
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
/// UHURA_NODE_READS=0, and always off where `uv.rs` is not built (not Unix):
/// tokio reads them there, and WATCH is never asked for.
#[napi(catch_unwind)]
pub(crate) fn enable_node_reads(on: bool) -> Result<()> {
    engine()?.enable_external_reads(on && cfg!(all(unix, not(uhura_portable))));
    Ok(())
}

/// WATCH: watch link `handle`'s socket on this (the JS) thread.
#[cfg(all(unix, not(uhura_portable)))]
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
#[cfg(all(unix, not(uhura_portable)))]
#[napi(catch_unwind)]
pub(crate) fn unwatch(transport: f64) -> Result<()> {
    uv::unwatch(transport as u64);
    Ok(())
}

/// WATCH where there is no `uv.rs`: never asked for (see `enable_node_reads`),
/// and lib/native.js takes an error as "read on tokio".
#[cfg(not(all(unix, not(uhura_portable))))]
#[napi(catch_unwind)]
pub(crate) fn watch(_handle: u32, _transport: f64) -> Result<()> {
    Err(Error::from_reason("uhura: reading on Node's loop needs a Unix platform"))
}

/// UNWATCH where there is no `uv.rs`: nothing is watched.
#[cfg(not(all(unix, not(uhura_portable))))]
#[napi(catch_unwind)]
pub(crate) fn unwatch(_transport: f64) -> Result<()> {
    Ok(())
}

/// Which `debug` namespaces are on (lib/debug.js): bit 0 `uhura:protocol`,
/// 1 `uhura:connection`, 2 `uhura:reconnect`, 3 `uhura:session`.
#[napi(catch_unwind)]
pub(crate) fn set_debug(bits: u32) -> Result<()> {
    crate::engine::diag::set(bits);
    Ok(())
}
