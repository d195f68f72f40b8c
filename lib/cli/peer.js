'use strict'
// What `listen` and `sub` share: watching a client or server-side connection
// and turning what it emits into records.

const Uhura = require('../..')
const { Failure } = require('./args')
const { show } = require('./output')

/**
 * Events an emitter raises itself; the network can never raise them
 * (docs/PROTOCOL.md §2), so they are not shown as the peer's events.
 */
const LOCAL_EVENTS = new Set(['connect', 'disconnect', 'error', 'drop', 'reconnecting', 'newListener', 'removeListener'])

/**
 * Calls `onEvent(name, args)` for each event the peer of `emitter` sends,
 * `_set` included, before the emitter's own listeners run. Every event
 * goes through `emit`, whatever its name, so wrapping it sees them all.
 */
function watchEvents (emitter, onEvent) {
  const emit = emitter.emit
  emitter.emit = function (name, ...args) {
    if (!LOCAL_EVENTS.has(name)) onEvent(name, args)
    return emit.call(this, name, ...args)
  }
}

/** The record of a peer's event: a `set` for `_set`, else an `event`. */
function eventRecord (out, peer, name, args, extra = {}) {
  if (name === '_set') {
    const [key, value] = args
    const fields = typeof key === 'string' ? { key, value: value === undefined ? null : value } : { values: key }
    out.record('set', { peer, ...extra, ...fields }, {
      peer,
      detail: typeof key === 'string' ? `${key} = ${show(value === undefined ? null : value)}` : show(key),
    })
    return
  }
  out.record('event', { peer, ...extra, event: name, args }, {
    peer,
    detail: `${name} ${args.map(show).join(' ')}`.trimEnd(),
  })
}

/** An error's record fields: message and code. */
function errorFields (err) {
  return { message: err && err.message, code: err && err.code }
}

/** How long `close` waits for the connection to close after disconnect(), in ms. */
const CLOSE_WAIT = 1500

/** Disconnects `client` once its writes (acks of replies) are out; at most CLOSE_WAIT. */
function close (client) {
  client.removeAllListeners('disconnect')
  client.removeAllListeners('error')
  client.on('error', () => {})
  if (!client.ready) {
    client.disconnect()
    return
  }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, CLOSE_WAIT)
    client.once('disconnect', () => {
      clearTimeout(timer)
      resolve()
    })
    client.disconnect()
  })
}

/**
 * A client of `options` once its handshake completed; fails on an error, a
 * closed connection or after `timeout` ms. `prepare(client)` runs first
 * (session keys, listeners that must miss nothing).
 */
function connect (options, timeout, prepare = () => {}) {
  const client = Uhura.createClient(options)
  prepare(client)
  return new Promise((resolve, reject) => {
    const fail = (message) => {
      cleanup()
      close(client)
      reject(new Failure(message))
    }
    const onError = (err) => fail(err.message)
    const onDisconnect = () => fail('the server closed the connection during the handshake')
    const timer = setTimeout(() => fail(`timed out after ${timeout} ms waiting for the handshake`), timeout)
    const cleanup = () => {
      clearTimeout(timer)
      client.removeListener('error', onError)
      client.removeListener('disconnect', onDisconnect)
    }
    client.on('error', onError)
    client.on('disconnect', onDisconnect)
    client.once('connect', () => {
      cleanup()
      resolve(client)
    })
  })
}

module.exports = { watchEvents, eventRecord, errorFields, close, connect }
