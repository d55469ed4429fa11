'use strict';
// `npm run keys -- create|list|revoke …`: API key administration (docs/security.md). Runs the
// compiled CLI of the API app, so it needs `npm run build` first; Redis and the key prefix come
// from REDIS_URL and QUEUE_PREFIX, exactly as for the API.
const { entryPath, requireBuildOrExit } = require('./lib/processes');

requireBuildOrExit(['keys']);
require(entryPath('keys'))
  .main(process.argv.slice(2))
  .then(
    (code) => process.exit(code),
    (err) => {
      console.error(`keys: ${err.message}`);
      process.exit(1);
    },
  );
