'use strict'
// The wire as the tests write and read it by hand.

const SESSION_ID_RE = /^[A-Za-z0-9]{24}$/

// A client's opening messages, as a raw socket sends them: an empty session,
// then `start` asking for object mode with acks.
const CLIENT_HANDSHAKE = '[\n["_set",{}]\n,\n["start",{"objectMode":true,"enableAcks":true}]'

// Splits one direction of a connection's text, as the old writers frame it
// ("[\n<msg>\n,\n<msg>..."), into its complete JSON messages. JSON.stringify
// output never holds a raw newline, so "\n,\n" only separates messages.
// An incomplete last message is left out.
function parseFrames (text) {
  const body = text.replace(/^\s*\[\s*/, '')
  const out = []
  for (const piece of body.split(/\n,\n/)) {
    const p = piece.replace(/\n\]\s*$/, '').trim() // the root array's closer
    if (!p) continue
    try { out.push(JSON.parse(p)) } catch (_) { /* incomplete tail */ }
  }
  return out
}

module.exports = { SESSION_ID_RE, CLIENT_HANDSHAKE, parseFrames }
