#!/usr/bin/env node
'use strict'
const { Command } = require('commander')

const program = new Command()
program.name('uhura').version(require('../package.json').version)
require('../lib/cli/stats').register(program)
program.parseAsync()
