'use strict'
// Processes: the test file's own (a watchdog for leaked handles) and node
// children running a script or a fixture.

const { spawn } = require('node:child_process')
const { after } = require('node:test')
const { waitUntil, withTimeout } = require('./wait')

// File-level watchdog: if the test process is still alive 10 s after the last
// test of the file (a leaked handle, e.g. a client or server that cannot be
// closed), list what keeps it alive and exit non-zero instead of hanging the
// whole `node --test` run.
function installExitWatchdog (ms = 10000) {
  after(() => {
    const timer = setTimeout(() => {
      const handles = (process._getActiveHandles ? process._getActiveHandles() : [])
        .map((h) => (h && h.constructor ? h.constructor.name : typeof h))
      console.error(`uhura tests: process still alive ${ms} ms after the last test; ` +
        `active handles: ${JSON.stringify(handles)}. Something was not closed.`)
      process.exit(70)
    }, ms)
    timer.unref()
  })
}

/**
 * A node child running `args` (a script file and its arguments, or
 * ['-e', code]), `name` in messages; SIGKILLed after test `t` if still
 * alive. Other options go to spawn (e.g. `timeout`, `stdio`). Its stdout and
 * stderr are collected as text; `command(line)` writes a line to its stdin.
 */
function spawnNode (t, args, { name = 'the child', ...options } = {}) {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], ...options })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (d) => { out += d })
  child.stderr.setEncoding('utf8').on('data', (d) => { err += d })
  if (child.stdin) child.stdin.on('error', () => {})
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const alive = () => child.exitCode === null && child.signalCode === null
  const kill = async (signal = 'SIGKILL') => {
    if (alive()) child.kill(signal)
    return withTimeout(exited, 5000, `${name} to exit after ${signal}`)
  }
  t.after(() => kill('SIGKILL'))
  return {
    child,
    exited,
    alive,
    kill,
    out: () => out,
    err: () => err,
    lines: () => out.split('\n').filter(Boolean),
    command: (line) => child.stdin.write(line + '\n'),
    waitOut: (re, ms = 10000) => waitUntil(() => re.test(out), ms,
      `${name}'s stdout to match ${re} (stdout tail: ${JSON.stringify(out.slice(-300))}, stderr: ${JSON.stringify(err.slice(-500))})`),
  }
}

module.exports = { installExitWatchdog, spawnNode }
