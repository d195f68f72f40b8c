'use strict'
// Loads the native addon, trying in order:
// 1. UHURA_NATIVE_PATH, an explicitly configured build (tests load a
//    fault-injection build this way). When set, it is the only candidate: a
//    build asked for by name must not be silently replaced by another.
// 2. A local build in the package folder: uhura.node (scripts/build.js: `npm
//    run build` in a checkout, or the source build of the install script) or
//    uhura.<platform>.node (`napi build --platform`).
// 3. The prebuilt binary of the platform package (uhura-linux-x64-gnu, ...),
//    one of the optionalDependencies, of which npm installs the matching one.

const fs = require('fs')
const path = require('path')
const { prebuilt } = require('./platform')

const ROOT = path.join(__dirname, '..')

/** Each way to get the addon, in order: what it is, and how to load it. */
function candidates (target) {
  if (process.env.UHURA_NATIVE_PATH) {
    const file = path.resolve(process.env.UHURA_NATIVE_PATH)
    return [{ what: `UHURA_NATIVE_PATH=${file}`, missing: 'not found', load: () => loadFile(file) }]
  }
  return [
    { what: `${path.join(ROOT, 'uhura.node')} (a local build)`, missing: 'not found', load: () => loadFile(path.join(ROOT, 'uhura.node')) },
    { what: `${path.join(ROOT, target.file)} (a local \`napi build --platform\`)`, missing: 'not found', load: () => loadFile(path.join(ROOT, target.file)) },
    { what: `the package ${target.packageName} (the prebuilt binary)`, missing: 'not installed', load: () => loadPackage(target.packageName) }
  ]
}

/** The addon at `file`; null when there is no such file. */
function loadFile (file) {
  if (!fs.existsSync(file)) return null
  return require(file)
}

/** The addon of the platform package `name`; null when it is not installed. */
function loadPackage (name) {
  let main
  try {
    main = require.resolve(name)
  } catch (e) {
    if (e.code === 'MODULE_NOT_FOUND') return null
    throw e
  }
  return require(main)
}

/** The first candidate that loads; else an error naming the platform, each candidate and why it failed, and the build command. */
function load () {
  const target = prebuilt()
  const tried = []
  let cause
  for (const { what, missing, load } of candidates(target)) {
    try {
      const addon = load()
      if (addon) return addon
      tried.push(`  ${what}: ${missing}`)
    } catch (e) {
      // Present but unusable (another platform's file, a missing system
      // library): the first such error is what the user needs to see.
      cause = cause || e
      tried.push(`  ${what}: ${e.message}`)
    }
  }
  const err = new Error(
    `uhura: cannot load the native addon for this platform (${target.abi}). Tried:\n${tried.join('\n')}\n` +
      `The prebuilt binary for ${target.abi}, when one is published, is the optional dependency ${target.packageName}: ` +
      'reinstall uhura with optional dependencies (not --omit=optional). ' +
      'Or build the addon from source with `npm rebuild uhura` (`npm run build` in a checkout of uhura), ' +
      'which needs Rust\'s cargo (https://rustup.rs) and a C compiler.'
  )
  err.code = 'UHURA_ADDON_NOT_FOUND'
  if (cause) err.cause = cause
  throw err
}

module.exports = load()
