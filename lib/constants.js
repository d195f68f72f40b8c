'use strict'
// Entry kinds of a delivered batch: [handle, kind, ...]. Mirrors src/engine/events.rs `Kind`.
const MESSAGE = 0
const ACKED = 1
const SET = 2
const CONNECTED = 3
const DISCONNECTED = 4
const ERROR = 5
const LISTENING = 6
const CLOSED = 7
const DROPPED = 8
const RECONNECTING = 9
const OUTPUT = 10
const TRANSPORT_CLOSED = 11
const RESUME_INPUT = 12
const OPEN_TRANSPORT = 13
const STORE_OP = 14
const ACK_TIMEOUT = 15
const STOPPED = 16
const WATCH = 17
const UNWATCH = 18
const LOG = 19
const ACCEPTED = 20
const REFUSED = 21

// Mirrors the default of `Config::max_session_bytes` (src/protocol/peer.rs).
const DEFAULT_MAX_SESSION_BYTES = 1024 * 1024

// Defaults of the limits on incoming messages (src/protocol/framing.rs and
// message.rs); send() and set() refuse what a peer with these would refuse.
const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
const DEFAULT_MAX_ARGS = 4096
const DEFAULT_MAX_DEPTH = 1000
// The highest maxDepth Rust accepts (framing::MAX_DEPTH_LIMIT).
const MAX_DEPTH_LIMIT = 2000

module.exports = {
  MESSAGE,
  ACKED,
  SET,
  CONNECTED,
  DISCONNECTED,
  ERROR,
  LISTENING,
  CLOSED,
  DROPPED,
  RECONNECTING,
  OUTPUT,
  TRANSPORT_CLOSED,
  RESUME_INPUT,
  OPEN_TRANSPORT,
  STORE_OP,
  ACK_TIMEOUT,
  STOPPED,
  WATCH,
  UNWATCH,
  LOG,
  ACCEPTED,
  REFUSED,
  DEFAULT_MAX_SESSION_BYTES,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MAX_ARGS,
  DEFAULT_MAX_DEPTH,
  MAX_DEPTH_LIMIT
}
