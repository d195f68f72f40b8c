'use strict'
// JavaScript duplex streams as transports (the original's createConnection
// and createServer hooks): their bytes are pumped through a Rust link.

const native = require('./addon')

// Handle -> the JavaScript stream carrying that link's bytes.
const streams = new Map()

function addressesOf (stream) {
  return {
    remoteAddress: stream.remoteAddress,
    remotePort: stream.remotePort,
    localAddress: stream.localAddress,
    localPort: stream.localPort
  }
}

/**
 * Pumps a JavaScript duplex stream's bytes through the Rust link `h`:
 * what it reads goes to `feed`, what Rust writes arrives as OUTPUT events.
 */
function bindStream (h, stream, onError) {
  streams.set(h, stream)
  // Each message and ack is a small write; with Nagle's algorithm a
  // request/response exchange waits out delayed ACKs (~40 ms per message).
  if (typeof stream.setNoDelay === 'function') stream.setNoDelay(true)
  stream.on('data', (chunk) => {
    if (!Buffer.isBuffer(chunk)) chunk = Buffer.from(chunk)
    if (!native.feed(h, chunk) && typeof stream.pause === 'function') stream.pause()
  })
  const ended = () => native.feedEnd(h)
  stream.on('end', ended)
  stream.on('close', () => {
    ended()
    if (streams.get(h) === stream) streams.delete(h)
  })
  stream.on('error', onError)
}

/**
 * Moves Rust's output for `h` into its JavaScript stream, honouring the
 * stream's back-pressure: while it waits for 'drain', Rust's output stays in
 * Rust, where it is bounded.
 */
function pumpOutput (h) {
  const stream = streams.get(h)
  if (!stream) {
    native.takeOutput(h)
    return
  }
  if (stream._uhuraAwaitingDrain || stream.destroyed) return
  const buf = native.takeOutput(h)
  if (buf.length === 0) return
  if (!stream.write(buf)) {
    stream._uhuraAwaitingDrain = true
    stream.once('drain', () => {
      stream._uhuraAwaitingDrain = false
      pumpOutput(h)
    })
  }
}

function closeStream (h, stream) {
  if (streams.get(h) === stream) streams.delete(h)
  if (stream.destroyed) return
  stream.end()
  // A peer that never closes its side does not hold the stream open for good.
  const t = setTimeout(() => stream.destroy(), 5000)
  if (t.unref) t.unref()
  stream.once('close', () => clearTimeout(t))
}

module.exports = { streams, addressesOf, bindStream, pumpOutput, closeStream }
