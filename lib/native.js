'use strict'
// The crossing with Rust: event batches in (drain, dispatch to the object
// each handle names), sends out (the outbox, flushed at the end of the tick or
// every 1,024 lines, after fewer at the tick's start), and the keep-alive that stands in for tokio's tasks in
// Node's event loop.

const native = require('./addon')
const outbox = require('./outbox')
const debugLog = require('./debug')
const { streams, pumpOutput, closeStream } = require('./js-stream')
const {
  MESSAGE, ACKED, SET, CONNECTED, DISCONNECTED, ERROR, LISTENING, CLOSED, DROPPED, RECONNECTING, OUTPUT,
  TRANSPORT_CLOSED, RESUME_INPUT, OPEN_TRANSPORT, STORE_OP, ACK_TIMEOUT, STOPPED, WATCH, UNWATCH, LOG, ACCEPTED, REFUSED,
  PERSISTED, MESSAGES
} = require('./constants')

const handles = new Map()
// Handle of a connection still in its handshake -> the server whose
// `connection` event gave its socket.
const acceptedBy = new Map()

native.init(drain)
// Native sockets are read on this thread's event loop (src/node/uv.rs), which
// saves a thread hop per received message.
native.enableNodeReads(process.env.UHURA_NODE_READS !== '0')

/** Runs on the JS thread whenever Rust has events: take every batch there is. */
// Closing calls made by listeners wait until the batch is handled: the acks
// of the events just handled go out first (see eventsHandled below).
let dispatching = false
let afterBatch = []
let outboxScheduled = false
let flushing = false

// A flush once the outbox holds this much, not only at the end of the tick:
// a synchronous loop of sends otherwise puts nothing on the wire until it
// ends, and the peer idles meanwhile. Measured (bench/README.md, "Profile"):
// flushes of ~1k lines keep both processes busy at a cost per flush that
// is small against the sends.
const FLUSH_LINES = 1024
const FLUSH_BYTES = 256 * 1024
// The first flush of a run of sends (what one macrotask sends) comes after
// this many lines, and each early flush of the run doubles it up to
// FLUSH_LINES: the peer then starts on a burst after ~64 sends, not after
// 1,024 (~0.5 ms of sending in which it idled), for four more crossings
// per run (bench/README.md, "Small bursts").
const FIRST_FLUSH_LINES = 64
let flushLines = FIRST_FLUSH_LINES

function flushOutbox () {
  // Asked again from within a flush (an 'error' listener): what it queued
  // goes in the flush its enqueue scheduled.
  if (flushing) return
  outboxScheduled = false
  if (outbox.isEmpty()) return
  const o = outbox.take()
  // Sends made while a segment is written (an 'error' listener's) wait for
  // the next flush, behind the segments of this one.
  flushing = true
  try {
    for (let i = 0; i < o.count; i++) {
      o.emitters[i]._write(o.buf, o.starts[i], i + 1 < o.count ? o.starts[i + 1] : o.used)
    }
  } finally {
    outbox.release(o)
    flushing = false
  }
}

/**
 * Queues one line of `emitter`'s sends, `\n` first (the end of the line
 * before it, if any); flushed (in call order) at the end
 * of the tick, or as soon as the outbox is full. `hasSeq`: the line has a
 * sequence number (see `nextSeqImplicit` in lib/outbox.js).
 */
function enqueue (emitter, line, hasSeq) {
  outbox.putText(emitter, line, hasSeq)
  queued()
}

/**
 * After each line queued: the flush when the outbox is full. Early flushes
 * are safe inside a batch's dispatch too: Rust corks this thread's writes
 * until eventsHandled (src/engine/cork.rs), so a reply still leaves ahead
 * of, and together with, the acks of the events it answers.
 */
function queued () {
  if ((outbox.lines() >= flushLines || outbox.bytes() >= FLUSH_BYTES) && !outbox.hasUnbound() && !flushing) {
    flushLines = flushLines < FLUSH_LINES ? flushLines * 2 : FLUSH_LINES
    flushOutbox()
  } else if (!dispatching) {
    // Within a batch's dispatch, drain flushes when the listeners are done:
    // no microtask per batch of a request/response rhythm.
    scheduleFlush()
  }
}

function scheduleFlush () {
  if (outboxScheduled || outbox.isEmpty()) return
  outboxScheduled = true
  queueMicrotask(flushAtTickEnd)
}

