'use strict'
// `npm run lint`: the standard style (neostandard), for the package, its
// tests, benches, examples and scripts.
const neostandard = require('neostandard')
const globals = require('globals')

module.exports = [
  ...neostandard({ ts: true, ignores: ['target/**', 'node_modules/**', 'fuzz/**', 'npm/**'] }),
  {
    rules: {
      // `void x;` marks a value as used in the type fixtures.
      'no-void': ['error', { allowAsStatement: true }]
    }
  },
  {
    // The admin dashboard runs in the browser.
    files: ['lib/admin/dashboard.js'],
    languageOptions: { globals: globals.browser }
  }
]
