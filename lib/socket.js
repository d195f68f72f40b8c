'use strict'
// The socket-like object of a client or connection. Every exported
// constructor is an ES5 function, not a class: code written for uhura 0.1.x
// subclasses with `Ctor.call(this)` plus `util.inherits`, which a class
// constructor refuses. `class X extends Ctor` works as well.

const { EventEmitter } = require('events')
const util = require('util')
const { native, flushOutbox, whenBatchHandled } = require('./native')

/**
 * The `.socket` of a client or connection, and the socket a server's
 * `connection` event gives before the handshake: the parts of net.Socket
 * that make sense here. `owner` is the client or connection it belongs to
 * (none yet for a connection still in its handshake).
 */
function Socket (owner, h) {
  if (!(this instanceof Socket)) return new Socket(owner, h)
  EventEmitter.call(this)
  this._owner = owner || null
  this._handle = h || 0
  this.remoteAddress = undefined
  this.remotePort = undefined
  this.remoteFamily = undefined
  this.localAddress = undefined
  this.localPort = undefined
  this.destroyed = false
  // socket.emit('error', err) reaches the owner, as `socket.on('error')` did in the original.
  this.on('error', toOwner)
}
util.inherits(Socket, EventEmitter)

/** A socket's own 'error' listener: shared, not a closure per socket. */
function toOwner (err) {
  if (this._owner) this._owner.emit('error', err)
}

Object.defineProperty(Socket.prototype, '_h', {
  get () {
    return this._owner ? this._owner._h : this._handle
  }
})

Socket.prototype._update = function (info) {
  this.remoteAddress = info.remoteAddress
  this.remotePort = info.remotePort
  this.remoteFamily = info.remoteFamily
  this.localAddress = info.localAddress
  this.localPort = info.localPort
  this.destroyed = false
}

Socket.prototype._onClosed = function () {
  this.destroyed = true
  this.emit('close')
}

Socket.prototype.write = function (data, encoding, cb) {
  if (typeof encoding === 'function') {
    cb = encoding
    encoding = undefined
  }
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(String(data), encoding)
  flushOutbox()
  native.writeRaw(this._h, buf)
  if (typeof cb === 'function') setImmediate(cb)
  return true
}

Socket.prototype.end = function (data, encoding, cb) {
  if (typeof data === 'function') {
    cb = data
    data = undefined
  }
  if (data != null) this.write(data, encoding)
  flushOutbox()
  const h = this._h
  whenBatchHandled(() => native.end(h))
  if (typeof cb === 'function') this.once('close', cb)
  return this
}

Socket.prototype.destroy = function (err) {
  flushOutbox()
  native.destroy(this._h)
  this.destroyed = true
  if (err) process.nextTick(() => this.emit('error', err))
  return this
}

Socket.prototype.destroySoon = function () {
  return this.end()
}

Socket.prototype.setNoDelay = function () {
  // Always on: writes are coalesced per wake-up instead.
  return this
}

Socket.prototype.setKeepAlive = function () {
  return this
}

Socket.prototype.ref = function () {
  if (this._owner) this._owner.ref()
  return this
}

Socket.prototype.unref = function () {
  if (this._owner) this._owner.unref()
  return this
}

Socket.prototype.address = function () {
  return this.localAddress === undefined
    ? {}
    : { address: this.localAddress, port: this.localPort, family: this.remoteFamily }
}

module.exports = Socket
