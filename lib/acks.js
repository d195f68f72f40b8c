'use strict'
// The ack callbacks of one emitter's sends, by sequence number.
//
// Sends take sequence numbers in order and their acks mostly come back in
// that order (a whole range at a time, cumulative acks), so the callbacks
// sit in an array indexed by `seq - base`: adding one is a push, settling
// one a store of `undefined`. Out-of-order settles (an ack timeout, a drop,
// a send that could not be written) leave holes, which the front skips
// once it reaches them. A `Map` per send cost a hash insert and delete per
// event and ~4 times the memory.

/** Below this many settled slots at the front, the array is not compacted. */
const COMPACT_MIN = 1024

function Acks () {
  // cbs[i] is the callback of sequence number base + i - head; slots before
  // `head` are settled and wait to be cut off.
  this.cbs = []
  this.head = 0
  this.base = 0
  /** Callbacks not yet settled (both stages of a durable send count). */
  this.size = 0
  // The persisted stages of durable sends (key -seq - 1), made on the first.
  this.persisted = null
}

/** Adds the callback of `seq`, the emitter's next sequence number. */
Acks.prototype.add = function (seq, cb) {
  if (this.cbs.length === this.head) {
    // Nothing pending in the array: start it at this send.
    if (this.head !== 0) {
      this.cbs = []
      this.head = 0
    }
    this.base = seq
  } else {
    // Sequence numbers are taken one by one, so this only fills a gap
    // should one ever be skipped.
    for (let next = this.base + this.cbs.length - this.head; next < seq; next++) this.cbs.push(undefined)
  }
  this.cbs.push(cb)
  this.size++
}

/** Adds the persisted stage of the durable send `seq`. */
Acks.prototype.addPersisted = function (seq, cb) {
  if (this.persisted === null) this.persisted = new Map()
  this.persisted.set(seq, cb)
  this.size++
}

/** Removes and returns the callback of `seq`, or undefined if it has none (any longer). */
Acks.prototype.take = function (seq) {
  const i = seq - this.base + this.head
  if (!(i >= this.head && i < this.cbs.length)) return undefined
  const cb = this.cbs[i]
  if (cb === undefined) return undefined
  this.cbs[i] = undefined
  this.size--
  if (i === this.head) this._advance()
  return cb
}

/** Removes and returns the persisted stage of the durable send `seq`, if any. */
Acks.prototype.takePersisted = function (seq) {
  if (this.persisted === null) return undefined
  const cb = this.persisted.get(seq)
  if (cb === undefined) return undefined
  this.persisted.delete(seq)
  this.size--
  return cb
}

// Moves the front past settled slots, and cuts them off once they are most
// of the array (amortized O(1) per send).
Acks.prototype._advance = function () {
  const cbs = this.cbs
  let head = this.head
  const base = this.base
  while (head < cbs.length && cbs[head] === undefined) head++
  this.base = base + (head - this.head)
  this.head = head
  if (head === cbs.length) {
    this.cbs = []
    this.head = 0
  } else if (head >= COMPACT_MIN && head * 2 >= cbs.length) {
    this.cbs = cbs.slice(head)
    this.head = 0
  }
}

module.exports = Acks
