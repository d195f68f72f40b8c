#!/usr/bin/env node
'use strict'
// `npx uhura <command>`: operator tools for uhura peers, one module per
// command in lib/cli/, each exporting `register(program)`.
// Exit codes: 0 success, 1 the command failed (refused, timed out, lost its
// peer), 2 a usage error (unknown command or option, bad value).

const path = require('node:path')
const { Command, CommanderError } = require('commander')
const { version } = require('../package.json')

const COMMANDS = ['listen', 'send', 'sub', 'tap', 'bench', 'stats']

/** Exit once what was printed is out (a piped stdout may still hold some). */
function exit (code) {
  process.stdout.write('', () => process.exit(code))
}

async function main () {
  // A reader that went away (`uhura sub ... | head`) ends the command, quietly.
  process.stdout.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(0)
    throw err
  })
  const program = new Command()
  program
    .name('uhura')
    .version(version)
    .description('Operator tools for uhura peers: listen, send, subscribe, tap the wire, benchmark, read a server\'s metrics.')
    .showHelpAfterError('(run with --help for usage)')
    // Errors throw instead of exiting, so usage errors exit 2 below; inherited
    // by the commands registered after it.
    .exitOverride()
  for (const name of COMMANDS) require(path.join(__dirname, '..', 'lib', 'cli', name)).register(program)
  try {
    await program.parseAsync()
    // A command may have set its own code (stats: 1 when unreachable).
    exit(process.exitCode || 0)
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other commander error is a usage error.
      exit(err.exitCode === 0 ? 0 : 2)
      return
    }
    process.stderr.write(`uhura: ${err && err.message}\n`)
    exit(1)
  }
}

main()
