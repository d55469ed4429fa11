'use strict';
// `npm run keys -- create|list|revoke …`: API key administration (docs/security.md). Runs the
// compiled CLI of the API app, so it needs `npm run build` first; Redis and the key prefix come
// from REDIS_URL and QUEUE_PREFIX, exactly as for the API.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const entry = join(__dirname, '..', 'dist/apps/api/apps/api/src/auth/keys.cli.js');
if (!existsSync(entry)) {
  console.error('Not built yet (api): run "npm run build" first.');
  process.exit(1);
}
require(entry)
  .main(process.argv.slice(2))
  .then(
    (code) => process.exit(code),
    (err) => {
      console.error(`keys: ${err.message}`);
      process.exit(1);
    },
  );
