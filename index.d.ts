// Type definitions for uhura 0.2 (wire- and API-compatible with uhura 0.1.2).
/// <reference types="node" />
import { EventEmitter } from 'events'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** The shared key/value session. */
export interface Session {
  sessionID?: string
  [key: string]: any
}

/** Called when the peer acknowledges the event (right after writing when acks are off), or with an Error when it is dropped or times out. */
export type AckCallback = (err?: Error) => void

export interface PeerOptions {
  /** Largest single message accepted from the peer, in bytes. Default 16 MiB. */
  maxMessageSize?: number
  /** Most arguments (after the event name) of one event from the peer; more is a protocol error, and `send()` throws a TypeError beyond it. Default 4096. */
  maxArgs?: number
  /** Deepest nesting of an event's argument array (the array itself is level 1) accepted from the peer; deeper is a protocol error, and `send()` / `set()` throw a TypeError beyond it. Default 1000, at most 2000. */
  maxDepth?: number
  /** Most pending events (queued + unacknowledged); beyond it the oldest is dropped (`drop` event). Default Infinity. */
  maxQueueLength?: number
  /** Most bytes of pending events; beyond it the oldest is dropped. Default 64 MiB. */
  maxQueueBytes?: number
  /** ms after `send` when an unacknowledged callback gets an `ERR_UHURA_ACK_TIMEOUT` error (the event stays queued). Default: none. */
  ackTimeout?: number
  /** ms between heartbeats to our own peers; 0 turns them off. Default 15000. */
  heartbeatInterval?: number
  /** ms of silence after which a connection to our own peer is closed. Default 30000. */
  heartbeatTimeout?: number
  /** ms a new connection may take to complete the handshake. Default 30000. */
  handshakeTimeout?: number
  /** Server: bytes of events a connection may send before its handshake completes. Default 1 MiB. */
  maxHandshakeBytes?: number
  /** A `set` or a peer's `_set` that would make the session larger than this many bytes of JSON is refused. Default 1 MiB. */
  maxSessionBytes?: number
  /** Offer the protocol extensions (duplicate suppression, heartbeats) to peers that support them. Default true. */
  extensions?: boolean
  /** Print `err.stack` of every error event. */
  logErrors?: boolean
}

/** Node-style TLS options; PEM as strings or Buffers. */
export interface TlsOptions {
  key?: string | Buffer
  cert?: string | Buffer | Array<string | Buffer>
  ca?: string | Buffer | Array<string | Buffer>
  /** Server: ask clients for a certificate (mutual TLS). */
  requestCert?: boolean
  /** Client: verify the server (default true). Server with requestCert: require a valid client certificate (default true). */
  rejectUnauthorized?: boolean
  /** Client: the name to send (SNI) and verify. Default: the host. */
  servername?: string
}

/** A connect-style session store. Methods may call back or return a Promise. */
export interface ConnectStyleStore {
  get(sid: string, cb: (err?: Error | null, session?: Session | null) => void): void | Promise<Session | null | undefined>
  set(sid: string, session: Session, cb: (err?: Error | null) => void): void | Promise<unknown>
  destroy(sid: string, cb: (err?: Error | null) => void): void | Promise<unknown>
}

export interface RedisStoreOptions {
  /** Default `redis://127.0.0.1:6379`. */
  url?: string
  /** Key prefix, as connect-redis. Default `sess:`. */
  prefix?: string
  /** Key expiry in seconds of sessions whose cookie has no `maxAge` (those expire `maxAge` after their last save). Default 86400. */
  ttl?: number
  /** Prefix of the delivery-state keys (`out:<sid>`, `seen:<sid>`); must not start with `prefix`. Default `uhura:`. */
  auxPrefix?: string
  /**
   * A Redis Cluster instead of one server: URLs of some of its nodes (`redis://` or `rediss://`),
   * the rest is discovered. Not with `url`.
   */
  cluster?: string[]
  /** TLS of `rediss://` URLs. Without `ca`, the server is checked against the Mozilla roots. */
  tls?: RedisTlsOptions
  /**
   * Bound, in bytes, on the session saves queued while Redis is unavailable (one per session, the newest).
   * Past it the oldest are dropped, with an `error` naming them. Default 16 MiB.
   */
  maxQueuedBytes?: number
}

