'use strict'
// The wire as `tap` and `sub --raw` show it: the stream framing of
// docs/PROTOCOL.md §1 (one streaming JSON array per direction, its depth-1
// elements the messages) split in JavaScript, and each message named by its
// shape (§2). Display only: the addon's reader is the one peers rely on. So
// this one never refuses anything: what does not frame is reported as
// malformed and reading resumes at the next line, since every peer writes
// each message on its own line.

const { StringDecoder } = require('node:string_decoder')
const { maxMessageSize } = require('../defaults')

const CLOSER = { '[': ']', '{': '}' }

/**
 * Splits one direction of a connection into messages. `onItem` gets
 * { text, value } per message, { text, error } per malformed piece.
 */
class Framer {
  constructor (onItem) {
    this.onItem = onItem
    this.decoder = new StringDecoder('utf8')
    // 'root': before the stream's `[`; 'between': between messages;
    // 'message': inside one; 'skip': after malformed input, up to a newline.
    this.state = 'root'
    this.rootOpen = false
    this.text = ''
    this.stack = []
    this.inString = false
    this.escape = false
    this.error = ''
  }

  /** Feeds bytes (or text) as they arrive, in any chunking. */
  push (chunk) {
    const s = typeof chunk === 'string' ? chunk : this.decoder.write(chunk)
    let start = 0
    for (let i = 0; i < s.length; i++) {
      const ch = s[i]
      if (this.state === 'message') {
        if (this.inString) {
          if (this.escape) this.escape = false
          else if (ch === '\\') this.escape = true
          else if (ch === '"') this.inString = false
        } else if (ch === '"') {
          this.inString = true
        } else if (ch === '[' || ch === '{') {
          this.stack.push(ch)
        } else if (ch === ']' || ch === '}') {
          if (CLOSER[this.stack.pop()] !== ch) {
            this.text += s.slice(start, i + 1)
            this.malformed(`unbalanced ${ch}`)
            continue
          }
          if (this.stack.length === 0) {
            this.text += s.slice(start, i + 1)
            this.message()
          }
        }
        continue
      }
      if (this.state === 'skip') {
        if (ch === '\n') this.flushMalformed()
        else this.text += ch
        continue
      }
      if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue
      if (this.state === 'root') {
        if (ch === '[') {
          this.state = 'between'
          this.rootOpen = true
        } else {
          this.text = ch
          this.malformed('the stream is not a JSON array')
        }
      } else if (ch === ',') {
        // a separator between messages
      } else if (ch === ']') {
        // the stream's array closed; another may follow
        this.state = 'root'
        this.rootOpen = false
      } else if (ch === '[' || ch === '{') {
        this.state = 'message'
        this.stack = [ch]
        this.inString = false
        this.escape = false
        this.text = ''
        start = i
      } else {
        this.text = ch
        this.malformed('a message that is not an array or an object')
      }
    }
    if (this.state === 'message') {
      this.text += s.slice(start)
      if (this.text.length > maxMessageSize) this.malformed(`a message longer than maxMessageSize (${maxMessageSize})`)
    }
  }

  /** The stream ended: a message left open is reported. */
  end () {
    const rest = this.decoder.end()
    if (rest) this.push(rest)
    if (this.state === 'message') {
      this.state = 'skip'
      this.error = 'the stream ended inside a message'
    }
    if (this.state === 'skip') this.flushMalformed()
  }

  message () {
    const text = this.text
    this.text = ''
    this.state = 'between'
    let value
    try {
      value = JSON.parse(text)
    } catch (e) {
      this.onItem({ text, error: e.message })
      return
    }
    this.onItem({ text, value })
  }

  /** Input that does not frame: skip to the end of its line, then report it. */
  malformed (error) {
    this.state = 'skip'
    this.error = error
  }

  flushMalformed () {
    const text = this.text
    this.text = ''
    this.state = this.rootOpen ? 'between' : 'root'
    this.onItem({ text, error: this.error })
  }
}

/**
 * What a message is, by its shape (PROTOCOL.md §2, §9): { kind, name, args,
 * id }, kind one of event, ack, set, handshake, heartbeat, refused.
 */
function classify (value) {
  const array = Array.isArray(value)
  const args = array ? value : value && Array.isArray(value.args) ? value.args : []
  const name = typeof args[0] === 'string' ? args[0] : undefined
  const id = !array && value && value.id != null ? value.id : undefined
  let kind = 'event'
  if (name === undefined) kind = 'unknown'
  else if (name.startsWith('ack::')) return { kind: 'ack', name, args: [], id: name.slice(5) }
  else if (name === '_uhura_ack' && array) return { kind: 'ack', name, args: [], id: args[1], cumulative: true }
  else if (name === '_set') kind = 'set'
  else if (array && name === '_uhura_hb') kind = 'heartbeat'
  else if (array && name === '_uhura_refused') kind = 'refused'
  else if (name === 'start' || name === 'connect') kind = 'handshake'
  return { kind, name, args: args.slice(1), id }
}

module.exports = { Framer, classify }
