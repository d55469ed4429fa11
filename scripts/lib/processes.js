'use strict';
// The one process toolkit: where the built apps live, free and taken ports, a private redis-server,
// waiting for HTTP, and starting and stopping children. `npm start`, `npm run demo`, the benchmarks
// and the e2e test support all use it (plain CommonJS so `node` runs it as is; types beside it in
// processes.d.ts for the TypeScript tests). Everything it starts listens on loopback only.
const { spawn, spawnSync } = require('node:child_process');
const { existsSync, mkdirSync, mkdtempSync, rmSync } = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const ROOT = join(__dirname, '..', '..');
const HOST = '127.0.0.1';

// The only place that knows where `npm run build` puts each app (nest's outDir keeps the source tree).
const ENTRY = Object.freeze({
  api: 'dist/apps/api/apps/api/src/main.js',
  worker: 'dist/apps/worker/apps/worker/src/main.js',
  sim: 'dist/apps/comfyui-sim/apps/comfyui-sim/src/main.js',
  keys: 'dist/apps/api/apps/api/src/auth/keys.cli.js',
  openapi: 'dist/apps/api/apps/api/src/docs/openapi.cli.js',
});

// V8 flags an app starts with (NODE_OPTIONS cannot carry them). The API's and the worker's live heaps
// are ~40 MB and each image (fetched, stored, answered as data URL, b64_json or download) moves
// megabytes through them: with V8's default old-space limit, just above the live size, nearly every
// 1328² image started a full mark-compact whose incremental steps (3-35 ms) ran inside the next
// request or job. A 256 MB initial old space lets garbage gather instead (measured over 63 sync
// answers of 1328²: API 3 mark-compacts instead of ~30, worker 1 instead of ~37; the worker's prompt
// end → record p90 41 → 18 ms). V8 still collects when the old space nears its limit.
const HEAP_ROOM = '--initial-old-space-size=256';
const NODE_FLAGS = Object.freeze({ api: [HEAP_ROOM], worker: [HEAP_ROOM] });

class ProcessToolkitError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProcessToolkitError';
    this.code = code;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function entryPath(name) {
  if (!Object.prototype.hasOwnProperty.call(ENTRY, name)) throw new ProcessToolkitError('unknown_app', `unknown app "${name}" (known: ${Object.keys(ENTRY).join(', ')})`);
  return join(ROOT, ENTRY[name]);
}

function requireBuild(names) {
  const missing = names.filter((n) => !existsSync(entryPath(n)));
  if (missing.length) throw new ProcessToolkitError('not_built', `not built yet (${missing.join(', ')}): run "npm run build" first`);
}

/** For command-line scripts: the same check, said in one line with exit code 1. */
function requireBuildOrExit(names) {
  try {
    requireBuild(names);
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------------------------- ports

/** A port nobody listens on now, by binding port 0 and releasing it. */
function freePort(host = HOST) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * True when binding host:port fails because someone holds it. Asked before a child starts, so a
 * taken port is reported by the caller instead of the child dying after it was announced.
 */
function portInUse(port, host = HOST) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.once('error', (e) => (e.code === 'EADDRINUSE' ? resolve(true) : reject(e)));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(false)));
  });
}

// ----------------------------------------------------------------------------------------------- HTTP

