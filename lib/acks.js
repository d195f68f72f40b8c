'use strict'
// The ack callbacks of one emitter's sends, by sequence number.
//
// Sends take sequence numbers in order and their acks mostly come back in
// that order (a whole range at a time, cumulative acks), so the callbacks
// sit in a ring indexed by `seq - base`: adding one is a store, settling
// one a store of `undefined`, and the ring is allocated once for the
// largest window (a `Map` cost a hash insert and delete per event, ~4
// times the memory, and garbage for the collector). Out-of-order settles
// (an ack timeout, a drop, a send that could not be written) leave holes,
// which the front skips once it reaches them. A callback that stays while
// many after it settle (an event whose ack never comes) moves out of the
// ring to `stragglers`, so the ring's span stays about what is pending.

/** The ring's first capacity (a power of two). */
const MIN_CAPACITY = 16

// The largest ring emptied since (all `undefined`), kept once per process:
// the next burst of any emitter grows into it instead of doubling from 16
// (a 10k burst spent ~0.4 ms regrowing, in arrays of over 128 KB that V8
// allocates as fresh large-object pages), while an idle emitter still
// keeps a small ring of its own.
let spare = null

function Acks () {
  // buf[(head + seq - base) & (buf.length - 1)] is the callback of `seq`,
  // for base <= seq < base + len; undefined once settled. Never null: a
  // branch that only the first add or the first add after a burst took
  // would have no type feedback when send() is optimized, and taking it
  // then would throw send's optimized code away at every burst's start.
  this.buf = smallRing()
  this.head = 0
  this.len = 0
  this.base = 0
  /** Callbacks not yet settled (both stages of a durable send count). */
  this.size = 0
  // Pending callbacks older than the ring (made on the first).
  this.stragglers = null
  // The persisted stages of durable sends (made on the first).
  this.persisted = null
}

/** Adds the callback of `seq`, the emitter's next sequence number. */
Acks.prototype.add = function (seq, cb) {
  // A store every call makes (not only the first of a burst, see Acks).
  this.base = this.len === 0 ? seq : this.base
  // Sequence numbers are taken one by one, so this only fills a gap should
  // one ever be skipped.
  while (this.base + this.len < seq) this._append(undefined)
  this._append(cb)
  this.size++
}

Acks.prototype._append = function (cb) {
  if (this.len === this.buf.length) this._makeRoom()
  this.buf[(this.head + this.len) & (this.buf.length - 1)] = cb
  this.len++
}

// Full: mostly holes behind an old pending callback, move that one out;
// otherwise double the ring.
Acks.prototype._makeRoom = function () {
  const buf = this.buf
  const ringPending = this.size - (this.stragglers === null ? 0 : this.stragglers.size) - (this.persisted === null ? 0 : this.persisted.size)
  if (ringPending * 2 < this.len) {
    if (this.stragglers === null) this.stragglers = new Map()
    // The front is a pending callback: _advance never stops on a hole.
    this.stragglers.set(this.base, buf[this.head])
    buf[this.head] = undefined
    this._advance()
    return
  }
  const cap = buf.length
  let next
  if (spare !== null && spare.length > cap) {
    next = spare
    spare = null
  } else {
    next = new Array(cap * 2).fill(undefined)
  }
  for (let i = 0; i < this.len; i++) next[i] = buf[(this.head + i) & (cap - 1)]
  this.buf = next
  this.head = 0
}

/** Adds the persisted stage of the durable send `seq`. */
Acks.prototype.addPersisted = function (seq, cb) {
  if (this.persisted === null) this.persisted = new Map()
  this.persisted.set(seq, cb)
  this.size++
}

/** Removes and returns the callback of `seq`, or undefined if it has none (any longer). */
Acks.prototype.take = function (seq) {
  const off = seq - this.base
  if (!(off >= 0 && off < this.len)) return off < 0 ? this._takeFrom('stragglers', seq) : undefined
  const buf = this.buf
  const i = (this.head + off) & (buf.length - 1)
  const cb = buf[i]
  if (cb === undefined) return undefined
  buf[i] = undefined
  this.size--
  if (off === 0) this._advance()
  return cb
}

/** Removes and returns the callback under `seq` in the side map `name` (`stragglers` or `persisted`). */
Acks.prototype._takeFrom = function (name, seq) {
  const map = this[name]
  if (map === null) return undefined
  const cb = map.get(seq)
  if (cb === undefined) return undefined
  map.delete(seq)
  this.size--
  return cb
}

/** Removes and returns the persisted stage of the durable send `seq`, if any. */
Acks.prototype.takePersisted = function (seq) {
  return this._takeFrom('persisted', seq)
}

// Moves the front past settled slots; an emptied ring larger than the first
// is swapped for a small one (a burst's window is not kept for an idle
// connection), and may become the process's spare.
Acks.prototype._advance = function () {
  const buf = this.buf
  const mask = buf.length - 1
  let head = this.head
  let len = this.len
  let base = this.base
  while (len > 0 && buf[head] === undefined) {
    head = (head + 1) & mask
    len--
    base++
  }
  this.head = head
  this.len = len
  this.base = base
  if (len === 0 && buf.length > MIN_CAPACITY) {
    if (spare === null || spare.length < buf.length) spare = buf
    this.buf = smallRing()
    this.head = 0
  }
}

function smallRing () {
  return new Array(MIN_CAPACITY).fill(undefined)
}

/** The spare ring's capacity (0 for none): for tests. */
Acks.spareCapacity = () => (spare === null ? 0 : spare.length)

module.exports = Acks
