'use strict';
// `npm start`: the API and the worker together, for one machine. Configuration from the environment.
const P = require('./lib/processes');

// The worker may finish its running prompt for WORKER_SHUTDOWN_GRACE_MS (30 s) on SIGTERM.
P.installExitHandlers({ graceMs: 35_000, signalExitCode: 0 });
P.requireBuildOrExit(['api', 'worker']);
P.runForeground('worker');
P.runForeground('api');
