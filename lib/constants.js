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
const PERSISTED = 22
const MESSAGES = 23

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
  PERSISTED,
  MESSAGES
}
