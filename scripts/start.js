'use strict';
// `npm start`: the API and the worker together, for one machine. Configuration from the environment.
const { run, requireBuild } = require('./processes');

requireBuild(['api', 'worker']);
run('worker', {});
run('api', {});
