//! Reading native sockets on Node's own event loop.
//!
//! A tokio thread that reads a socket must then wake the JavaScript thread
//! (a ThreadsafeFunction, ~15 µs): one extra thread hop per received
//! message, which doubles a request/response round trip. Instead, once a
//! connection is up, the engine asks (WATCH) for its socket to be watched
//! with a libuv poll handle on the JavaScript thread; readiness then wakes
//! that thread directly, the bytes are parsed right there, and the batch
//! reaches the listeners in the same loop turn. Writing and everything else
//! stays on tokio.
//!
//! libuv is part of the Node binary and its functions are exported to
//! addons; the handles are unref'd so they never keep the process alive.
//!
//! The events a read delivers are handed to JavaScript when the read is
//! done, by calling the drain function right there (`napi_make_callback`,
//! which runs the microtasks and `nextTick`s after it, as any I/O callback
//! of Node's does). Waking this same thread through the ThreadsafeFunction
//! instead would cost an eventfd write, another turn of the loop and its
//! `epoll_wait` for every batch. The read and the drain run corked
//! (`engine::cork`): the replies and acks they cause leave in one write.
//! Then, on a tight request/response rhythm, the thread spins a moment for
//! the next input before libuv blocks (`busy_poll.rs`), and what the spin
//! catches on the same socket is read right away, in the same callback (for
//! at most `IN_CALLBACK_FOR`, so timers and other sockets still get their
//! turn).

use super::busy_poll;
use crate::engine::link::external_read::Watch;
use crate::engine::link::Link;
use napi::sys;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::{Arc, Weak};

extern "C" {
    fn uv_poll_init_socket(loop_: *mut c_void, handle: *mut c_void, socket: c_int) -> c_int;
    fn uv_poll_start(handle: *mut c_void, events: c_int, cb: extern "C" fn(*mut c_void, c_int, c_int)) -> c_int;
    fn uv_poll_stop(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, cb: extern "C" fn(*mut c_void));
    fn uv_unref(handle: *mut c_void);
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_backend_fd(loop_: *const c_void) -> c_int;
}

/// `UV_POLL` in libuv's `uv_handle_type`, and `UV_READABLE`.
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

/// What a poll handle's `data` field (the first field of every uv handle)
/// points to.
struct PollContext {
    link: Weak<Link>,
    transport: u64,
    /// Keeps the fd open (and so not reused by another socket) while the
    /// handle watches it.
    socket: Arc<dyn crate::engine::transport::DirectWrite>,
}

struct Poll {
    handle: *mut c_void,
    running: bool,
}

/// How `on_readable` calls JavaScript's drain function.
struct Drain {
    env: sys::napi_env,
    func: sys::napi_ref,
    context: sys::napi_async_context,
    /// The ThreadsafeFunction's wake-up, should the direct call fail: the
    /// delivery buffer wakes only once per drain, so its events must not
    /// be left waiting.
    wake: Box<dyn Fn()>,
}

/// Where this thread is in `on_readable`: the events it delivers wait for
/// the drain at its end instead of waking the loop.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    No,
    Yes,
    Delivered,
}

thread_local! {
    /// Transport id -> its poll handle. Only ever touched on the JS thread.
    static POLLS: RefCell<HashMap<u64, Poll>> = RefCell::new(HashMap::new());
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
    static DRAIN: Cell<Option<&'static Drain>> = const { Cell::new(None) };
    static READING: Cell<Reading> = const { Cell::new(Reading::No) };
}

/// Keeps `drain` (JavaScript's batch handler) to call after reads on this
/// thread, the environment's JavaScript thread.
pub(super) fn set_drain(
    env: &napi::Env,
    drain: &napi::bindgen_prelude::Function<'_, (), napi::Unknown<'static>>,
    wake: Box<dyn Fn()>,
) -> napi::Result<()> {
    use napi::bindgen_prelude::JsValue;
    let env = env.raw();
    let mut func = std::ptr::null_mut();
    let mut name = std::ptr::null_mut();
    let mut context = std::ptr::null_mut();
    // SAFETY: valid env and function value of the current call; the
    // reference and the async context live as long as the process (one
    // environment per process, `init`).
    let ok = unsafe {
        sys::napi_create_reference(env, drain.raw(), 1, &mut func) == sys::Status::napi_ok
            && sys::napi_create_string_utf8(env, c"uhura".as_ptr(), 5, &mut name) == sys::Status::napi_ok
            && sys::napi_async_init(env, std::ptr::null_mut(), name, &mut context) == sys::Status::napi_ok
    };
    if !ok {
        return Err(napi::Error::from_reason("uhura: cannot keep the drain function"));
    }
    DRAIN.with(|d| d.set(Some(Box::leak(Box::new(Drain { env, func, context, wake })))));
    Ok(())
}

