'use strict';
// `node scripts/run.js <api|worker|sim> [args…]`: runs one built app in this process, so
// package.json, the Dockerfile and systemd units need not know where the build puts it.
const { entryPath, requireBuildOrExit } = require('./lib/processes');

const APPS = ['api', 'worker', 'sim'];
// The app reads its own flags from process.argv.slice(2), as if started directly.
const [name] = process.argv.splice(2, 1);
if (!APPS.includes(name)) {
  console.error(`usage: node scripts/run.js <${APPS.join('|')}> [args…]`);
  process.exit(2);
}
requireBuildOrExit([name]);
require(entryPath(name));
