'use strict'
// Operator metrics: the counters live in Rust (src/engine/metrics.rs) and
// are read here on demand, as a snapshot, a Prometheus exposition text, or
// through prom-client collectors. Nothing here runs per event.

const native = require('./addon')

/** The views of a server that `native.serverSnapshot` gives (src/node/metrics.rs). */
const VIEW = { metrics: 0, connections: 1, sessions: 2 }

/** A server's view (`metrics`, `connections` or `sessions`) as a value; null once the server is gone. */
function snapshot (h, view) {
  const text = native.serverSnapshot(h, VIEW[view])
  return text == null ? null : JSON.parse(text)
}

/** A client's stats; null once it is gone. */
function clientStats (h) {
  const text = native.clientStats(h)
  return text == null ? null : JSON.parse(text)
}

const one = (value) => [[null, value]]

/**
 * Every metric, in exposition order: Prometheus naming (prefix `uhura_`,
 * base units, `_total` on counters), and how to read it from a
 * `server.metrics()` snapshot as [labels, value] pairs.
 */
const METRICS = [
  ['uhura_connections', 'gauge', 'Connections open now, handshaken or not.', (m) => one(m.connections.current)],
  ['uhura_connections_accepted_total', 'counter', 'Connections accepted.', (m) => one(m.connections.accepted)],
  ['uhura_connections_refused_total', 'counter', 'Connections closed unread over maxConnections.', (m) => one(m.connections.refused)],
  ['uhura_handshakes_total', 'counter', 'Completed handshakes, by whether they started a new session or resumed one.',
    (m) => [[{ session: 'new' }, m.handshakes.new], [{ session: 'resumed' }, m.handshakes.resumed]]],
  ['uhura_sessions_stored', 'gauge', 'Sessions in the memory store (absent for other stores).',
    (m) => m.sessions.stored == null ? [] : one(m.sessions.stored)],
  ['uhura_sessions_retained', 'gauge', 'Dropped connections kept for their session to resume.', (m) => one(m.sessions.retained)],
  ['uhura_events_received_total', 'counter', 'Application events received.', (m) => one(m.events.in)],
  ['uhura_events_sent_total', 'counter', 'Application events sent.', (m) => one(m.events.out)],
  ['uhura_bytes_received_total', 'counter', 'Bytes read from connections.', (m) => one(m.bytes.in)],
  ['uhura_bytes_sent_total', 'counter', 'Bytes written to connections.', (m) => one(m.bytes.out)],
  ['uhura_pending_events', 'gauge', 'Events sent or queued and not yet acknowledged.', (m) => one(m.pending.events)],
  ['uhura_pending_bytes', 'gauge', 'Bytes of the events not yet acknowledged.', (m) => one(m.pending.bytes)],
  ['uhura_acks_pending', 'gauge', 'Events written and waiting for their ack.', (m) => one(m.acks.pending)],
  ['uhura_events_dropped_total', 'counter', 'Pending events dropped (queue limits, refusals, sessions that did not return).', (m) => one(m.drops)],
  ['uhura_heartbeat_timeouts_total', 'counter', 'Connections closed because the peer went silent.', (m) => one(m.heartbeatTimeouts)],
  ['uhura_errors_total', 'counter', 'Connection errors, by err.code ("protocol" for errors of the protocol, which have none).',
    (m) => Object.keys(m.errors).map((code) => [{ code }, m.errors[code]])],
  ['uhura_store_operations_total', 'counter', 'Session store calls.', (m) => one(m.store.operations)],
  ['uhura_store_failures_total', 'counter', 'Session store calls that failed.', (m) => one(m.store.failures)]
]

