'use strict';
// Small process helpers shared by `npm start` and `npm run demo`: spawn the built apps with
// prefixed output, and stop them all on SIGINT/SIGTERM or when one dies.
const { spawn } = require('node:child_process');
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');
const ENTRY = {
  api: 'dist/apps/api/apps/api/src/main.js',
  worker: 'dist/apps/worker/apps/worker/src/main.js',
  sim: 'dist/apps/comfyui-sim/apps/comfyui-sim/src/main.js',
};

function requireBuild(names) {
  const missing = names.filter((n) => !existsSync(join(ROOT, ENTRY[n])));
  if (missing.length) {
    console.error(`Not built yet (${missing.join(', ')}): run "npm run build" first.`);
    process.exit(1);
  }
}

const children = new Set();
let stopping = false;

function run(name, env, { onExit } = {}) {
  const child = spawn(process.execPath, [join(ROOT, ENTRY[name])], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = `[${name}]`.padEnd(9);
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) process.stdout.write(`${prefix}${l}\n`);
    });
  }
  children.add(child);
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) {
      console.error(`${prefix}exited (${signal ?? code}); stopping everything`);
      stopAll(code || 1);
    }
    onExit?.(code, signal);
  });
  return child;
}

function stopAll(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  const force = setTimeout(() => {
    for (const c of children) c.kill('SIGKILL');
  }, 35_000);
  force.unref();
  const wait = setInterval(() => {
    if (!children.size) {
      clearInterval(wait);
      cleanups.forEach((f) => f());
      process.exit(code);
    }
  }, 50);
}

const cleanups = [];
function onStop(fn) {
  cleanups.push(fn);
}

process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));

module.exports = { ROOT, run, stopAll, requireBuild, onStop };