/** One GET without keep-alive (no socket outlives the call); resolves { status } or rejects. */
function httpGet(url, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: GET ${url}`)));
    req.on('error', reject);
  });
}

/** Polls url until ok({status}) holds (default: any answer below 500); false after timeoutMs. */
async function waitHttp(url, timeoutMs = 30_000, ok = (r) => r.status < 500) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (ok(await httpGet(url, 1000))) return true;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  return false;
}

// ---------------------------------------------------------------------------------------- children

/**
 * Every child started through the toolkit, so one call can stop them all. Infrastructure (Redis)
 * stops after the apps, which still talk to it while they drain.
 */
const children = new Map();
const stopHooks = [];
let stopping = false;

const alive = (c) => !!c && c.exitCode === null && c.signalCode === null;

function track(child, { infrastructure = false } = {}) {
  if (stopping) {
    child.kill('SIGKILL');
    throw new ProcessToolkitError('stopping', 'not starting a process: shutting down');
  }
  children.set(child, infrastructure);
  child.once('exit', () => children.delete(child));
  return child;
}

function waitExit(child) {
  if (!alive(child)) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Sends sig to the child's PID and resolves once it exited, or after timeoutMs (then it still runs). */
async function stopChild(child, sig = 'SIGTERM', timeoutMs = 10_000) {
  if (!alive(child)) return;
  const exited = waitExit(child);
  try {
    process.kill(child.pid, sig);
  } catch {
    // gone between the check and the signal
  }
  let timer;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}

/** Only what a child needs from our environment, so a caller's shell settings never leak in. */
function baseEnv() {
  const env = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ']) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

/**
 * A built app as a child process (stdout/stderr piped unless told otherwise). inheritEnv passes our
 * whole environment (npm start is configured by it); otherwise only baseEnv() plus env. The app's
 * NODE_FLAGS, then nodeArgs (--cpu-prof for a profile), go to node before the script.
 */
function spawnApp(name, env = {}, { inheritEnv = false, args = [], nodeArgs = [], stdio = ['ignore', 'pipe', 'pipe'] } = {}) {
  const child = spawn(process.execPath, [...(NODE_FLAGS[name] ?? []), ...nodeArgs, entryPath(name), ...args], { cwd: ROOT, env: { ...(inheritEnv ? process.env : baseEnv()), ...env }, stdio });
  return track(child);
}

/** Calls onLine for every complete line of a stream. */
function eachLine(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const l of lines) onLine(l);
  });
  stream.on('end', () => buf && onLine(buf));
}

/** A child's output on our stdout, each line behind "[name] " (foreground runs: start, demo). */
function prefixOutput(child, name) {
  const prefix = `[${name}]`.padEnd(9);
  for (const s of [child.stdout, child.stderr]) if (s) eachLine(s, (l) => process.stdout.write(`${prefix}${l}\n`));
}

/**
 * A built app in the foreground of a script (npm start, npm run demo): our environment plus env,
 * output behind its name. When it dies, onExit decides; without one, everything stops with it.
 */
function runForeground(name, env = {}, { onExit, args } = {}) {
  const child = spawnApp(name, env, { inheritEnv: true, args });
  prefixOutput(child, name);
  child.once('exit', (code, signal) => {
    if (stopping) return;
    if (onExit) return onExit(code, signal);
    process.stderr.write(`[${name}] exited (${signal ?? code}); stopping everything\n`);
    stopAllAndExit(code || 1);
  });
  return child;
}

let exitGraceMs = 3000;

function stopAllAndExit(code, graceMs = exitGraceMs) {
  stopAll(graceMs).finally(() => process.exit(code));
}

function onStop(fn) {
  stopHooks.push(fn);
}

function isStopping() {
  return stopping;
}

/** SIGTERM to the apps, then to the infrastructure, SIGKILL to what is left after graceMs of each, then the stop hooks. */
let stopped;
function stopAll(graceMs = 3000) {
  // A second caller (Ctrl-C during a stop) waits for the same stop instead of exiting early.
  stopped ??= stopEverything(graceMs);
  return stopped;
}

async function stopEverything(graceMs) {
  stopping = true;
  for (const infrastructure of [false, true]) {
    const live = [...children].filter(([c, infra]) => infra === infrastructure && alive(c)).map(([c]) => c);
    for (const c of live) {
      try {
        process.kill(c.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && live.some(alive)) await sleep(50);
    for (const c of live.filter(alive)) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(live.map(waitExit));
  }
  for (const h of stopHooks.splice(0)) {
    try {
      h();
    } catch {
      // best effort: the others still run
    }
  }
}

/** Last resort from a synchronous 'exit' handler: SIGKILL whatever still runs. */
function killAllSync() {
  for (const c of children.keys()) {
    if (!alive(c)) continue;
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Installs once the handlers that make a script never leave a child behind: Ctrl-C, SIGTERM, a
 * crash of the script itself, and plain exit. signalExitCode overrides 128+n for a signal stop.
 */
let handlersInstalled = false;
function installExitHandlers({ graceMs = 3000, signalExitCode } = {}) {
  if (handlersInstalled) return;
  handlersInstalled = true;
  exitGraceMs = graceMs;
  const bail = (code, why) => {
    if (why) process.stderr.write(`${why}\n`);
    stopAllAndExit(code);
  };
  process.on('SIGINT', () => bail(signalExitCode ?? 130, 'interrupted: stopping every process started'));
  process.on('SIGTERM', () => bail(signalExitCode ?? 143, 'terminated: stopping every process started'));
  process.on('uncaughtException', (e) => bail(1, `uncaught: ${e && e.stack ? e.stack : e}`));
  process.on('unhandledRejection', (e) => bail(1, `unhandled rejection: ${e && e.stack ? e.stack : e}`));
  process.on('exit', killAllSync);
}

// ---------------------------------------------------------------------------------------------- Redis

/** PING over a raw socket: true on +PONG (a Redis still loading its AOF answers -LOADING: false). */
function redisPing(target, { timeoutMs = 500, authOk = false } = {}) {
  return new Promise((resolve) => {
    let host = HOST;
    let port = target;
    if (typeof target === 'string') {
      let u;
      try {
        u = new URL(target);
      } catch {
        return resolve(false);
      }
      host = u.hostname.replace(/^\[|\]$/g, '');
      port = Number(u.port || 6379);
    }
    const sock = net.connect({ host, port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    // A password-protected Redis answers NOAUTH to a bare PING: it is there, the URL carries the password.
    sock.on('data', (d) => done(/^\+PONG/.test(String(d)) || (authOk && /^-NOAUTH/.test(String(d)))));
  });
}

function hasRedisServer() {
  return !spawnSync('redis-server', ['--version']).error;
}

/**
 * A private redis-server on loopback with its own port and directory. stop()/kill() and then
 * startProcess() keep both, like a real restart (fault tests, the soak). Without opts.dir it makes
 * a temporary one and removes it on destroy() or when stopAll() runs.
 */
class RedisServer {
  constructor({ port, dir, appendonly = false, maxmemory, logPath, args = [] }) {
    this.port = port;
    this.url = `redis://${HOST}:${port}`;
    this.ownsDir = !dir;
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'fictures-redis-'));
    this.appendonly = appendonly;
    this.maxmemory = maxmemory;
    this.logPath = logPath;
    // More redis-server arguments (--replicaof, --cluster-enabled…); may change before a restart.
    this.args = args;
    this.child = undefined;
    if (this.ownsDir) onStop(() => rmSync(this.dir, { recursive: true, force: true }));
  }

  static async start(opts = {}) {
    if (!hasRedisServer()) throw new ProcessToolkitError('redis_not_installed', 'redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), or set REDIS_URL');
    if (opts.dir) mkdirSync(opts.dir, { recursive: true });
    const server = new RedisServer({ ...opts, port: opts.port ?? (await freePort()) });
    await server.startProcess();
    return server;
  }

  get running() {
    return alive(this.child);
  }

  async startProcess(readyTimeoutMs = 15_000) {
    const args = [
      '--port', String(this.port), '--bind', HOST, '--dir', this.dir, '--save', '',
      '--appendonly', this.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes', '--logfile', this.logPath ?? '',
      ...(this.maxmemory ? ['--maxmemory', this.maxmemory] : []),
      ...this.args,
    ];
    this.child = track(spawn('redis-server', args, { stdio: 'ignore' }), { infrastructure: true });
    const deadline = Date.now() + readyTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) throw new ProcessToolkitError('redis_start_failed', `redis-server on port ${this.port} exited at start${this.logPath ? ` (log: ${this.logPath})` : ''}`);
      if (await redisPing(this.port)) return;
      await sleep(50);
    }
    throw new ProcessToolkitError('redis_start_failed', `redis-server on port ${this.port} did not answer PING within ${readyTimeoutMs} ms`);
  }

  /** SIGTERM (Redis fsyncs its AOF) or SIGKILL (a crash), resolved once it exited. */
  async stop(sig = 'SIGTERM') {
    await stopChild(this.child, sig, 15_000);
    if (this.running) throw new ProcessToolkitError('redis_stop_failed', `redis-server did not stop within 15 s of ${sig}`);
  }

  kill() {
    return this.stop('SIGKILL');
  }

  async destroy() {
    await this.kill();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = {
  ROOT, HOST, ENTRY, ProcessToolkitError, entryPath, requireBuild, requireBuildOrExit,
  freePort, portInUse, httpGet, waitHttp,
  baseEnv, spawnApp, runForeground, track, waitExit, stopChild, eachLine, prefixOutput,
  onStop, isStopping, stopAll, stopAllAndExit, killAllSync, installExitHandlers,
  redisPing, hasRedisServer, RedisServer,
};
