'use strict';
// What bench/soak.js and bench/latency.js add to the process toolkit (scripts/lib/processes.js):
// the built apps as restartable children with their output in log files, a run directory, a
// loopback-only JSON client, PNG checks and figures. Ports, Redis, waiting for HTTP and the one
// cleanup path (every child killed by PID on exit, Ctrl-C, SIGTERM or a crash) are the toolkit's.
const { createWriteStream, mkdirSync, mkdtempSync, rmSync } = require('node:fs');
const http = require('node:http');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const P = require('../../scripts/lib/processes');

const { ROOT, ENTRY, HOST, freePort, redisPing, waitHttp } = P;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { requireBuild } = P;

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
    if (P.isStopping()) throw new Error(`not starting ${this.label}: shutting down`);
    if (this.running) throw new Error(`${this.label} is already running`);
    this.starts++;
    this.startedAt = Date.now();
    this.log.write(`\n=== ${new Date().toISOString()} start #${this.starts} ===\n`);
    const child = P.spawnApp(this.kind, this.env);
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    child.once('exit', (code, signal) => {
      this.exits.push({ at: Date.now(), code, signal, pid: child.pid });
      this.log.write(`\n=== ${new Date().toISOString()} exit pid=${child.pid} code=${code} signal=${signal} ===\n`);
    });
    this.child = child;
    return child;
  }

  /** Sends a signal to this child's PID and resolves when it has exited. */
  signal(sig, timeoutMs = 10_000) {
    return P.stopChild(this.child, sig, timeoutMs);
  }
}

/** The toolkit's private redis-server, with its directory removed when the run cleans up. */
const RedisProcess = {
  async start(opts) {
    P.onStop(() => rmSync(opts.dir, { recursive: true, force: true }));
    return P.RedisServer.start({ appendonly: true, maxmemory: '256mb', ...opts });
  },
};

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
  request, waitHttp, pngSize, pngText, percentile, parseArgs,
  cleanup: P.stopAll, isCleaningUp: P.isStopping, onCleanup: P.onStop, installExitHandlers: () => P.installExitHandlers({ graceMs: 1500 }),
};