/// Called by the engine's wake-up: whether this thread is reading in
/// `on_readable`, which then drains when the read is done.
pub(super) fn defer_wake() -> bool {
    READING.with(|r| {
        if r.get() == Reading::No {
            return false;
        }
        r.set(Reading::Delivered);
        true
    })
}

/// Calls JavaScript's drain function as Node calls an I/O callback.
fn drain_now() {
    let Some(d) = DRAIN.with(Cell::get) else { return };
    // SAFETY: on the environment's thread, from a libuv callback (not inside
    // JavaScript); the handle scope is closed before returning.
    unsafe {
        let mut scope = std::ptr::null_mut();
        if sys::napi_open_handle_scope(d.env, &mut scope) != sys::Status::napi_ok {
            return (d.wake)();
        }
        let (mut func, mut recv, mut result) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
        // The receiver must be an object (`napi_make_callback` converts it).
        let status = if sys::napi_get_reference_value(d.env, d.func, &mut func) == sys::Status::napi_ok
            && sys::napi_get_global(d.env, &mut recv) == sys::Status::napi_ok
        {
            sys::napi_make_callback(d.env, d.context, recv, func, 0, std::ptr::null(), &mut result)
        } else {
            sys::Status::napi_generic_failure
        };
        match status {
            sys::Status::napi_ok => {}
            sys::Status::napi_pending_exception => {
                // As from any callback of Node's: an uncaught exception.
                let mut err = std::ptr::null_mut();
                if sys::napi_get_and_clear_last_exception(d.env, &mut err) == sys::Status::napi_ok {
                    sys::napi_fatal_exception(d.env, err);
                }
            }
            _ => (d.wake)(),
        }
        sys::napi_close_handle_scope(d.env, scope);
    }
}

fn layout() -> std::alloc::Layout {
    // SAFETY: uv_handle_size only reads a constant table.
    let size = unsafe { uv_handle_size(UV_POLL) };
    std::alloc::Layout::from_size_align(size.max(1), 16).expect("uv handle layout")
}

/// How long `on_readable` may go on reading input its spin caught on the same
/// socket before it returns to libuv, whose timers, immediates and other
/// sockets wait meanwhile.
const IN_CALLBACK_FOR: std::time::Duration = std::time::Duration::from_millis(1);

extern "C" fn on_readable(handle: *mut c_void, mut status: c_int, _events: c_int) {
    let start = std::time::Instant::now();
    loop {
        busy_poll::batch_started();
        read_and_drain(handle, status);
        // Input the spin caught on this socket is read right here: a turn of
        // libuv's loop (its timers, its `epoll_wait`s, Node's hooks) would
        // only delay the reply it asks for.
        let Some(fd) = watched_fd(handle) else { return };
        if !busy_poll::batch_done(fd) || start.elapsed() >= IN_CALLBACK_FOR {
            return;
        }
        status = 0;
    }
}

/// The socket of a poll handle that still watches it (the drain may have
/// stopped or closed it).
fn watched_fd(handle: *mut c_void) -> Option<c_int> {
    // SAFETY: as in `read_socket`; a closed handle's context lives until
    // `on_close`, which runs in a later phase of the loop.
    let ctx = unsafe { &*(*(handle as *mut *mut PollContext)) };
    let running =
        POLLS.with(|p| p.borrow().get(&ctx.transport).is_some_and(|poll| poll.running && poll.handle == handle));
    running.then(|| ctx.socket.raw_fd())
}

/// Reads the socket, hands what arrived to JavaScript, and writes what that
/// caused (the cork is released on return).
fn read_and_drain(handle: *mut c_void, status: c_int) {
    let _cork = crate::engine::cork::cork();
    if read_socket(handle, status) {
        drain_now();
    }
}

/// Called on the JavaScript thread after it queued sends on `link`: when
/// they wait for acks (the in-flight window is full) and this thread reads
/// the link's socket, reads it now. A synchronous loop of sends otherwise
/// fills the window within a few thousand events, and the acks that would
/// open it wait in the socket until the loop ends: the peer idles
/// meanwhile, then this process. What the read delivers reaches the
/// listeners as any delivery outside a read does, through the
/// ThreadsafeFunction's wake-up, never from inside this call.
pub(super) fn read_for_acks(link: &Arc<Link>) {
    if READING.with(Cell::get) != Reading::No || !crate::engine::delivery::lock(&link.peer).awaits_acks() {
        return;
    }
    let Some(t) = link.transport() else { return };
    let running = POLLS.with(|p| p.borrow().get(&t.id).filter(|poll| poll.running).map(|poll| poll.handle));
    let Some(handle) = running else { return };
    if read_socket(handle, 0) {
        if let Some(d) = DRAIN.with(Cell::get) {
            (d.wake)();
        }
    }
}