/** `redisStore({ tls })`: PEM as strings or Buffers, as Node's `tls` options. */
export interface RedisTlsOptions {
  /** CA certificates that sign the Redis server's certificate. */
  ca?: string | Buffer | Array<string | Buffer>
  /** A client certificate chain, for Redis's `tls-auth-clients`; with `key`. */
  cert?: string | Buffer
  /** The client certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC). */
  key?: string | Buffer
}

/** A native Redis session store (pass it as `options.store`). */
export class RedisStore {
  constructor (options?: RedisStoreOptions)
  readonly url: string
  readonly prefix: string
  readonly auxPrefix: string
  readonly ttl: number
  readonly cluster?: string[]
  readonly tls?: RedisTlsOptions
  readonly maxQueuedBytes: number
}

export function redisStore (options?: RedisStoreOptions): RedisStore

/** The connect 2.x session classes of the original's `session` export. */
export interface SessionExport {
  (options?: { store?: ConnectStyleStore }): ConnectStyleStore
  Store: { new (options?: object): EventEmitter & Partial<ConnectStyleStore>; (this: any, options?: object): void; prototype: EventEmitter }
  MemoryStore: { new (): EventEmitter & ConnectStyleStore & { sessions: Record<string, string> } }
  Cookie: { new (options?: object): object }
  Session: { new (req: object, data?: object): object }
}

export const session: SessionExport
/** `session.Store`, for store factories that read `.Store` off their argument (`require('connect-redis')(Uhura)`). */
export const Store: SessionExport['Store']

/**
 * The `debug` namespaces (`DEBUG=uhura:protocol`, `uhura:connection`,
 * `uhura:reconnect`, `uhura:session`) are read when uhura is loaded. After
 * `require('debug').enable(...)` at run time, `refresh()` applies the change
 * and returns the uhura namespaces now on.
 */
export const debug: {
  readonly namespaces: readonly string[]
  refresh(): string[]
}

/** The `.socket` of a client or connection. */
export interface UhuraSocket extends EventEmitter {
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly remoteFamily: string | undefined
  readonly localAddress: string | undefined
  readonly localPort: number | undefined
  readonly destroyed: boolean
  /** Raw bytes onto the wire, outside the message framing. */
  write(data: string | Buffer | Uint8Array, encoding?: BufferEncoding | (() => void), cb?: () => void): boolean
  end(cb?: () => void): this
  end(data: string | Buffer, encoding?: BufferEncoding, cb?: () => void): this
  destroy(err?: Error): this
  destroySoon(): this
  setNoDelay(noDelay?: boolean): this
  setKeepAlive(enable?: boolean, initialDelay?: number): this
  ref(): this
  unref(): this
  address(): { address: string; port: number; family: string } | {}
}

/** What clients and server-side connections share. */
declare class SendEmitter extends EventEmitter {
  /** The shared session (a plain object). */
  session: Session
  /** True between a completed handshake and the next disconnect. */
  ready: boolean
  objectMode: boolean
  enableAcks: boolean
  maxQueueLength: number
  logErrors: boolean
  readonly socket: UhuraSocket

  /** Emits `event` on the peer. A trailing function is not sent: it runs when the peer acknowledges. */
  send (event: string, ...args: any[]): void
  /** Like `send(event, ...args, cb)`, as a Promise that settles on the ack. */
  sendWithAck (event: string, ...args: any[]): Promise<void>
  /** Sets one session field (both ends). */
  set (key: string, value: any): void
  /** Merges fields into the session (both ends). */
  set (fields: Record<string, any>): void
  /** One session field. */
  get (key: string): any
  /** The whole session object. */
  get (): Session
  /** Sends the whole local session to the peer (after changing `session` in place). */
  syncSession (): void
  /** Merges fields into the local session only (the peer is not told). */
  _set (key: string | Record<string, any>, value?: any): void
  /** Writes one whole message as given (`[event, ...args]` or `{ args }`): no ack, no resend. */
  _send (data: any[] | { args: any[] }): void

  on (event: 'connect', listener: (arg?: any) => void): this
  on (event: 'disconnect', listener: () => void): this
  on (event: 'error', listener: (err: Error & { code?: string }) => void): this
  on (event: '_set', listener: (key: string | Record<string, any>, value?: any) => void): this
  on (event: 'drop', listener: (err: Error) => void): this
  on (event: string, listener: (...args: any[]) => void): this
}