/** A label value, escaped as the text format wants. */
function escapeLabel (v) {
  return String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** A `server.metrics()` snapshot in the Prometheus text exposition format (version 0.0.4). */
function prometheusText (m) {
  let out = ''
  for (const [name, type, help, read] of METRICS) {
    out += `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`
    for (const [labels, value] of read(m)) {
      const l = labels ? `{${Object.keys(labels).map((k) => `${k}="${escapeLabel(labels[k])}"`).join(',')}}` : ''
      out += `${name}${l} ${value}\n`
    }
  }
  return out
}

/** Per prom-client registry: its collectors' label names and the servers they read. */
const registered = new WeakMap()

/**
 * Registers uhura's metrics in a prom-client registry: each collector reads
 * `server.metrics()` when the registry is scraped. prom-client is an
 * optional peer dependency, loaded only here. Several servers share one
 * registry when each is registered with `labels` telling them apart (the
 * same label names for all, e.g. `{ server: 'a' }`); one server alone needs
 * none.
 */
function register (registry, server, labels) {
  let client
  try {
    client = require('prom-client')
  } catch (e) {
    const err = new Error('uhura: metrics.register() needs the prom-client package (npm install prom-client)')
    err.code = 'ERR_UHURA_NO_PROM_CLIENT'
    err.cause = e
    throw err
  }
  if (!registry || typeof registry.registerMetric !== 'function') {
    throw new TypeError('uhura: metrics.register(registry, server) takes a prom-client Registry')
  }
  if (!server || typeof server.metrics !== 'function') {
    throw new TypeError('uhura: metrics.register(registry, server) takes a uhura Server')
  }
  if (labels != null && (typeof labels !== 'object' || Array.isArray(labels))) {
    throw new TypeError('uhura: metrics.register(registry, server, labels): labels is an object of label names to values')
  }
  labels = Object.assign({}, labels)
  const names = Object.keys(labels).sort()
  const key = JSON.stringify(names.map((n) => String(labels[n])))
  let entry = registered.get(registry)
  if (entry === undefined) {
    // Servers by a weak reference: registering one does not keep it alive;
    // one collected leaves the registry at the next scrape.
    entry = { names, servers: [], keys: new Set() }
    registered.set(registry, entry)
    addCollectors(client, registry, entry)
  } else if (entry.servers.some((s) => s.ref.deref() === server)) {
    throw new TypeError('uhura: metrics.register(): this server is already registered in this registry')
  } else if (names.length === 0 || names.join() !== entry.names.join()) {
    throw new TypeError('uhura: metrics.register(): servers sharing a registry need labels telling them apart, ' +
      `with the same names for every server (e.g. { server: 'a' }); the first was registered with [${entry.names.join(', ')}]`)
  } else if (entry.keys.has(key)) {
    throw new TypeError(`uhura: metrics.register(): another server of this registry has the labels ${JSON.stringify(labels)}`)
  }
  entry.servers.push({ ref: new WeakRef(server), labels, key })
  entry.keys.add(key)
  return registry
}

/** The servers of a registry's entry still alive, with their labels; the collected ones are dropped. */
function live (entry) {
  const out = []
  entry.servers = entry.servers.filter((s) => {
    const server = s.ref.deref()
    if (server === undefined) entry.keys.delete(s.key)
    else out.push({ server, labels: s.labels })
    return server !== undefined
  })
  return out
}

/** The collectors of one registry, made with its first server: each reads every server registered there. */
function addCollectors (client, registry, entry) {
  // One snapshot per server and scrape, shared by the collectors of that scrape.
  let cached = null
  const current = (server) => {
    if (cached === null) {
      cached = new Map()
      setImmediate(() => { cached = null })
    }
    if (!cached.has(server)) cached.set(server, server.metrics())
    return cached.get(server)
  }
  for (const [name, type, help, read] of METRICS) {
    const own = name === 'uhura_errors_total' ? ['code'] : name === 'uhura_handshakes_total' ? ['session'] : []
    const Ctor = type === 'counter' ? client.Counter : client.Gauge
    // eslint-disable-next-line no-new
    new Ctor({
      name,
      help,
      labelNames: [...entry.names, ...own],
      registers: [registry],
      collect () {
        this.reset()
        for (const { server, labels: serverLabels } of live(entry)) {
          const m = current(server)
          if (!m) continue
          for (const [labels, value] of read(m)) {
            const all = labels || entry.names.length ? Object.assign({}, serverLabels, labels) : null
            if (type === 'counter') {
              if (all) this.inc(all, value)
              else this.inc(value)
            } else if (all) this.set(all, value)
            else this.set(value)
          }
        }
      }
    })
  }
}

module.exports = { snapshot, clientStats, prometheusText, register, METRICS }
