'use strict'
// Loads the native addon (uhura.node, built from src/ by scripts/build.js).

const path = require('path')

// UHURA_NATIVE_PATH: another build of the addon (tests load a fault-injection build this way).
const addonPath = process.env.UHURA_NATIVE_PATH ? path.resolve(process.env.UHURA_NATIVE_PATH) : path.join(__dirname, '..', 'uhura.node')
let addon
try {
  addon = require(addonPath)
} catch (e) {
  const err = new Error(
    `uhura: cannot load the native addon ${addonPath}: ${e.message}\n` +
      'Build it with `npm rebuild uhura` (or `npm run build` in a checkout of uhura); this needs Rust\'s cargo (https://rustup.rs).'
  )
  err.code = 'UHURA_ADDON_NOT_FOUND'
  err.cause = e
  throw err
}

module.exports = addon