export interface ClientOptions extends PeerOptions {
  port?: number | string
  host?: string
  /** A Unix socket instead of TCP. */
  path?: string
  /** Several servers, tried in turn (fail-over). */
  servers?: Array<{ host?: string; port: number | string } | { path: string }>
  /** Native TLS (rustls). */
  tls?: TlsOptions
  /** The resume secret of the session this client resumes (`client.resumeSecret` of an earlier run). */
  resumeSecret?: string
  /** The original's factory hook: hand over any Node duplex stream. */
  createConnection?: (options: ClientOptions, cb: (err: Error | null, stream?: NodeJS.ReadWriteStream) => void) => NodeJS.ReadWriteStream | void
}

/** Traffic counters and state shared by `client.stats()` and `server.connections()`. */
export interface TrafficStats {
  /** The session id, once known. */
  session: string | null
  /** The protocol the peer speaks: '0.0.x' (array mode), '0.1.x' (object mode), 'uhura' (ours); null before the handshake. */
  mode: '0.0.x' | '0.1.x' | 'uhura' | null
  /** When the current connection opened (ms since the epoch); null while disconnected. */
  connectedSince: number | null
  /** When bytes last arrived or the application last sent (ms since the epoch). */
  lastActivity: number | null
  /** Round-trip time in ms: the kernel's estimate for a TCP socket (Linux); null for Unix sockets, TLS, factory streams and elsewhere. */
  rtt: number | null
  /** Events sent or queued and not yet acknowledged, and their JSON bytes. */
  pendingEvents: number
  pendingBytes: number
  eventsIn: number
  eventsOut: number
  bytesIn: number
  bytesOut: number
}

/** `client.stats()`: counters since the client was created, across reconnections. */
export interface ClientStats extends TrafficStats {
  /** Handshaken and connected now. */
  connected: boolean
  /** Connections opened after the first. */
  reconnects: number
}

/** One entry of `server.connections()` (as NATS's /connz). */
export interface ConnectionInfo extends TrafficStats {
  /** The connection's id (its handle). */
  id: number
  remoteAddress: string | null
  remotePort: number | null
}

/** One entry of `server.sessions()`. */
export interface SessionInfo {
  id: string
  /** 'connected', or 'retained': dropped and waiting for a resume until `retainedUntil`. */
  state: 'connected' | 'retained'
  connection: number
  pendingEvents: number
  retainedUntil: number | null
}

/** `server.metrics()`: totals since the server was created, and gauges now. */
export interface ServerMetrics {
  connections: { current: number; accepted: number; refused: number }
  handshakes: { new: number; resumed: number }
  /** `stored`: sessions in the memory store; null for other stores. */
  sessions: { stored: number | null; retained: number }
  events: { in: number; out: number }
  bytes: { in: number; out: number }
  pending: { events: number; bytes: number }
  acks: { pending: number }
  drops: number
  heartbeatTimeouts: number
  /** Errors by `err.code`; 'protocol' for errors of the protocol, which carry none. */
  errors: { [code: string]: number }
  /** The latest 20 errors, oldest first. */
  recentErrors: Array<{ at: number; connection: number; code: string; message: string }>
  store: { operations: number; failures: number }
}

export interface AdminOptions {
  /** 0 or absent: any free port. */
  port?: number
  /** Default '127.0.0.1' (loopback only). */
  host?: string
  /** When set, every request needs `Authorization: Bearer <token>` (or `?token=`). */
  token?: string
  /** How often /events sends a sample to the dashboard, in ms. Default 1000. */
  interval?: number
}

/** The admin endpoint `server.listenAdmin()` returns; emits 'listening', 'error' and 'close'. */
export interface AdminEndpoint extends EventEmitter {
  readonly http: import('http').Server
  address (): import('net').AddressInfo | string | null
  close (cb?: () => void): this
}

