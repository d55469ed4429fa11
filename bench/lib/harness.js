'use strict';
// Process harness shared by bench/soak.js and bench/latency.js: a private redis-server that can be
// stopped and started again on the same port and directory, the built apps as child processes with
// their output in log files, and one cleanup path that kills every child by PID on normal exit,
// Ctrl-C, SIGTERM or a crash of the script itself. Everything listens on 127.0.0.1 only.
const { spawn, spawnSync } = require('node:child_process');
const { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const ROOT = join(__dirname, '..', '..');
const ENTRY = {
  api: 'dist/apps/api/apps/api/src/main.js',
  worker: 'dist/apps/worker/apps/worker/src/main.js',
  sim: 'dist/apps/comfyui-sim/apps/comfyui-sim/src/main.js',
};
const HOST = '127.0.0.1';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function requireBuild(names) {
  const missing = names.filter((n) => !existsSync(join(ROOT, ENTRY[n])));
  if (missing.length) throw new Error(`not built (${missing.map((n) => ENTRY[n]).join(', ')}): run "npm run build" first`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The children get a clean environment: only what they need, so nothing from the caller's shell leaks in. */
function baseEnv() {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ'];
  const env = {};
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

/** Every process started through the harness, so one place can stop them all. */
const children = new Set();
let cleanupHooks = [];
let cleaningUp = false;

function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills every live child by PID (SIGTERM, then SIGKILL after graceMs) and runs the cleanup hooks. */
async function cleanup(graceMs = 3000) {
  if (cleaningUp) return;
  cleaningUp = true;
  const live = [...children].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of live) {
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...children].some((c) => c.exitCode === null && c.signalCode === null)) await sleep(50);
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  const hooks = cleanupHooks;
  cleanupHooks = [];
  for (const h of hooks) {
    try {
      h();
    } catch {
      // best effort
    }
  }
}

/** Synchronous last resort (process 'exit'): SIGKILL whatever is still alive. */
function killAllSync() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

function isCleaningUp() {
  return cleaningUp;
}

function onCleanup(fn) {
  cleanupHooks.push(fn);
}

/** Installs the signal and crash handlers once: the script never leaves a process behind. */
function installExitHandlers() {
  const bail = (code, why) => {
    if (why) process.stderr.write(`${why}\n`);
    cleanup(1500).finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail(130, 'interrupted: stopping every process started'));
  process.on('SIGTERM', () => bail(143, 'terminated: stopping every process started'));
  process.on('uncaughtException', (e) => bail(1, `uncaught: ${e && e.stack ? e.stack : e}`));
  process.on('unhandledRejection', (e) => bail(1, `unhandled rejection: ${e && e.stack ? e.stack : e}`));
  process.on('exit', killAllSync);
}

function makeRunDir(name) {
  const dir = mkdtempSync(join(tmpdir(), `fictures-${name}-`));
  mkdirSync(join(dir, 'logs'));
  return dir;
}

/**
 * A built app as a child process, output appended to <logDir>/<label>.log. `start()` may be called
 * again after the process died (a worker restarted after a SIGKILL): same env, same log file.
 */
class AppProcess {
  constructor(kind, label, env, logDir) {
    this.kind = kind;
    this.label = label;
    this.env = env;
    this.logPath = join(logDir, `${label}.log`);
    this.log = createWriteStream(this.logPath, { flags: 'a' });
    this.child = undefined;
    this.starts = 0;
    this.exits = [];
  }

  get pid() {
    return this.child?.pid;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  start() {
    if (cleaningUp) throw new Error(`not starting ${this.label}: shutting down`);
    if (this.running) throw new Error(`${this.label} is already running`);
    this.starts++;
    this.startedAt = Date.now();
    this.log.write(`\n=== ${new Date().toISOString()} start #${this.starts} ===\n`);
    const child = spawn(process.execPath, [join(ROOT, ENTRY[this.kind])], {
      cwd: ROOT,
      env: { ...baseEnv(), ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    child.once('exit', (code, signal) => {
      this.exits.push({ at: Date.now(), code, signal, pid: child.pid });
      this.log.write(`\n=== ${new Date().toISOString()} exit pid=${child.pid} code=${code} signal=${signal} ===\n`);
    });
    this.child = track(child);
    return child;
  }

  /** Sends a signal to this child's PID and resolves when it has exited. */
  async signal(sig, timeoutMs = 10_000) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(child.pid, sig);
    await Promise.race([exited, sleep(timeoutMs)]);
  }
}

/** A private redis-server with its own dir and port; stop()/start() keep both, like a real restart. */
class RedisProcess {
  constructor({ dir, port, appendonly = true, logPath, maxmemory = '256mb' }) {
    this.maxmemory = maxmemory;
    this.dir = dir;
    this.port = port;
    this.url = `redis://${HOST}:${port}`;
    this.appendonly = appendonly;
    this.logPath = logPath;
    this.child = undefined;
  }

  static async start(opts) {
    if (spawnSync('redis-server', ['--version']).error) throw new Error('redis-server is not installed (apt-get install redis-server)');
    mkdirSync(opts.dir, { recursive: true });
    const r = new RedisProcess({ ...opts, port: opts.port ?? (await freePort()) });
    onCleanup(() => rmSync(opts.dir, { recursive: true, force: true }));
    await r.start();
    return r;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start() {
    if (cleaningUp) throw new Error('not starting redis-server: shutting down');
    const args = [
      '--port', String(this.port), '--bind', HOST, '--dir', this.dir, '--save', '',
      '--appendonly', this.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec',
      '--maxmemory', this.maxmemory, '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes',
      '--logfile', this.logPath ?? '',
    ];
    this.child = track(spawn('redis-server', args, { stdio: 'ignore' }));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (!this.running) throw new Error(`redis-server on port ${this.port} exited at start (log: ${this.logPath})`);
      if (await redisPing(this.port)) return;
      await sleep(50);
    }
    throw new Error(`redis-server on port ${this.port} did not answer PING`);
  }

  /** SIGTERM (Redis writes and fsyncs the AOF) or SIGKILL (a crash), and wait for the exit. */
  async stop(sig = 'SIGTERM') {
    const c = this.child;
    if (!c || !this.running) return;
    const exited = new Promise((r) => c.once('exit', r));
    process.kill(c.pid, sig);
    await Promise.race([exited, sleep(15_000)]);
    if (this.running) throw new Error(`redis-server did not stop within 15 s of ${sig}`);
  }
}

/** PING over a raw socket: true when Redis answers PONG and is done loading the AOF. */
function redisPing(port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => done(/^\+PONG/.test(String(d))));
  });
}

/** Minimal HTTP JSON client over a keep-alive agent, loopback only. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function request(method, url, { body, headers = {}, timeoutMs = 10_000, raw = false } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    if (u.hostname !== HOST) return reject(new Error(`refusing non-loopback URL ${url}`));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method,
        agent,
        headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}), ...headers },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          let json;
          if (!raw && /json/.test(res.headers['content-type'] || '')) {
            try {
              json = JSON.parse(buf.toString('utf8'));
            } catch {
              json = undefined;
            }
          }
          resolve({ status: res.statusCode, headers: res.headers, body: raw ? buf : json, bytes: buf });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

async function waitHttp(url, timeoutMs = 30_000, ok = (r) => r.status < 500) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (ok(await request('GET', url, { timeoutMs: 1000 }))) return true;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  return false;
}

/** Width and height from a PNG's IHDR, or undefined when the bytes are not a PNG. */
function pngSize(buf) {
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!Buffer.isBuffer(buf) || buf.length < 33 || !buf.subarray(0, 8).equals(sig) || buf.toString('ascii', 12, 16) !== 'IHDR') return undefined;
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** The tEXt chunks of a PNG (keyword → text): ComfyUI's SaveImage writes the prompt graph there. */
function pngText(buf) {
  const out = {};
  if (!pngSize(buf)) return out;
  let off = 8;
  while (off + 12 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('ascii', off + 4, off + 8);
    if (off + 12 + len > buf.length) break;
    if (type === 'tEXt') {
      const data = buf.subarray(off + 8, off + 8 + len);
      const nul = data.indexOf(0);
      if (nul > 0) out[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    }
    if (type === 'IDAT' || type === 'IEND') break;
    off += 12 + len;
  }
  return out;
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

function parseArgs(argv, spec) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in spec)) throw new Error(`unknown argument ${a}; known: ${Object.keys(spec).map((k) => `--${k}`).join(' ')}`);
    const type = spec[m[1]];
    if (type === 'bool') out[m[1]] = true;
    else {
      const v = m[2] ?? argv[++i];
      if (v === undefined) throw new Error(`--${m[1]} needs a value`);
      out[m[1]] = type === 'number' ? Number(v) : v;
      if (type === 'number' && !Number.isFinite(out[m[1]])) throw new Error(`--${m[1]} must be a number`);
    }
  }
  return out;
}

module.exports = {
  ROOT, ENTRY, HOST, sleep, requireBuild, freePort, makeRunDir, AppProcess, RedisProcess, redisPing,
  request, waitHttp, pngSize, pngText, percentile, parseArgs, cleanup, isCleaningUp, onCleanup, installExitHandlers,
};