/** The end of a run of sends: what is left goes, and the next run starts with a small flush. */
function flushAtTickEnd () {
  flushLines = FIRST_FLUSH_LINES
  flushOutbox()
}

function whenBatchHandled (fn) {
  if (dispatching) afterBatch.push(fn)
  else fn()
}

function drain () {
  let batch
  dispatching = true
  try {
    while ((batch = native.takeEvents()) != null) {
      const entries = JSON.parse(batch)
      for (let i = 0; i < entries.length; i++) {
        try {
          dispatch(entries[i])
        } catch (err) {
          // The rest of the batch is still delivered either way.
          listenerThrew(entries[i], err)
        }
      }
    }
    // What the listeners sent goes out first (a reply travels ahead of the
    // acks), then the acks of the handled events: only now, after the
    // listeners ran, may they vouch for them. Both leave in one write:
    // takeEvents corked this thread's writes until eventsHandled.
    flushOutbox()
  } finally {
    native.eventsHandled()
    dispatching = false
    // The listeners' sends were a run (see FIRST_FLUSH_LINES). What the
    // flush above did not take (sent during it, or it never ran) goes at
    // the end of the tick, as any send outside a batch does.
    flushLines = FIRST_FLUSH_LINES
    scheduleFlush()
  }
  const later = afterBatch
  afterBatch = []
  for (const fn of later) {
    try {
      fn()
    } catch {
      // A close requested from a listener, of something that closed in the
      // meantime: it is closed, which is what was asked.
    }
  }
}

function rethrow (err) {
  throw err
}

/**
 * A listener (or an ack callback) threw while a delivered entry was
 * dispatched. What the peer sends cannot make that crash the process: the
 * error goes to the emitter as an 'error' event (code ERR_UHURA_LISTENER, the
 * thrown value as `cause`), which the built-in listener swallows unless
 * `logErrors` is on. Only an 'error' listener that throws, or an entry with
 * no emitter, is rethrown (an uncaughtException, as from a net socket).
 */
function listenerThrew (entry, thrown) {
  const obj = handles.get(entry[0])
  if (!obj || entry[1] === ERROR || typeof obj.emit !== 'function') {
    process.nextTick(rethrow, thrown)
    return
  }
  const what = entry[1] === MESSAGE && Array.isArray(entry[2]) ? `the "${String(entry[2][0])}" event` : 'an event'
  const cause = thrown instanceof Error ? thrown.message : String(thrown)
  const err = new Error(`uhura: a listener of ${what} threw: ${cause}`)
  err.code = 'ERR_UHURA_LISTENER'
  err.cause = thrown
  if (thrown instanceof Error && thrown.stack) err.stack = `${err.stack}\nCaused by: ${thrown.stack}`
  try {
    obj.emit('error', err)
  } catch (e) {
    process.nextTick(rethrow, e)
  }
}