/** Also callable as `Client.call(this)` from an ES5 subclass (`util.inherits`). */
export class Client extends SendEmitter {
  constructor ()
  options: ClientOptions | null
  /** The secret our server issued for this session (undefined with an old server): keep it with `sessionID` to resume after a restart. */
  resumeSecret: string | undefined
  connect (port: number | string, host?: string, cb?: () => void): this
  connect (port: number | string, cb: () => void): this
  connect (options: ClientOptions, cb?: () => void): this
  /** Closes the socket and connects again at once. */
  reconnect (cb?: () => void): void
  /** Reconnects after every drop, backing off from `min` to `max` ms with jitter. Defaults 100 and 60000. */
  autoReconnect (min?: number, max?: number): void
  /** Turns auto-reconnect off, flushes pending writes, then closes. */
  disconnect (): void
  /** Connects over a duplex stream the application opened (reconnects need `options.createConnection`). */
  attach (stream: NodeJS.ReadWriteStream): this
  /** Traffic and state; null before connect(). */
  stats (): ClientStats | null
  ref (): this
  unref (): this

  on (event: 'connect', listener: (config: { objectMode: boolean; enableAcks: boolean }) => void): this
  on (event: 'reconnecting', listener: (info: { attempt: number; delay: number }) => void): this
  on (event: 'invalidateSession', listener: () => void): this
  on (event: string, listener: (...args: any[]) => void): this
}

/** A server-side connection. */
export class Connection extends SendEmitter {
  readonly server: Server
  readonly sessionID: string
  /** The server's store (`options.store`), or null for the built-in one. */
  readonly sessionStore: ConnectStyleStore | RedisStore | null
  /**
   * A durable send (needs a `redisStore()`): `persisted` resolves once the
   * event is in Redis, from where whichever server the session resumes on
   * delivers it; `acked` once the client acknowledged it, never before
   * `persisted`. Left alone, neither is an unhandled rejection.
   */
  sendDurable (event: string, ...args: any[]): DurableSend
  /** Destroys the stored session and tells the client, which drops and starts a new one. */
  invalidateSession (): void
  /** Closes this connection after what was sent on it; `disconnect` fires once closed. */
  disconnect (): void
  /** The original's handshake handlers; the handshake has completed before the object exists, so they only return it. */
  start (config?: object): this
  resume (id?: string, config?: object): this
  ref (): this
  unref (): this
  on (event: 'connect', listener: (reconnect?: true) => void): this
  on (event: string, listener: (...args: any[]) => void): this
}

/** The two stages of a durable send (`conn.sendDurable`). */
export interface DurableSend {
  /** The event is in the Redis store (rejects with code `ESTORE` if it could not be saved). */
  persisted: Promise<void>
  /** The client acknowledged it (after `persisted`). */
  acked: Promise<void>
}

/** The callback of a send on a `durable: true` server: called once per stage, 'persisted' first. */
export type DurableCallback = (err: Error | null, stage: 'persisted' | 'acked') => void

export interface ServerOptions extends PeerOptions {
  /**
   * Every send with a callback is durable: the callback is called twice,
   * `cb(err, 'persisted')` once the event is in Redis, then `cb(err, 'acked')`
   * (see `DurableCallback`). Needs `store: redisStore(...)`.
   */
  durable?: boolean
  /** A connect-style store, or `redisStore(...)`. Default: in memory, in Rust. */
  store?: ConnectStyleStore | RedisStore
  /** ms of idleness after which the default store forgets a session. Default 24 h. */
  sessionTTL?: number
  /** Cap on the default store's sessions (least recently used evicted). Default 1,000,000. */
  maxSessions?: number
  /** Cap on the bytes of all sessions in the default store (least recently used evicted). Default 256 MiB. */
  maxStoreBytes?: number
  /** ms a JavaScript store may take to answer. Default 10000. */
  storeTimeout?: number
  /** ms a dropped session's pending events wait for it to resume. Default 120000. */
  resumeWindow?: number
  /** Options of the connect Cookie stored in each session, as in the original. */
  cookie?: object
  /** Native TLS (rustls). */
  tls?: TlsOptions
  /** The original's factory hook, e.g. `tls.createServer`: called as `createServer(options, onStream)`. */
  createServer?: (options: ServerOptions, onStream: (stream: NodeJS.ReadWriteStream) => void) => {
    listen(...args: any[]): unknown
    close(cb?: (err?: Error) => void): unknown
    address(): unknown
    on(event: string, listener: (...args: any[]) => void): unknown
  }
  [option: string]: unknown
}

export interface ListenOptions {
  port?: number | string
  host?: string
  /** A Unix socket. */
  path?: string
  backlog?: number
}

export interface AddressInfo {
  address: string
  port: number
  family: string
}

/** net's `drop` event: a connection refused over `maxConnections`. */
export interface DropInfo {
  localAddress?: string
  localPort?: number
  localFamily?: string
  remoteAddress?: string
  remotePort?: number
  remoteFamily?: string
}

