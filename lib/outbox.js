'use strict'
// The outbox's contents: every emitter's lines since the last flush (the
// lines of src/engine/lines.rs, each with a '\n' in front), as UTF-8 in one
// buffer in call order, and the emitter of each run of lines (a segment).
// A flush hands Rust each segment's bytes (lib/native.js decides when).
//
// The common send (a name and up to two arguments, each a string of
// printable ASCII of at most 256 characters, a number, a boolean or null)
// writes its line here as it is made: no string
// is made for it, nor joined to the outbox's, nor flattened and converted
// at the flush. Those strings were ~185 bytes of garbage a send, which
// filled V8's young generation once every few thousand sends: a collection
// in the middle of a small burst (bench/README.md, "The outbox in bytes").

// A buffer starts this large and doubles as a run of sends needs.
const INITIAL_CAPACITY = 16 * 1024
// One grown past this (by sends that could not be flushed yet, before
// connect(), or by an outsized line) is let go once flushed.
const KEEP_AT_MOST = 1 << 20
// The longest string send() writes itself: longer ones go the general way
// (lib/connection.js), which converts them in one native call.
const STRING_MAX = 256
// What the longest such line takes: '\n', the tag, a sequence number,
// three elements of a string's or a number's size at most, ']'.
const LINE_MAX = 32 + 3 * (STRING_MAX + 4)

/** The lines since a flush: bytes, and the segments that split them by emitter. */
function Lines () {
  this.buf = Buffer.allocUnsafeSlow(INITIAL_CAPACITY)
  // Bytes used; each segment from its start to the next one's (or `used`).
  this.used = 0
  this.emitters = []
  this.starts = []
  this.count = 0
  this.lines = 0
}

// What sends write to, and what a flush wrote from: the two take turns,
// so that a send made while a flush writes (an 'error' listener's) goes
// to the next flush, behind this one's lines.
let open = new Lines()
let spare = new Lines()
// A segment of an emitter without a handle yet (a client before connect()):
// the outbox then waits for the end of the tick.
let unbound = false
// The emitter whose segment is the last and holds a line with a sequence
// number (`a`, `A`, `d`): its next numbered line may be `A`, the number
// after that one (src/engine/lines.rs), as its numbers are consecutive.
// Null when no segment qualifies.
let numbered = null

// The last string written as the event name and as an argument, with the
// bytes written for it (quotes included): sends mostly repeat both, and a
// copy of these bytes takes a quarter of the time of the check of each
// character (bench/README.md, "The outbox in bytes"). `view`: those bytes
// as one view, made at the first repeat, for a copy in one call.
const lastName = { s: '', bytes: new Uint8Array(STRING_MAX + 2), n: 2, view: null }
const lastArg = { s: '', bytes: new Uint8Array(STRING_MAX + 2), n: 2, view: null }
lastName.bytes[0] = lastName.bytes[1] = lastArg.bytes[0] = lastArg.bytes[1] = 34

function reserve (o, n) {
  if (o.buf.length - o.used >= n) return
  let cap = o.buf.length * 2
  while (cap - o.used < n) cap *= 2
  const next = Buffer.allocUnsafeSlow(cap)
  o.buf.copy(next, 0, 0, o.used)
  o.buf = next
}

/** Adds the line just written at `start` … `end` to `emitter`'s segment. */
function commit (o, emitter, start, end, hasSeq) {
  if (o.count === 0 || o.emitters[o.count - 1] !== emitter) {
    o.emitters[o.count] = emitter
    o.starts[o.count] = start
    o.count++
    numbered = null
    if (emitter._h === 0) unbound = true
  }
  if (hasSeq) numbered = emitter
  o.used = end
  o.lines++
}

/** Queues `line` ('\n' first) for `emitter`; `hasSeq`: it has a sequence number. */
function putText (emitter, line, hasSeq) {
  const o = open
  // UTF-16 to UTF-8: three bytes a unit at most.
  reserve(o, line.length * 3)
  const start = o.used
  commit(o, emitter, start, start + o.buf.write(line, start), hasSeq)
}

/**
 * Queues send(v0, …)'s line (`count` elements, from 1 to 3; v0 a string)
 * for `emitter`, with sequence number `seq` (-1: none), when it can write
 * the JSON itself and the message takes at most `maxJson` bytes. False,
 * with nothing queued, for anything else: the general path then decides.
 */
function putSend (emitter, seq, count, v0, v1, v2, maxJson) {
  const o = open
  reserve(o, LINE_MAX)
  const b = o.buf
  const start = o.used
  let p = start
  b[p++] = 10
  if (seq < 0) b[p++] = 101 // 'e'
  else if (numbered === emitter) b[p++] = 65 // 'A': the number after the last
  else {
    b[p++] = 97 // 'a'
    p = putDigits(b, p, seq)
  }
  const json = p
  p = putElement(b, p, v0, 91, lastName)
  if (count > 1 && p >= 0) p = putElement(b, p, v1, 44, lastArg)
  if (count > 2 && p >= 0) p = putElement(b, p, v2, 44, lastArg)
  if (p < 0) return false
  b[p++] = 93
  if (p - json > maxJson) return false
  commit(o, emitter, start, p, seq >= 0)
  return true
}

