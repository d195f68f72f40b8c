'use strict'
// Command-line values shared by the commands: their parsers (a bad value is
// a usage error, exit 2, through commander's InvalidArgumentError), the
// options several commands take, and the error that makes a command fail
// (exit 1).

const fs = require('node:fs')
const { InvalidArgumentError, Option } = require('commander')
const { Output } = require('./output')

/** A command that ran and failed (refused, timed out, lost its peer): exit 1 with this message. */
class Failure extends Error {}

/** A TCP port, 0 to 65535. */
function port (text) {
  const n = Number(text)
  if (!/^\d+$/.test(text) || n > 65535) throw new InvalidArgumentError(`not a port: ${JSON.stringify(text)}`)
  return n
}

/** A whole number of at least `min`. */
function integer (min) {
  return (text) => {
    const n = Number(text)
    if (!/^\d+$/.test(text) || n < min) throw new InvalidArgumentError(`not a whole number >= ${min}: ${JSON.stringify(text)}`)
    return n
  }
}

/**
 * `host:port`, `[v6]:port`, or a bare port (on 127.0.0.1), as
 * { host, port }.
 */
function address (text) {
  if (/^\d+$/.test(text)) return { host: '127.0.0.1', port: port(text) }
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)
  if (!m) throw new InvalidArgumentError(`not host:port: ${JSON.stringify(text)}`)
  return { host: m[1] || m[2], port: port(m[3]) }
}

/** `host:port` of an address, brackets around an IPv6 host. */
function formatAddress (host, p) {
  return host && host.includes(':') ? `[${host}]:${p}` : `${host}:${p}`
}

/** A value given on the command line: its JSON if it parses, else the text as a string. */
function value (text) {
  try {
    return JSON.parse(text)
  } catch (_) {
    return text
  }
}

/** Collects a repeatable `key=value` option into [[key, value], ...], the value read by `value`. */
function pair (text, previous = []) {
  const i = text.indexOf('=')
  if (i <= 0) throw new InvalidArgumentError(`not key=value: ${JSON.stringify(text)}`)
  return previous.concat([[text.slice(0, i), value(text.slice(i + 1))]])
}

/** Collects a repeatable option into an array. */
function collect (text, previous = []) {
  return previous.concat([text])
}

/** A file's contents; a file that cannot be read fails the command. */
function readFile (file, what) {
  try {
    return fs.readFileSync(file)
  } catch (e) {
    throw new Failure(`cannot read the ${what} ${file}: ${e.message}`)
  }
}

/** Adds --json to a command. */
function withJson (command) {
  return command.option('--json', 'one JSON object per line instead of human-readable lines')
}

/**
 * Adds the options of the commands that connect to a server: TLS, and
 * --timeout described as `timeout` says.
 */
function withClientOptions (command, timeout) {
  return withJson(command)
    .option('--tls-ca <file>', 'connect with TLS, trusting the CA certificates in this PEM file')
    .option('--tls-servername <name>', 'the server name TLS checks (default: the host)')
    .addOption(new Option('--timeout <ms>', timeout).argParser(integer(1)).default(5000))
}

/** Adds the repeatable --session key=value. */
function withSession (command) {
  return command.addOption(new Option('--session <key=value>', 'set this session key first, the value JSON or else a string (repeatable)')
    .argParser(pair).default([], 'none'))
}

/** Rounds a duration in ms for --json: microseconds are as fine as a timer here resolves. */
function round (ms) {
  return Number(ms.toFixed(3))
}

/** The `createClient` options for `target` ({ host, port }) and a command's options. */
function clientOptions (target, opts) {
  const options = { host: target.host, port: target.port }
  if (opts.tlsCa) {
    options.tls = { ca: readFile(opts.tlsCa, 'CA file') }
    if (opts.tlsServername) options.tls.servername = opts.tlsServername
  }
  return options
}

/** The Output of a command's options. */
function outputOf (opts) {
  return new Output({ json: Boolean(opts.json) })
}

/** Resolves on the first SIGINT or SIGTERM: how a long-running command is stopped. */
function untilSignal () {
  return new Promise((resolve) => {
    const done = (signal) => {
      process.removeListener('SIGINT', done)
      process.removeListener('SIGTERM', done)
      resolve(signal)
    }
    process.on('SIGINT', done)
    process.on('SIGTERM', done)
  })
}

module.exports = {
  Failure,
  port,
  integer,
  address,
  formatAddress,
  value,
  pair,
  collect,
  readFile,
  withJson,
  withClientOptions,
  withSession,
  round,
  clientOptions,
  outputOf,
  untilSignal,
}
