#!/usr/bin/env node
'use strict';
// The CLI's entry as a plain file, so the bin link exists before the package is built.
let cli;
try {
  cli = require('../dist/cli.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && /dist[\\/]cli\.js/.test(String(e.message))) {
    process.stderr.write('fictures: the client is not built; run `npm run build` first\n');
    process.exit(2);
  }
  throw e;
}
cli.main(process.argv).then((code) => {
  process.exitCode = code;
});