/** `before` (`[` or `,`), then `v`'s JSON text, at `p`: the position after it, or -1. */
function putElement (b, p, v, before, last) {
  b[p++] = before
  if (typeof v === 'string') return putString(b, p, v, last)
  if (typeof v === 'number') return putNumber(b, p, v)
  if (v === true) return putAscii(b, p, 'true')
  if (v === false) return putAscii(b, p, 'false')
  if (v === null) return putAscii(b, p, 'null')
  return -1
}

/**
 * `"s"` when `s` is short and needs no escape nor more than a byte a
 * character; else -1. `last`: the string this place had last time.
 */
function putString (b, p, s, last) {
  if (s === last.s) {
    const n = last.n
    if (n > 8) {
      // A call that copies with memmove: a loop of longer strings costs more.
      if (last.view === null) last.view = last.bytes.subarray(0, n)
      b.set(last.view, p)
    } else {
      const bytes = last.bytes
      for (let i = 0; i < n; i++) b[p + i] = bytes[i]
    }
    return p + n
  }
  const n = s.length
  if (n > STRING_MAX) return -1
  const start = p
  b[p++] = 34
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    // A quote, a backslash, a control character: JSON.stringify escapes them.
    if (c < 32 || c === 34 || c === 92 || c > 127) return -1
    b[p + i] = c
  }
  p += n
  b[p++] = 34
  const bytes = last.bytes
  for (let i = 0; i < n + 2; i++) bytes[i] = b[start + i]
  last.s = s
  last.n = n + 2
  last.view = null
  return p
}

/** JSON.stringify's text of the number `v` (`null` when not finite). */
function putNumber (b, p, v) {
  if (v !== Math.floor(v) || v > Number.MAX_SAFE_INTEGER || v < -Number.MAX_SAFE_INTEGER) {
    // NaN and ±Infinity too (Math.floor keeps them, but they are not equal
    // to it or beyond the bounds).
    return putAscii(b, p, Number.isFinite(v) ? '' + v : 'null')
  }
  if (v < 0) {
    b[p++] = 45
    v = -v
  }
  // -0 is 0 here, as in JSON.
  return putDigits(b, p, v)
}

/** The decimal digits of the integer 0 <= x <= 2^53 - 1. */
function putDigits (b, p, x) {
  // Most numbers are int32s, whose division by 10 is a multiplication;
  // a float division and Math.floor per digit cost ~4 times the rest of a send.
  if (x < 2147483648) return putDigits32(b, p, x | 0)
  let end = p + 1
  for (let t = x; t >= 10; t = Math.floor(t / 10)) end++
  for (let i = end - 1; i >= p; i--) {
    const q = Math.floor(x / 10)
    b[i] = 48 + (x - q * 10)
    x = q
  }
  return end
}

// '00' to '99': two digits per division.
const PAIRS = Buffer.from(Array.from({ length: 100 }, (_, i) => (i < 10 ? '0' : '') + i).join(''), 'latin1')
// 10 ** (k + 1) at k: the bounds of an int32's numbers of digits.
const P = Int32Array.from({ length: 9 }, (_, k) => 10 ** (k + 1))

function putDigits32 (b, p, x) {
  // Its number of digits, in at most four comparisons.
  const end = p + (x < P[4] ? (x < P[1] ? (x < P[0] ? 1 : 2) : x < P[2] ? 3 : x < P[3] ? 4 : 5) : x < P[6] ? (x < P[5] ? 6 : 7) : x < P[7] ? 8 : x < P[8] ? 9 : 10)
  let i = end
  while (x >= 100) {
    const q = (x / 100) | 0
    const r = (x - q * 100) << 1
    b[--i] = PAIRS[r + 1]
    b[--i] = PAIRS[r]
    x = q
  }
  if (x >= 10) {
    b[--i] = PAIRS[(x << 1) + 1]
    b[--i] = PAIRS[x << 1]
  } else b[--i] = 48 + x
  return end
}

function putAscii (b, p, s) {
  for (let i = 0; i < s.length; i++) b[p + i] = s.charCodeAt(i)
  return p + s.length
}

/** What is queued since the last flush: lines, bytes. */
function lines () {
  return open.lines
}

function bytes () {
  return open.used
}

/** Whether a segment waits for its emitter's handle (see `unbound`). */
function hasUnbound () {
  return unbound
}

function isEmpty () {
  return open.count === 0
}

/** Whether `emitter`'s next numbered line, queued before anything else is, may leave its number implicit (`A`). */
function nextSeqImplicit (emitter) {
  return numbered === emitter
}

/**
 * Takes what is queued, for a flush: `Lines`, to be handed back with
 * `release` once written. Sends made meanwhile queue for the next flush.
 */
function take () {
  const o = open
  open = spare
  spare = null
  unbound = false
  numbered = null
  return o
}

function release (o) {
  for (let i = 0; i < o.count; i++) o.emitters[i] = null
  o.count = 0
  o.used = 0
  o.lines = 0
  if (o.buf.length > KEEP_AT_MOST) o.buf = Buffer.allocUnsafeSlow(INITIAL_CAPACITY)
  spare = o
}

module.exports = { putText, putSend, lines, bytes, hasUnbound, isEmpty, nextSeqImplicit, take, release }
