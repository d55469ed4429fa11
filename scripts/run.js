'use strict';
// `node scripts/run.js <api|worker|sim> [args…]`: runs one built app in this process, so
// package.json, the Dockerfile and systemd units need not know where the build puts it.
const { entryPath, requireBuildOrExit } = require('./lib/processes');

const APPS = ['api', 'worker', 'sim'];
// Removed from argv so the app reads its own flags from process.argv.slice(2).
const [name] = process.argv.splice(2, 1);
if (!APPS.includes(name)) {
  console.error(`usage: node scripts/run.js <${APPS.join('|')}> [args…]`);
  process.exit(2);
}
requireBuildOrExit([name]);
// As node's own main module (not a plain require): an entry that starts only when
// `require.main === module` (the simulator's) starts, and no second process stands between it and
// the signals of a terminal, Docker or systemd.
process.argv[1] = entryPath(name);
require('node:module').runMain(process.argv[1]);
