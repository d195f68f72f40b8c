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
  /** Most events queued while not connected; beyond it the oldest is dropped (`drop` event). Default Infinity. */
  maxQueueLength?: number
  /** Print `err.stack` of every error event. */
  logErrors?: boolean
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
  send(event: string, ...args: any[]): void
  /** Like `send(event, ...args, cb)`, as a Promise that settles on the ack. */
  sendWithAck(event: string, ...args: any[]): Promise<void>
  /** Sets one session field (both ends). */
  set(key: string, value: any): void
  /** Merges fields into the session (both ends). */
  set(fields: Record<string, any>): void
  /** One session field. */
  get(key: string): any
  /** The whole session object. */
  get(): Session

  on(event: 'connect', listener: (arg?: any) => void): this
  on(event: 'disconnect', listener: () => void): this
  on(event: 'error', listener: (err: Error & { code?: string }) => void): this
  on(event: '_set', listener: (key: string | Record<string, any>, value?: any) => void): this
  on(event: 'drop', listener: (err: Error) => void): this
  on(event: string, listener: (...args: any[]) => void): this
}

export interface ClientOptions extends PeerOptions {
  port: number | string
  host?: string
}

export class Client extends SendEmitter {
  options: ClientOptions | null
  connect(port: number | string, host?: string, cb?: () => void): this
  connect(port: number | string, cb: () => void): this
  connect(options: ClientOptions, cb?: () => void): this
  /** Closes the socket and connects again at once. */
  reconnect(cb?: () => void): void
  /** Reconnects after every drop, backing off from `min` to `max` ms with jitter. Defaults 100 and 60000. */
  autoReconnect(min?: number, max?: number): void
  /** Turns auto-reconnect off, flushes pending writes, then closes. */
  disconnect(): void
  ref(): this
  unref(): this

  on(event: 'connect', listener: (config: { objectMode: boolean; enableAcks: boolean }) => void): this
  on(event: 'reconnecting', listener: (info: { attempt: number; delay: number }) => void): this
  on(event: 'invalidateSession', listener: () => void): this
  on(event: string, listener: (...args: any[]) => void): this
}

/** A server-side connection. */
export class Connection extends SendEmitter {
  readonly server: Server
  readonly sessionID: string
  /** Destroys the stored session and tells the client, which drops and starts a new one. */
  invalidateSession(): void
  ref(): this
  unref(): this
  on(event: 'connect', listener: (reconnect?: true) => void): this
  on(event: string, listener: (...args: any[]) => void): this
}

export interface ServerOptions extends PeerOptions {}

export interface ListenOptions {
  port?: number | string
  host?: string
  backlog?: number
}

export interface AddressInfo {
  address: string
  port: number
  family: string
}

export class Server extends EventEmitter {
  constructor(options?: ServerOptions, onConnection?: (conn: Connection, reconnect?: true) => void)
  constructor(onConnection?: (conn: Connection, reconnect?: true) => void)
  readonly listening: boolean
  logErrors: boolean
  listen(port?: number | string, host?: string, backlog?: number, cb?: () => void): this
  listen(port: number | string, host: string, cb?: () => void): this
  listen(port: number | string, backlog: number, cb?: () => void): this
  listen(port: number | string, cb?: () => void): this
  listen(options: ListenOptions, cb?: () => void): this
  listen(cb?: () => void): this
  address(): AddressInfo | null
  close(cb?: () => void): this
  ref(): this
  unref(): this

  on(event: 'connection', listener: (conn: Connection, reconnect?: true) => void): this
  on(event: 'listening' | 'close', listener: () => void): this
  on(event: 'error' | 'clientError', listener: (err: Error & { code?: string }) => void): this
  on(event: string, listener: (...args: any[]) => void): this
}

export function createServer(options: ServerOptions, onConnection?: (conn: Connection, reconnect?: true) => void): Server
export function createServer(onConnection?: (conn: Connection, reconnect?: true) => void): Server

export function createClient(port: number | string, host?: string, cb?: () => void): Client
export function createClient(port: number | string, cb: () => void): Client
export function createClient(options: ClientOptions, cb?: () => void): Client
