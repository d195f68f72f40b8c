'use strict'
// Arguments and options as the addon takes them: conversion, validation
// and the messages of the errors a misuse gets.

const sessions = require('./session')
const defaults = require('./defaults')

// `what` names the call in an error message: a string, or a function of
// the call's arguments (`subject`) that makes it, so that a hot path (send)
// builds it only when there is an error, and allocates nothing for it.
function label (what, subject) {
  return typeof what === 'function' ? what(subject) : what
}

// A character JSON.stringify would not copy as is: a quote, a backslash, a
// control character, a surrogate (escaped when lone; pairs are sent to
// JSON.stringify too, which is only slower). Control characters are the
// point here:
// eslint-disable-next-line no-control-regex
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/

// The last event name and the last short argument string found to need no
// escape, each with the text it adds to the JSON (`["name"`, `,"arg"`). Sends
// the outbox does not write itself (lib/outbox.js: more arguments, longer
// or non-ASCII strings) mostly repeat both too, and comparing with the last
// one (the same string: one pointer comparison) is much cheaper than the
// scan, and taking its text as made allocates nothing. Only short strings
// are kept, so a large payload is not held on to.
const SAFE_MAX = 256
let safeName = ''
let safeNameJson = '[""'
let safeArg = ''
let safeArgJson = ',""'
// safeArgJson with the array's closing bracket: the text of the last argument.
let safeArgEnd = ',""]'

/**
 * The text the element `v` adds to a flat array's JSON at index `i`, with
 * what goes before it (`[` for the first, `,` after); undefined for what is
 * not a string, number, boolean or null, or a string that needs escapes.
 */
function elementJson (v, i) {
  if (typeof v === 'string') {
    if (i === 0 ? v === safeName : v === safeArg) return i === 0 ? safeNameJson : safeArgJson
    if (ESCAPED.test(v)) return undefined
    const text = (i === 0 ? '["' : ',"') + v + '"'
    if (v.length <= SAFE_MAX) {
      if (i === 0) {
        safeName = v
        safeNameJson = text
      } else {
        safeArg = v
        safeArgJson = text
        safeArgEnd = text + ']'
      }
    }
    return text
  }
  if (typeof v === 'number') return (i === 0 ? '[' : ',') + (Number.isFinite(v) ? v : 'null')
  if (typeof v === 'boolean') return i === 0 ? (v ? '[true' : '[false') : (v ? ',true' : ',false')
  if (v === null) return i === 0 ? '[null' : ',null'
  return undefined
}

/** `out` + the text of the last element `v` (index `i`) and the closing bracket, or undefined. */
function closeJson (out, v, i) {
  if (i > 0 && v === safeArg) return out + safeArgEnd
  const text = elementJson(v, i)
  return text === undefined ? undefined : out + text + ']'
}

/**
 * `prefix` + JSON.stringify(args) for the common array of strings, numbers,
 * booleans and nulls, the same text at about half the cost and a third of
 * the garbage; undefined for anything else (JSON.stringify then decides).
 */
function flatJson (args, prefix = '') {
  if (args.toJSON !== undefined) return undefined
  const last = args.length - 1
  if (last < 0) return prefix + '[]'
  let out = prefix
  for (let i = 0; i < last; i++) {
    const text = elementJson(args[i], i)
    if (text === undefined) return undefined
    out += text
  }
  return closeJson(out, args[last], last)
}

/**
 * `prefix` + the JSON text of `value`, or a TypeError naming the call
 * (`what`, given `value`) that cannot send it.
 */
function toJson (value, what, prefix = '') {
  if (Array.isArray(value)) {
    const json = flatJson(value, prefix)
    if (json !== undefined) return json
  }
  let json
  try {
    json = JSON.stringify(value)
  } catch (e) {
    throw new TypeError(`uhura: ${label(what, value)}: the arguments cannot be sent as JSON: ${e.message}`)
  }
  if (json === undefined) throw new TypeError(`uhura: ${label(what, value)}: ${describe(value)} cannot be sent as JSON`)
  return prefix + json
}

function describe (v) {
  if (v === null) return 'null'
  if (typeof v === 'string') return JSON.stringify(v)
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object'
  return `${typeof v} ${String(v)}`
}

