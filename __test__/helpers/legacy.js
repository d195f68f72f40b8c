'use strict'
// The implementations under test, ours and the published packages:
//   ours     -> require('..')            (the Rust/napi-rs addon + index.js)
//   v0.1.2   -> require('uhura-0.1.2')   (published package, devDependency alias)
//   v0.0.10  -> require('uhura-0.0.10')  (published package, devDependency alias)
//
// UHURA_TEST_OLD_ONLY=1 makes the suites run their bodies against the old
// packages only (never loading ours), to validate the test logic itself.
//
// Quirks of the old packages that the helpers work around:
// * 0.1.2 createClient(port, host, cb) throws (`self` is undefined): never pass
//   a callback to an old client.
// * 0.1.2 client emits a local `connect` (no args) synchronously inside
//   createClient()/reconnect(), then again when the server's connect arrives.
//   Listeners attached after createClient() returns only see the server's.
// * 0.0.10 createServer ignores options; 0.0.10 server connections do not
//   forward socket errors (an ECONNRESET would crash), so raw server sockets of
//   old servers get an error listener (resources.js).

const path = require('node:path')
const { DEFAULT_WAIT, waitFor } = require('./wait')

const OLD_ONLY = process.env.UHURA_TEST_OLD_ONLY === '1'
const ROOT = path.join(__dirname, '..', '..')

const IMPLS = {
  ours: () => require(ROOT),
  'v0.1.2': () => require('uhura-0.1.2'),
  'v0.0.10': () => require('uhura-0.0.10'),
}

// Absolute module paths, for child processes (`node -e "require(P)"`).
const MODULE_PATHS = {
  ours: () => ROOT,
  'v0.1.2': () => path.dirname(require.resolve('uhura-0.1.2/package.json')),
  'v0.0.10': () => path.dirname(require.resolve('uhura-0.0.10/package.json')),
}

// What each implementation can do on the wire.
//   acks:         speaks object mode with acks (needs both peers)
//   sendCallback: send(ev, ...args, cb) strips and calls cb (0.0.10 would
//                 serialise the function as a trailing null and never call it)
const CAPS = {
  ours: { acks: true, sendCallback: true },
  'v0.1.2': { acks: true, sendCallback: true },
  'v0.0.10': { acks: false, sendCallback: false },
}

// Waits for the client's completed handshake. For 0.1.2 clients, skips the
// local no-arg `connect` that 0.1.2 emits when a (re)connect's socket is
// created: the server's connect carries a config object (from a 0.1.2 or
// ours server). Do not use `requireConfig` with a 0.0.10 server.
function waitHandshake (impl, client, ms = DEFAULT_WAIT, { requireConfig = true } = {}) {
  const filter = impl === 'v0.1.2' && requireConfig
    ? (cfg) => cfg !== null && typeof cfg === 'object'
    : undefined
  return waitFor(client, 'connect', ms, { filter, label: `${impl} client` })
}

// Stops a client of `impl` for good: no reconnect, socket destroyed.
function closeClient (impl, client) {
  if (impl !== 'ours') {
    // Old clients: switch auto-reconnect off and cancel a pending retry.
    client._reconnect = false
    if (client._timer) { clearTimeout(client._timer); client._timer = null }
  }
  try { client.disconnect() } catch (_) {}
  try { if (client.socket) client.socket.destroy() } catch (_) {}
}

module.exports = { OLD_ONLY, ROOT, IMPLS, MODULE_PATHS, CAPS, waitHandshake, closeClient }
