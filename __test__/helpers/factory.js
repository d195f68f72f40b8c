'use strict'
// The transports of the original's factory hooks (server `createServer:
// factory(options, onStream)`, client `createConnection(options, cb)`): net,
// and an in-memory network of duplex pairs.

const net = require('node:net')
const { Duplex } = require('node:stream')
const { EventEmitter } = require('node:events')
const { HOST } = require('./net')

// An in-memory duplex pair: what one end writes, the other reads. Honours
// back-pressure (a write completes only once the reader has room), closes
// like a socket (end -> the peer reads EOF; destroy -> the peer reads EOF and
// later writes to it vanish).

function duplexPair ({ highWaterMark = 16 * 1024 } = {}) {
  const ends = []
  class End extends Duplex {
    constructor (i) {
      super({ highWaterMark, allowHalfOpen: false })
      this._i = i
      this._pendingWrite = null
      this._eof = false
      this._stalled = false
      this._held = null
    }

    // A network that stops taking this end's writes (they pile up in its
    // write buffer) until release().
    stall () { this._stalled = true }

    release () {
      this._stalled = false
      const held = this._held
      this._held = null
      if (held) this._write(held[0], null, held[1])
    }

    get _peer () { return ends[1 - this._i] }

    _eofToPeer () {
      const p = this._peer
      if (p._eof || p.destroyed) return
      p._eof = true
      p.push(null)
    }

    _read () {
      // The reader has room again: complete the peer's waiting write.
      const p = this._peer
      if (p && p._pendingWrite) {
        const cb = p._pendingWrite
        p._pendingWrite = null
        cb()
      }
    }

    _write (chunk, enc, cb) {
      if (this._stalled) {
        this._held = [chunk, cb]
        return
      }
      const p = this._peer
      if (p.destroyed || p._eof) return cb() // the peer is gone: bytes vanish
      if (p.push(chunk)) cb()
      else this._pendingWrite = cb
    }

    _final (cb) {
      this._eofToPeer()
      cb()
    }

    _destroy (err, cb) {
      if (this._held) {
        const w = this._held[1]
        this._held = null
        w()
      }
      if (this._pendingWrite) {
        const w = this._pendingWrite
        this._pendingWrite = null
        w()
      }
      const p = this._peer
      if (p._pendingWrite) { // its write into this (now gone) end
        const w = p._pendingWrite
        p._pendingWrite = null
        w()
      }
      this._eofToPeer()
      cb(err)
    }
  }
  ends.push(new End(0), new End(1))
  return ends
}

// A fake network for the factory hooks: `createServer` is a server factory as
// the original calls it (factory(options, onStream)); `createConnection` is a
// client factory that makes a duplex pair and hands the server's end to the
// listening server's onStream.
function memoryNetwork (pairOpts) {
  const streams = []
  const calls = { server: [], client: [], listen: [] }
  let fake = null
  const net_ = {
    calls,
    streams,
    get fake () { return fake },
    createServer (options, onStream) {
      calls.server.push([options, onStream])
      fake = new EventEmitter()
      fake.listening = false
      fake.onStream = onStream
      fake.listen = (...args) => {
        calls.listen.push(args)
        const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : null
        if (cb) fake.once('listening', cb)
        process.nextTick(() => {
          fake.listening = true
          fake.emit('listening')
        })
        return fake
      }
      fake.address = () => (fake.listening ? { address: 'memory', family: 'memory', port: 0 } : null)
      fake.close = (cb) => {
        if (cb) fake.once('close', cb)
        process.nextTick(() => {
          fake.listening = false
          fake.emit('close')
        })
        return fake
      }
      return fake
    },
    createConnection (options, cb) {
      calls.client.push(options)
      if (!fake || !fake.listening) return cb(Object.assign(new Error('memory: connection refused'), { code: 'ECONNREFUSED' }))
      const [clientEnd, serverEnd] = duplexPair(pairOpts)
      streams.push(clientEnd, serverEnd)
      process.nextTick(() => fake.onStream(serverEnd))
      cb(null, clientEnd)
    },
  }
  return net_
}

function destroyAll (streams) {
  for (const s of streams) if (!s.destroyed) s.destroy()
}

// Transports of the factory path, for the parametrised tests:
// `setup(r, t, { onConnection, pairOpts })` starts one of our servers on it
// and says how a client reaches it.
const FACTORY_TRANSPORTS = {
  net: {
    async setup (r, t, { onConnection } = {}) {
      const factoryCalls = []
      const serverFactory = (options, onStream) => {
        factoryCalls.push([options, onStream])
        return net.createServer(options, onStream)
      }
      const srv = await r.startServer('ours', { options: { createServer: serverFactory }, onConnection })
      const clientCalls = []
      const createConnection = (o, cb) => {
        clientCalls.push(o)
        cb(null, net.connect(o.port, o.host))
      }
      return {
        srv,
        serverFactoryCalls: factoryCalls,
        clientCalls,
        clientOptions: (extra = {}) => ({ host: HOST, port: srv.port, createConnection, ...extra }),
        StreamClass: net.Socket,
      }
    },
  },
  memory: {
    async setup (r, t, { onConnection, pairOpts } = {}) {
      const mem = memoryNetwork(pairOpts)
      t.after(() => destroyAll(mem.streams))
      const srv = await r.startServer('ours', { options: { createServer: mem.createServer }, onConnection })
      return {
        srv,
        mem,
        serverFactoryCalls: mem.calls.server,
        clientCalls: mem.calls.client,
        clientOptions: (extra = {}) => ({ createConnection: mem.createConnection, ...extra }),
        StreamClass: Duplex,
      }
    },
  },
}

module.exports = { duplexPair, memoryNetwork, destroyAll, FACTORY_TRANSPORTS }
