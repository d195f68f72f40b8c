'use strict'
// Loopback addresses, ports and raw byte streams.

const net = require('node:net')
const { DEFAULT_WAIT, withTimeout } = require('./wait')

const HOST = '127.0.0.1'

/** A port nothing listens on (right now). */
async function freePort () {
  const s = net.createServer()
  await new Promise((resolve, reject) => {
    s.once('error', reject)
    s.listen(0, HOST, resolve)
  })
  const port = s.address().port
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** server.listen(...args); resolves at its callback, rejects on 'error' or after DEFAULT_WAIT. */
function listenAndWait (server, ...args) {
  return withTimeout(new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(...args, () => {
      server.removeListener('error', reject)
      resolve()
    })
  }), DEFAULT_WAIT, 'the server to listen')
}

// Writes `prefix` then `total` bytes of 'a' in chunks, honouring
// back-pressure; stops early when the socket closes, errors, or does not
// drain within `drainMs`. Returns the number of filler bytes written.
async function flood (socket, prefix, total, { chunk = 64 * 1024, drainMs = DEFAULT_WAIT } = {}) {
  const block = Buffer.alloc(chunk, 'a')
  if (socket.destroyed) return 0
  socket.write(prefix)
  let written = 0
  while (written < total && !socket.destroyed && socket.writable) {
    const ok = socket.write(block)
    written += block.length
    if (!ok) {
      const outcome = await new Promise((resolve) => {
        const done = (why) => {
          clearTimeout(timer)
          socket.removeListener('drain', onDrain)
          socket.removeListener('close', onClose)
          resolve(why)
        }
        const onDrain = () => done('drain')
        const onClose = () => done('close')
        const timer = setTimeout(() => done('timeout'), drainMs)
        socket.on('drain', onDrain)
        socket.on('close', onClose)
      })
      if (outcome !== 'drain') break
    }
  }
  return written
}

module.exports = { HOST, freePort, listenAndWait, flood }
