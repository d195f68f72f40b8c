'use strict'
// The `debug` namespaces of uhura (README, "Environment variables"):
//
//   uhura:protocol    `recv: <message>` / `send: <message>` for every message
//                     received and sent, as uhura 0.1.2 logs them
//   uhura:connection  accepted / connected, handshake done (new or resumed
//                     session), closed and why
//   uhura:reconnect   failed attempts, the next attempt and its delay
//   uhura:session     server sessions resumed, loaded, saved, destroyed
//
// Which namespaces are on is read once, when uhura is loaded (DEBUG=...), and
// handed to Rust as flags: while a namespace is off, Rust formats nothing
// and nothing crosses into JavaScript for it. After changing the namespaces
// at run time with `require('debug').enable(...)`, call
// `Uhura.debug.refresh()`.
//
// Lines arrive as LOG entries of the delivery batches (lib/native.js dispatch):
// [handle, LOG, code, text], code 0 received / 1 sent (text: the message's
// JSON as it was on the wire), 2 connection, 3 reconnect, 4 session.

// The addon first: without it, its own error is the one to see.
const native = require('./addon')
const createDebug = require('debug')

const NAMESPACES = ['uhura:protocol', 'uhura:connection', 'uhura:reconnect', 'uhura:session']
const protocol = createDebug('uhura:protocol')
// Indexed by the entry's code.
const loggers = [protocol, protocol, createDebug('uhura:connection'), createDebug('uhura:reconnect'), createDebug('uhura:session')]

/** Re-reads which uhura namespaces `debug` has enabled and tells Rust. Returns them. */
function refresh () {
  let bits = 0
  const on = []
  NAMESPACES.forEach((ns, i) => {
    if (createDebug.enabled(ns)) {
      bits |= 1 << i
      on.push(ns)
    }
  })
  native.setDebug(bits)
  return on
}

/** One LOG entry of a delivered batch. */
function log (e) {
  const code = e[2]
  const logger = loggers[code]
  if (logger === undefined || !logger.enabled) return
  if (code <= 1) {
    let value
    try {
      value = JSON.parse(e[3])
    } catch (_) {
      value = e[3]
    }
    logger(code === 0 ? 'recv:' : 'send:', value)
  } else {
    logger('%s', e[3])
  }
}

refresh()

module.exports = { log, api: { namespaces: NAMESPACES.slice(), refresh } }