/// Reads the socket of a poll handle (`status`: libuv's), stopping the
/// handle when the transport pauses or ends. Returns whether the read
/// delivered events, whose wake-up is left to the caller.
fn read_socket(handle: *mut c_void, status: c_int) -> bool {
    // SAFETY: `data` was set to a leaked PollContext in `watch` and is only
    // freed in `on_close`, after the handle stopped.
    let ctx = unsafe { &*(*(handle as *mut *mut PollContext)) };
    READING.with(|r| r.set(Reading::Yes));
    // libuv reports a socket error (EPOLLERR, e.g. a reset) as UV_EBADF; the
    // read then returns the real error, which ends the transport.
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match ctx.link.upgrade() {
        Some(link) => {
            let v = READ_BUF.with(|b| link.read_external(ctx.transport, &mut b.borrow_mut()));
            if status < 0 && v == Watch::Keep {
                link.external_failed(ctx.transport);
                return Watch::Stop;
            }
            v
        }
        None => Watch::Stop,
    }))
    .unwrap_or(Watch::Stop);
    let delivered = READING.with(|r| r.replace(Reading::No)) == Reading::Delivered;
    if verdict != Watch::Keep {
        // SAFETY: a started poll handle on this loop's thread.
        unsafe { uv_poll_stop(handle) };
        POLLS.with(|p| {
            if let Some(poll) = p.borrow_mut().get_mut(&ctx.transport) {
                poll.running = false;
            }
        });
    }
    delivered
}

extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: the handle is closed; nothing else refers to it or its context.
    unsafe {
        drop(Box::from_raw(*(handle as *mut *mut PollContext)));
        std::alloc::dealloc(handle as *mut u8, layout());
    }
}

/// Starts (or resumes) watching the socket of `link`'s transport `id`, if
/// that transport is still live. `uv_loop` is Node's loop.
pub(super) fn watch(uv_loop: *mut c_void, link: &Arc<Link>, id: u64) -> Result<(), String> {
    let Some(transport) = link.transport_by_id(id) else { return Ok(()) };
    let Some(socket) = transport.direct_socket() else { return Ok(()) };
    let resumed = POLLS.with(|p| {
        let mut polls = p.borrow_mut();
        let poll = polls.get_mut(&id)?;
        if !poll.running {
            // SAFETY: an initialised, stopped poll handle of this thread.
            let rc = unsafe { uv_poll_start(poll.handle, UV_READABLE, on_readable) };
            if rc != 0 {
                return Some(rc);
            }
            poll.running = true;
        }
        Some(0)
    });
    match resumed {
        Some(0) => return Ok(()),
        Some(rc) => {
            // This loop reads the socket and cannot any more: end the
            // transport rather than leave it unread.
            link.external_failed(id);
            return Err(format!("uv_poll_start failed ({rc})"));
        }
        None => {}
    }
    // SAFETY: Node's loop, on its thread.
    busy_poll::set_backend_fd(unsafe { uv_backend_fd(uv_loop) });
    let fd = socket.raw_fd();
    let ctx = Box::into_raw(Box::new(PollContext { link: Arc::downgrade(link), transport: id, socket }));
    // SAFETY: a zeroed allocation of the size libuv asks for; libuv
    // initialises it, and we set `data` (the first field) afterwards.
    unsafe {
        let handle = std::alloc::alloc_zeroed(layout()) as *mut c_void;
        if handle.is_null() {
            drop(Box::from_raw(ctx));
            return Err("out of memory".into());
        }
        let rc = uv_poll_init_socket(uv_loop, handle, fd);
        if rc != 0 {
            drop(Box::from_raw(ctx));
            std::alloc::dealloc(handle as *mut u8, layout());
            return Err(format!("uv_poll_init_socket failed ({rc})"));
        }
        *(handle as *mut *mut PollContext) = ctx;
        uv_unref(handle);
        let rc = uv_poll_start(handle, UV_READABLE, on_readable);
        if rc != 0 {
            // Closing frees the handle and its context (on_close); the
            // transport stays with the tokio reader, which never handed over.
            uv_close(handle, on_close);
            return Err(format!("uv_poll_start failed ({rc})"));
        }
        POLLS.with(|p| p.borrow_mut().insert(id, Poll { handle, running: true }));
    }
    link.external_watch_started(&transport);
    Ok(())
}

/// Stops watching and frees the poll handle of transport `id`.
pub(super) fn unwatch(id: u64) {
    if let Some(poll) = POLLS.with(|p| p.borrow_mut().remove(&id)) {
        // SAFETY: an initialised poll handle of this thread; freed in on_close.
        unsafe {
            uv_poll_stop(poll.handle);
            uv_close(poll.handle, on_close);
        }
    }
}
