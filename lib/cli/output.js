'use strict'
// What every command prints: one record per thing that happened. On a
// terminal (or any stream without --json) a timestamped, column-aligned line,
// coloured when the terminal takes colour; with --json one JSON object per
// line, never coloured, so scripts and tests parse it line by line.

const picocolors = require('picocolors')

/** Colour of a record's type in human output; types not listed stay plain. */
const TYPE_COLOURS = {
  listening: 'green',
  connection: 'cyan',
  handshake: 'cyan',
  connected: 'cyan',
  open: 'cyan',
  event: 'bold',
  message: 'bold',
  reply: 'bold',
  set: 'magenta',
  ack: 'green',
  sent: 'blue',
  disconnect: 'yellow',
  close: 'yellow',
  malformed: 'red',
  error: 'red',
  timeout: 'red',
}

/** Width of the type column; longer types push the line right rather than being cut. */
const TYPE_WIDTH = 10
/** Width of the peer / connection column of human output. */
const PEER_WIDTH = 21

/** `HH:MM:SS.mmm`, local time: a human reads a line next to a wall clock. */
function clock (date) {
  const p = (n, w = 2) => String(n).padStart(w, '0')
  return `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}.${p(date.getMilliseconds(), 3)}`
}

/** JSON text of a value for human output: `undefined` (an absent argument) reads as nothing. */
function show (value) {
  const text = JSON.stringify(value)
  return text === undefined ? '' : text
}

/** Milliseconds with a precision a human can compare at a glance. */
function ms (value) {
  return value < 10 ? value.toFixed(3) : value < 100 ? value.toFixed(2) : value.toFixed(1)
}

class Output {
  /**
   * `json`: one JSON object per line instead of human lines. `stream`:
   * where records go (stdout). `colour`: force colour on or off (default:
   * on when the stream is a colour terminal and not --json).
   */
  constructor ({ json = false, stream = process.stdout, colour } = {}) {
    this.json = json
    this.stream = stream
    const enabled = colour !== undefined
      ? colour
      : !json && Boolean(stream.isTTY) && picocolors.isColorSupported
    this.c = picocolors.createColors(enabled)
  }

  /**
   * One record. `fields` is what --json prints (after `time` and `type`);
   * `peer` and `detail` are the human line's last two columns.
   */
  record (type, fields, { peer = '', detail = '' } = {}) {
    const now = new Date()
    if (this.json) {
      this.stream.write(JSON.stringify({ time: now.toISOString(), type, ...fields }) + '\n')
      return
    }
    const c = this.c
    const colour = c[TYPE_COLOURS[type]] || String
    const line = [c.dim(clock(now)), colour(type.padEnd(TYPE_WIDTH)), peer.padEnd(PEER_WIDTH), detail]
    this.stream.write(line.join(' ').trimEnd() + '\n')
  }

  /**
   * A summary table: `rows` of objects, `columns` of { key, title, format }.
   * Human output aligns the columns (numbers right, text left); --json
   * prints each row as a record of `type`.
   */
  table (type, rows, columns) {
    if (this.json) {
      for (const row of rows) this.stream.write(JSON.stringify({ time: new Date().toISOString(), type, ...row }) + '\n')
      return
    }
    const cells = rows.map((row) => columns.map(({ key, format }) => {
      const v = row[key]
      return v === undefined || v === null ? '-' : format ? format(v) : String(v)
    }))
    const numeric = columns.map(({ key }) => rows.every((row) => typeof row[key] !== 'string'))
    const widths = columns.map(({ title }, i) => Math.max(title.length, ...cells.map((r) => r[i].length)))
    const pad = (text, i) => (numeric[i] ? text.padStart(widths[i]) : text.padEnd(widths[i]))
    const c = this.c
    this.stream.write(c.bold(columns.map(({ title }, i) => pad(title, i)).join('  ').trimEnd()) + '\n')
    for (const r of cells) this.stream.write(r.map(pad).join('  ').trimEnd() + '\n')
  }
}

module.exports = { Output, show, ms }
