'use strict'
// Waiting in tests: for an event (`once` with a timeout), for a condition,
// for a promise; every wait fails with a message naming what it waited for.

const DEFAULT_WAIT = 5000

function delay (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function describeEmitter (e) {
  if (!e) return String(e)
  const name = e.constructor && e.constructor.name
  return name || 'emitter'
}

// Resolves with the event's argument array; rejects after `ms` with a clear
// message. opts.filter(...args) can skip events that do not match.
function waitFor (emitter, event, ms = DEFAULT_WAIT, opts = {}) {
  const label = opts.label || describeEmitter(emitter)
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      if (opts.filter && !opts.filter(...args)) return
      cleanup()
      resolve(args)
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new Error(`Timed out after ${ms} ms waiting for '${String(event)}' on ${label}`))
    }, ms)
    function cleanup () {
      clearTimeout(timer)
      emitter.removeListener(event, onEvent)
    }
    emitter.on(event, onEvent)
  })
}

// Polls pred() (which may return a Promise) every 5 ms until it gives
// something truthy; rejects after `ms`.
async function waitUntil (pred, ms = DEFAULT_WAIT, what = 'condition') {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await pred()
    if (v) return v
    if (Date.now() >= deadline) {
      throw new Error(`Timed out after ${ms} ms waiting for ${what}`)
    }
    await delay(5)
  }
}

// Records every emission of `event` as an argument array.
function collect (emitter, event) {
  const list = []
  emitter.on(event, (...args) => list.push(args))
  return list
}

// Rejects if `promise` does not settle within ms.
function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

module.exports = { DEFAULT_WAIT, delay, waitFor, waitUntil, collect, withTimeout }
