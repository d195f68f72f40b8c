'use strict'
// Which prebuilt binary fits this process, in napi-rs's naming: the
// `platformArchABI` of a target triple (linux-x64-gnu, darwin-arm64,
// win32-x64-msvc, ...), so that the binary of x86_64-unknown-linux-gnu is
// `uhura.linux-x64-gnu.node` in the package `uhura-linux-x64-gnu`.
// Used by the loader (lib/addon.js) and the install script (scripts/build.js).

const fs = require('fs')

const BINARY_NAME = 'uhura'

/** 'gnu' or 'musl': which C library this Linux process runs on. */
function linuxLibc () {
  // Alpine's /usr/bin/ldd is musl's loader; glibc's is a script naming glibc.
  try {
    const ldd = fs.readFileSync('/usr/bin/ldd', 'latin1')
    if (ldd.includes('musl')) return 'musl'
    if (ldd.includes('GLIBC') || ldd.includes('GNU C Library')) return 'gnu'
  } catch {
    // No ldd (a distroless image): ask the runtime below.
  }
  const report = process.report && process.report.getReport()
  return report && report.header && report.header.glibcVersionRuntime ? 'gnu' : 'musl'
}

/** napi-rs's name for `platform`, `arch` and, on Linux, `libc` (this process's by default). */
function platformArchABI (platform = process.platform, arch = process.arch, libc = platform === 'linux' ? linuxLibc() : undefined) {
  switch (platform) {
    case 'linux': return `linux-${arch}-${libc}`
    case 'win32': return `win32-${arch}-msvc`
    default: return `${platform}-${arch}`
  }
}

/** The platform package and the file it holds, for `abi`. */
function prebuilt (abi = platformArchABI()) {
  return { abi, packageName: `${BINARY_NAME}-${abi}`, file: `${BINARY_NAME}.${abi}.node` }
}

module.exports = { platformArchABI, prebuilt }
