'use strict'
// examples/fleet.js runs to the end: a Redis, two servers in child
// processes, three clients; a sendTo across servers, a server SIGKILLed
// mid-stream with nothing lost, a broadcast. Needs redis-server.

const { it } = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { installExitWatchdog, needRedis, spawnNode } = require('./helpers')

installExitWatchdog(5000)

it('examples/fleet.js tells its story and exits 0', { timeout: 40000 }, async (t) => {
  if (!needRedis(t)) return
  const example = spawnNode(t, [path.join(__dirname, '..', 'examples', 'fleet.js')], { name: 'examples/fleet.js' })
  const { code } = await example.exited
  const out = example.out()
  assert.equal(code, 0, `exit code (stdout: ${out}, stderr: ${example.err()})`)
  assert.match(out, /\[alice\] +got "hello from server B" while connected to server A \(sendTo across servers\)/)
  assert.match(out, /server A was SIGKILLed in the middle of its stream/)
  for (const name of ['alice', 'bob']) {
    assert.match(out, new RegExp(`\\[${name}\\] +failed over to server B: (\\d+) news persisted by A, all \\1 received, 0 lost, 0 duplicated`))
  }
  for (const name of ['alice', 'bob', 'carol']) assert.match(out, new RegExp(`\\[${name}\\] +heard the broadcast`))
  assert.match(out, /done: nothing lost, nothing duplicated/)
})