/** A uhura server with net.Server's surface. Also callable as `Server.call(this, options, cb)`. */
export class Server extends EventEmitter {
  constructor (options?: ServerOptions, onConnection?: (conn: Connection, reconnect?: true) => void)
  constructor (onConnection?: (conn: Connection, reconnect?: true) => void)
  readonly listening: boolean
  logErrors: boolean
  /** Connections beyond this many are closed at once (`drop` event). Default: no limit. */
  maxConnections: number | undefined
  readonly sessionStore: ConnectStyleStore | RedisStore | null
  /** The original's `new Server(options).start(options, cb)`: takes the connection callback. */
  start (options: ServerOptions | ((conn: Connection, reconnect?: true) => void), cb?: (conn: Connection, reconnect?: true) => void): this
  /**
   * Emits `event` on session `sessionID` wherever in the fleet it is
   * connected; offline, it waits in the session's queue in Redis until the
   * session resumes on any server. A trailing function is not sent: it is
   * called once the event is in that queue, or with an error
   * (`ERR_UHURA_NO_SESSION` for a session the store does not know). Without
   * Redis: the sessions of this server only.
   */
  sendTo (sessionID: string, event: string, ...args: any[]): void
  /**
   * Emits `event` on every session connected to a server of the fleet
   * (this server alone without Redis). A trailing function is called once
   * it is handed to the fleet.
   */
  broadcast (event: string, ...args: any[]): void
  /** Connections open now, handshaken or not. */
  getConnections (cb: (err: Error | null, count: number) => void): this
  listen (port?: number | string, host?: string, backlog?: number, cb?: () => void): this
  listen (port: number | string, host: string, cb?: () => void): this
  listen (port: number | string, backlog: number, cb?: () => void): this
  listen (port: number | string, cb?: () => void): this
  listen (options: ListenOptions, cb?: () => void): this
  listen (path: string, cb?: () => void): this
  listen (cb?: () => void): this
  /** Port and address for TCP; the path for a Unix socket; null before listening. */
  address (): AddressInfo | string | null
  /** Stops accepting; `close` fires when every connection has ended. `cb` gets ERR_SERVER_NOT_RUNNING if it was not listening. */
  close (cb?: (err?: Error) => void): this
  ref (): this
  unref (): this
  /** Counters and gauges (README, "Metrics and admin endpoint"). */
  metrics (): ServerMetrics
  /** One entry per open connection. */
  connections (): ConnectionInfo[]
  /** Sessions of open connections and of dropped ones waiting to resume. */
  sessions (): SessionInfo[]
  /** `metrics()` in the Prometheus text exposition format. */
  metricsText (): string
  /** Serves /metrics, /connections, /sessions and a dashboard over HTTP; closed with the server. */
  listenAdmin (options: AdminOptions, cb?: (err: Error | null) => void): AdminEndpoint

  /** Every accepted connection, before its handshake (as net.Server). */
  on (event: 'connection', listener: (socket: UhuraSocket) => void): this
  /** A completed handshake: the createServer callback's arguments. */
  on (event: 'handshake', listener: (conn: Connection, reconnect?: true) => void): this
  on (event: 'drop', listener: (info: DropInfo) => void): this
  on (event: 'listening' | 'close', listener: () => void): this
  on (event: 'error' | 'clientError', listener: (err: Error & { code?: string }) => void): this
  on (event: string, listener: (...args: any[]) => void): this
}

export function createServer (options: ServerOptions, onConnection?: (conn: Connection, reconnect?: true) => void): Server
export function createServer (onConnection?: (conn: Connection, reconnect?: true) => void): Server

export function createClient (port: number | string, host?: string, cb?: () => void): Client
export function createClient (port: number | string, cb: () => void): Client
export function createClient (options: ClientOptions, cb?: () => void): Client

/** Operator metrics. */
export const metrics: {
  /**
   * Registers collectors in a prom-client Registry that read `server.metrics()` on each scrape (prom-client is an optional
   * peer dependency). Servers sharing one registry each need `labels` telling them apart, with the same names for all.
   */
  register (registry: object, server: Server, labels?: Record<string, string>): object
  /** A `server.metrics()` snapshot as Prometheus text. */
  text (snapshot: ServerMetrics): string
}
