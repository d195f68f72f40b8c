'use strict'
// The defaults JavaScript shows or checks, as Rust defines them
// (src/node/defaults.rs): each is written in one place only, there. The rest
// (session TTL, maxSessions, reconnect backoff, ...) JavaScript leaves out of
// the options it passes, and Rust applies its own.

module.exports = Object.freeze(require('./addon').defaults())