function checkedPort (port) {
  const n = typeof port === 'string' && port.trim() !== '' ? Number(port) : port
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new RangeError(`uhura: port must be an integer >= 0 and <= 65535, got ${describe(port)}`)
  }
  return n
}

/**
 * A count or a time in ms: a TypeError for what is not a number, a
 * RangeError for NaN or a negative one. Huge values (Infinity included)
 * are kept; Rust saturates them.
 */
function nonNegative (v, name) {
  // Numeric strings ('5000', from an environment variable) count as numbers.
  const n = typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v)) ? Number(v) : v
  if (typeof n !== 'number') throw new TypeError(`uhura: ${name} must be a number, got ${describe(v)}`)
  if (Number.isNaN(n) || n < 0) throw new RangeError(`uhura: ${name} must be a non-negative number, got ${describe(v)}`)
  return n
}

/**
 * The limits of `options` that send() and set() check, with Rust's defaults:
 * they refuse what a peer with the same limits would refuse. Limits equal to
 * the defaults are one shared, frozen object (`DEFAULT_LIMITS`), so every
 * emitter whose options set none shares it.
 */
function limitsOf (o) {
  // Most options set none: the shared object, with nothing made to find that out.
  if (DEFAULT_LIMITS !== null && o.maxArgs == null && o.maxDepth == null && o.maxMessageSize == null) return DEFAULT_LIMITS
  const limits = {
    maxArgs: numberOr(o.maxArgs, defaults.maxArgs),
    maxDepth: Math.min(Math.max(1, numberOr(o.maxDepth, defaults.maxDepth)), defaults.maxDepthLimit),
    maxMessageSize: Math.max(1, numberOr(o.maxMessageSize, defaults.maxMessageSize))
  }
  const d = DEFAULT_LIMITS
  const same = d !== null && limits.maxArgs === d.maxArgs && limits.maxDepth === d.maxDepth && limits.maxMessageSize === d.maxMessageSize
  return same ? d : limits
}

function numberOr (v, d) {
  return v == null || Number.isNaN(Number(v)) ? d : Number(v)
}
let DEFAULT_LIMITS = null
DEFAULT_LIMITS = Object.freeze(limitsOf({}))

/** Whether JSON text nests deeper than `limit` (the outermost array is level 1). */
function deeperThan (json, limit) {
  // Each level takes two characters at least.
  if (json.length <= 2 * limit) return false
  // Nor can it with at most `limit` brackets and braces in all (strings'
  // included): counted with indexOf, much faster than the scan below,
  // which most sends (flat arguments) then skip.
  let openers = 0
  for (let i = json.indexOf('['); i !== -1 && openers <= limit; i = json.indexOf('[', i + 1)) openers++
  for (let i = json.indexOf('{'); i !== -1 && openers <= limit; i = json.indexOf('{', i + 1)) openers++
  if (openers <= limit) return false
  let depth = 0
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 34) {
      // A string: skip it (JSON.stringify output, so escapes are well formed).
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i)
        if (d === 92) i++
        else if (d === 34) break
      }
    } else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

// What the wire form adds to a message's JSON at most: {"args":…,"id":"<prefix>-<seq>"}.
const MESSAGE_OVERHEAD = 64

/**
 * Throws a TypeError when the message `json` (an argument array, event
 * name first; `what` given `subject` names the call) is beyond what our own reader accepts: a peer with the same
 * limits would refuse it, so it must never enter the resend queue. The
 * first `skip` characters of `json` (ASCII, no brackets: a line's tag and
 * sequence number, see lib/native.js) are not part of the message.
 */
function checkLimits (limits, json, nargs, what, subject, skip = 0) {
  if (nargs > limits.maxArgs) {
    throw new TypeError(`uhura: ${label(what, subject)}: ${nargs} arguments are more than maxArgs (${limits.maxArgs})`)
  }
  if (deeperThan(json, limits.maxDepth)) {
    throw new TypeError(`uhura: ${label(what, subject)}: the arguments are nested deeper than maxDepth (${limits.maxDepth})`)
  }
  if ((json.length - skip) * 3 + MESSAGE_OVERHEAD > limits.maxMessageSize && Buffer.byteLength(json) - skip + MESSAGE_OVERHEAD > limits.maxMessageSize) {
    throw new TypeError(`uhura: ${label(what, subject)}: the message is larger than maxMessageSize (${limits.maxMessageSize} bytes)`)
  }
}

