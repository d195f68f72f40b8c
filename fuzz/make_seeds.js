#!/usr/bin/env node
// Writes the seed corpora (fuzz/corpus/<target>/seed-*) from the recorded traffic in
// tests/vectors/. Run from anywhere: `node fuzz/make_seeds.js`. The seeds are committed;
// what libFuzzer adds next to them is not (fuzz/.gitignore).
'use strict'
const fs = require('fs')
const path = require('path')

const root = path.join(__dirname, '..')
const vectors = path.join(root, 'tests', 'vectors')
const corpus = path.join(__dirname, 'corpus')

function write (target, name, bytes) {
  const dir = path.join(corpus, target)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'seed-' + name), bytes)
}

// The depth-1 elements of a recorded stream `[\n<msg>\n,\n<msg>...`.
function messages (stream) {
  const t = stream.trim()
  const inner = t.startsWith('[') ? t.slice(1) : t
  return inner.split('\n,\n').map(s => s.trim()).filter(s => s.length > 0)
}

for (const file of fs.readdirSync(vectors).filter(f => f.endsWith('.json')).sort()) {
  const rec = JSON.parse(fs.readFileSync(path.join(vectors, file), 'utf8'))
  const base = file.replace(/\.json$/, '')
  for (const dir of ['client_to_server', 'server_to_client']) {
    const stream = Buffer.from(rec[dir], 'utf8')
    const name = `${base}-${dir}`
    // framing: [size selector][split count][splits, u16 LE][stream]
    write('framing', name, Buffer.concat([Buffer.from([3, 0]), stream]))
    write('framing', name + '-max256', Buffer.concat([Buffer.from([1, 0]), stream]))
    const cuts = [1, 7, 13, Math.floor(stream.length / 2), stream.length - 1]
    const head = Buffer.alloc(2 + cuts.length * 2)
    head[0] = 3
    head[1] = cuts.length
    cuts.forEach((c, i) => head.writeUInt16LE(c & 0xffff, 2 + i * 2))
    write('framing', name + '-split', Buffer.concat([head, stream]))

    // lines: each message as index.js would hand it over.
    const lines = []
    messages(rec[dir]).forEach((m, i) => {
      const v = JSON.parse(m)
      const args = Array.isArray(v) ? v : v.args
      const json = JSON.stringify(args)
      if (args[0] === '_set') lines.push('s' + JSON.stringify(args.slice(1)))
      else if (v.id) lines.push('a' + i + json)
      else lines.push('e' + json)
      lines.push('r' + m.replace(/\n/g, ''))
    })
    write('lines', name, lines.join('\n'))

    // The structured targets read their input through `arbitrary`; the recorded messages
    // themselves are built into them (`Recorded` steps), and the raw text is a start.
    write('peer', name, stream)
    write('session_merge', name, stream)
  }
}
