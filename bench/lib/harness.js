'use strict';
// What bench/soak.js and bench/latency.js add to the process toolkit (scripts/lib/processes.js):
// the built apps as restartable children with their output in log files, a run directory, a
// loopback-only JSON client, PNG checks and figures. Ports, Redis, waiting for HTTP and the one
// cleanup path (every child killed by PID on exit, Ctrl-C, SIGTERM or a crash) are the toolkit's.
const { appendFileSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync } = require('node:fs');
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
  constructor(kind, label, env, logDir, { nodeArgs = [] } = {}) {
    this.kind = kind;
    this.nodeArgs = nodeArgs;
    this.label = label;
    this.env = env;
    this.logPath = join(logDir, `${label}.log`);
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
    appendFileSync(this.logPath, `\n=== ${new Date().toISOString()} start #${this.starts} ===\n`);
    // The child writes its log file itself: the bench process does not copy every line.
    const fd = openSync(this.logPath, 'a');
    const child = P.spawnApp(this.kind, this.env, { nodeArgs: this.nodeArgs, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.once('exit', (code, signal) => {
      this.exits.push({ at: Date.now(), code, signal, pid: child.pid });
      appendFileSync(this.logPath, `\n=== ${new Date().toISOString()} exit pid=${child.pid} code=${code} signal=${signal} ===\n`);
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

function request(method, url, opts = {}) {
  return requestOnce(method, url, opts).catch((err) => {
    // A pooled keep-alive socket the server closed just as this request went out on it: the server
    // never read the request, so sending it again on a fresh socket is safe (Node's own advice for
    // `req.reusedSocket`). Anything else is the caller's to see.
    if (err.reusedSocket && err.code === 'ECONNRESET') return requestOnce(method, url, opts);
    throw err;
  });
}

function requestOnce(method, url, { body, headers = {}, timeoutMs = 10_000, raw = false } = {}) {
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
          // The client's clock for "last byte": taken before the body is joined or parsed.
          const lastByteAt = process.hrtime.bigint();
          const buf = Buffer.concat(chunks);
          let json;
          if (!raw && /json/.test(res.headers['content-type'] || '')) {
            try {
              json = JSON.parse(buf.toString('utf8'));
            } catch {
              json = undefined;
            }
          }
          resolve({ status: res.statusCode, headers: res.headers, body: raw ? buf : json, bytes: buf, lastByteAt });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', (err) => {
      err.reusedSocket = req.reusedSocket;
      // Which request failed, for the bench's one-line failure report.
      if (!String(err.message).includes(url)) err.message = `${err.message} (${method} ${url})`;
      reject(err);
    });
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

// ------------------------------------------------------------------------------------ the stack

/** Env that takes the API's own limits out of a benchmark's way (the figures are about the path, not the limits). */
const UNLIMITED = {
  RATE_LIMIT_SUBMIT_PER_MINUTE: '100000000', RATE_LIMIT_READ_PER_MINUTE: '100000000', QUOTA_MAX_JOBS_PER_KEY: '100000',
  QUEUE_MAX_WAITING: '100000000', AUTH_REQUIRED: 'false', GPU_REQUIRED: 'false',
};

/** A simulator on a free port, started and answering /system_stats. */
async function startSim(label, env, logDir) {
  const port = await freePort();
  const sim = new AppProcess('sim', label, { PORT: String(port), HOST, LOG_LEVEL: 'warn', ...env }, logDir);
  sim.url = `http://${HOST}:${port}`;
  sim.start();
  if (!(await waitHttp(`${sim.url}/system_stats`, 30_000, (r) => r.status === 200))) throw new Error(`simulator ${label} did not start (log ${sim.logPath})`);
  return sim;
}

/** The API on a free port, started and live. node: extra node flags (--cpu-prof …). */
async function startApi(env, logDir, { label = 'api', nodeArgs = [] } = {}) {
  const port = await freePort();
  const api = new AppProcess('api', label, { ...env, PORT: String(port), HOST }, logDir, { nodeArgs });
  api.url = `http://${HOST}:${port}`;
  api.start();
  if (!(await waitHttp(`${api.url}/health/live`, 45_000, (r) => r.status === 200))) throw new Error(`the API did not start (log ${api.logPath})`);
  return api;
}

/** `autocannon` (programmatic) against one route; resolves its figures. */
function cannon(opts) {
  const autocannon = require('autocannon');
  return new Promise((resolve, reject) => {
    const o = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
    autocannon({ connections: 32, duration: 10, pipelining: 1, ...o }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The one-line summary of an autocannon result. */
function cannonLine(title, res) {
  const fx = (x) => (Number.isFinite(x) ? x.toFixed(1).padStart(6) : '   n/a');
  const rps = res.requests.total / (res.duration || 1);
  return `${title.padEnd(34)} ${String(Math.round(rps)).padStart(7)} req/s   p50 ${fx(res.latency.p50)} ms   p99 ${fx(res.latency.p99)} ms   non-2xx ${res.non2xx}   errors ${res.errors}`;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. */
function cpuSeconds(pid) {
  try {
    const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) in clock ticks; after the ")" they are the 12th and 13th.
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Redis commands processed so far, by command (INFO commandstats), plus the total. */
async function redisCommandStats(redis) {
  const info = await redis.info('commandstats');
  const out = { total: 0, by: {} };
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    out.by[m[1]] = Number(m[2]);
    out.total += Number(m[2]);
  }
  return out;
}

/**
 * Commands the API sends Redis per request (not those a script runs inside Redis): MONITOR on a
 * connection of its own while `send` runs n times one after the other.
 */
async function roundTripsPerRequest(redisUrl, send, n) {
  const u = new URL(redisUrl);
  const by = {};
  let buf = '';
  const sock = require('node:net').connect({ host: u.hostname, port: Number(u.port || 6379) });
  sock.setEncoding('utf8');
  // Each line: +<time> [<db> <client address | lua>] "<command>" "<arg>" …
  sock.on('data', (d) => {
    buf += d;
    const lines = buf.split('\r\n');
    buf = lines.pop();
    for (const l of lines) {
      const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(l);
      if (!m || m[1] === 'lua') continue;
      const name = m[2].toLowerCase();
      by[name] = (by[name] ?? 0) + 1;
    }
  });
  sock.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  sock.write('MONITOR\r\n');
  await sleep(150);
  for (let i = 0; i < n; i++) await send();
  await sleep(250);
  sock.destroy();
  const per = Object.entries(by).map(([k, v]) => [k, v / n]).sort((a, b) => b[1] - a[1]);
  return { total: per.reduce((a, [, v]) => a + v, 0), detail: per.map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ') };
}

/** Commands per request between two redisCommandStats snapshots (the INFO call itself excluded). */
function commandsPerRequest(before, after, requests) {
  const by = {};
  for (const [k, v] of Object.entries(after.by)) {
    const d = v - (before.by[k] ?? 0) - (k === 'info' ? 1 : 0);
    if (d > 0) by[k] = d / Math.max(1, requests);
  }
  const total = Object.values(by).reduce((a, b) => a + b, 0);
  return { total, by };
}

module.exports = {
  ROOT, ENTRY, HOST, sleep, requireBuild, entryPath: P.entryPath, freePort, makeRunDir, AppProcess, RedisProcess, redisPing,
  request, waitHttp, pngSize, pngText, percentile, parseArgs,
  UNLIMITED, startSim, startApi, cannon, cannonLine, redisCommandStats, commandsPerRequest, roundTripsPerRequest, cpuSeconds,
  cleanup: P.stopAll, isCleaningUp: P.isStopping, onCleanup: P.onStop, installExitHandlers: () => P.installExitHandlers({ graceMs: 1500 }),
};