// The options of the protocol state machine (the addon's names).
const PEER_OPTIONS = ['maxMessageSize', 'maxArgs', 'maxDepth', 'maxQueueLength', 'maxQueueBytes', 'ackTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'handshakeTimeout', 'maxHandshakeBytes', 'maxSessionBytes']

/**
 * Options of the protocol state machine, as the addon takes them;
 * `maxQueueLength`, when given, in place of the options' own.
 */
function peerOptions (o, maxQueueLength) {
  const out = {}
  for (let i = 0; i < PEER_OPTIONS.length; i++) {
    const k = PEER_OPTIONS[i]
    const v = k === 'maxQueueLength' && maxQueueLength !== undefined ? maxQueueLength : o[k]
    if (v != null) out[k] = nonNegative(v, `options.${k}`)
  }
  if (o.extensions != null) out.extensions = !!o.extensions
  if (o.resumeSecret != null) {
    if (typeof o.resumeSecret !== 'string') throw new TypeError(`uhura: options.resumeSecret must be a string, got ${describe(o.resumeSecret)}`)
    out.resumeSecret = o.resumeSecret
  }
  return out
}

function toBuffer (v) {
  return Buffer.isBuffer(v) ? v : Buffer.from(typeof v === 'string' ? v : String(v))
}

/** Node-style tls options -> what the addon takes (PEM as Buffers). */
function tlsOptions (o) {
  if (o === true) o = {}
  if (o === null || typeof o !== 'object') throw new TypeError('uhura: options.tls must be an object')
  const out = {}
  if (o.key != null) out.key = toBuffer(Array.isArray(o.key) ? o.key[0] : o.key)
  if (o.cert != null) out.cert = toBuffer(Array.isArray(o.cert) ? o.cert.map(toBuffer).join('\n') : o.cert)
  if (o.ca != null) out.ca = (Array.isArray(o.ca) ? o.ca : [o.ca]).map(toBuffer)
  if (o.requestCert != null) out.requestCert = !!o.requestCert
  if (o.rejectUnauthorized != null) out.rejectUnauthorized = !!o.rejectUnauthorized
  if (o.servername != null) out.servername = String(o.servername)
  return out
}

/** Server options that choose and tune the session store. */
function storeOptions (options) {
  const out = {}
  const store = options.store
  if (store instanceof sessions.RedisStore) {
    out.store = 'redis'
    out.redisUrl = store.url
    out.redisPrefix = store.prefix
    out.redisAuxPrefix = store.auxPrefix
    out.redisTtl = store.ttl
    if (store.cluster) out.redisCluster = store.cluster
    if (store.tls) out.redisTls = tlsOptions(store.tls)
    out.redisMaxQueuedBytes = store.maxQueuedBytes
  } else if (store != null) {
    for (const m of ['get', 'set', 'destroy']) {
      if (typeof store[m] !== 'function') {
        throw new TypeError(`uhura: options.store must have get, set and destroy methods (connect-style); ${m} is ${describe(store[m])}`)
      }
    }
    out.store = 'js'
    if (options.storeTimeout != null) out.storeTimeout = nonNegative(options.storeTimeout, 'options.storeTimeout')
  }
  if (options.sessionTTL != null) out.sessionTtl = nonNegative(options.sessionTTL, 'options.sessionTTL')
  if (options.maxSessions != null) out.maxSessions = nonNegative(options.maxSessions, 'options.maxSessions')
  if (options.maxStoreBytes != null) out.maxStoreBytes = nonNegative(options.maxStoreBytes, 'options.maxStoreBytes')
  return out
}

module.exports = { toJson, flatJson, describe, checkedPort, nonNegative, limitsOf, DEFAULT_LIMITS, MESSAGE_OVERHEAD, checkLimits, peerOptions, tlsOptions, storeOptions }