function dispatch (e) {
  const h = e[0]
  const obj = handles.get(h)
  switch (e[1]) {
    case MESSAGE:
      // [h, MESSAGE, args]
      if (obj) obj._onMessage(e[2])
      break
    case MESSAGES:
      if (obj) receiveRun(obj, e)
      break
    case ACKED:
      // [h, ACKED, seq] or, for a run of callbacks, [h, ACKED, from, to].
      if (obj) {
        if (e.length > 3) settleRange(obj, e)
        else obj._settle(e[2], undefined)
      }
      break
    case SET:
      if (obj) obj._onRemoteSet(e[2])
      break
    case CONNECTED:
      if (obj) obj._onConnected(e[2])
      else if (e[2].server != null) {
        const server = handles.get(e[2].server)
        if (server) server._onConnection(h, e[2])
      }
      break
    case DISCONNECTED:
      if (obj) obj._onDisconnected(e[2])
      else if (acceptedBy.has(h)) acceptedBy.get(h)._onAcceptedClosed(h)
      break
    case ERROR:
      if (obj) obj._onError(e[2])
      else if (e[2].server != null) {
        const server = handles.get(e[2].server)
        if (server) server._onClientError(h, e[2])
      }
      break
    case ACCEPTED:
      if (obj) obj._onAccepted(e[2], e[3])
      break
    case REFUSED:
      if (obj) obj.emit('drop', e[2])
      break
    case LISTENING:
      if (obj) obj._onListening(e[2], e[3])
      break
    case CLOSED:
      if (obj) obj._onClose()
      break
    case DROPPED:
      if (obj) obj._onDropped(e[2], e[3])
      break
    case ACK_TIMEOUT:
      if (obj) obj._onAckTimeout(e[2])
      break
    case PERSISTED:
      // A durable send's first stage, or a server's sendTo / broadcast.
      if (obj) obj._onPersisted(e[2], e[3])
      break
    case STOPPED:
      if (obj) obj._onStopped()
      break
    case WATCH:
      try {
        native.watch(h, e[2])
      } catch (err) {
        // Not fatal: the socket is then read on a tokio thread as before.
        if (obj && obj.logErrors) console.error(err.stack)
      }
      break
    case UNWATCH:
      native.unwatch(e[2])
      break
    case RECONNECTING:
      if (obj) obj.emit('reconnecting', e[2])
      break
    case OUTPUT:
      pumpOutput(h)
      break
    case TRANSPORT_CLOSED: {
      const stream = streams.get(h)
      if (stream) closeStream(h, stream)
      break
    }
    case RESUME_INPUT: {
      const stream = streams.get(h)
      if (stream && typeof stream.resume === 'function') stream.resume()
      break
    }
    case OPEN_TRANSPORT:
      if (obj) obj._openTransport()
      break
    case STORE_OP:
      if (obj) obj._storeOp(e[2], e[3], e[4], e[5])
      break
    case LOG:
      debugLog.log(e)
      break
  }
}

/**
 * [h, ACKED, from, to]: the callbacks of the sends `from` to `to`, in order,
 * in one loop. One that throws is reported as if it had its own entry, and
 * the rest still run.
 */
function settleRange (obj, e) {
  for (let seq = e[2], to = e[3]; seq <= to; seq++) {
    try {
      obj._settle(seq, undefined)
    } catch (err) {
      listenerThrew(e, err)
    }
  }
}

/**
 * [h, MESSAGES, n, name, ...args, n, name, ...args, ...]: the events of a
 * run of messages, in order, in one loop, each as its number of elements
 * and the elements (no array each, src/engine/events.rs `Messages`), or as
 * 0 and the array. Most go to `emit` directly. A listener that throws is
 * reported as if its event had its own entry, and the rest are still
 * emitted.
 */
function receiveRun (obj, e) {
  for (let i = 2; i < e.length;) {
    const n = e[i]
    try {
      switch (n) {
        case 0: obj._onMessage(e[i + 1]); break
        case 1: obj.emit(e[i + 1]); break
        case 2: obj.emit(e[i + 1], e[i + 2]); break
        case 3: obj.emit(e[i + 1], e[i + 2], e[i + 3]); break
        case 4: obj.emit(e[i + 1], e[i + 2], e[i + 3], e[i + 4]); break
        default: obj._onMessage(e.slice(i + 1, i + 1 + n))
      }
    } catch (err) {
      listenerThrew([e[0], MESSAGE, n === 0 ? e[i + 1] : e.slice(i + 1, i + 1 + n)], err)
    }
    i += n === 0 ? 2 : n + 1
  }
}

// The Rust side of a client or server whose object was collected is freed.
const releaseOnCollect = new FinalizationRegistry((h) => native.clientRelease(h))
const releaseServerOnCollect = new FinalizationRegistry((h) => native.serverRelease(h))

// Node exits when nothing ref'd is pending. Tokio tasks are invisible to it,
// so one ref'd timer stands in for every live server, connection and ref'd client.
let liveCount = 0
let liveTimer = null
function keepAlive (obj, on) {
  on = !!on
  if (!!obj._keepingAlive === on) return
  obj._keepingAlive = on
  liveCount += on ? 1 : -1
  if (liveCount > 0 && liveTimer === null) liveTimer = setInterval(noop, 0x7fffffff)
  else if (liveCount === 0 && liveTimer !== null) {
    clearInterval(liveTimer)
    liveTimer = null
  }
}
function noop () {}

function makeError (info) {
  const err = new Error(info.message)
  if (info.code) err.code = info.code
  if (info.syscall) err.syscall = info.syscall
  return err
}

module.exports = { native, handles, acceptedBy, enqueue, queued, flushOutbox, whenBatchHandled, keepAlive, releaseOnCollect, releaseServerOnCollect, makeError }
