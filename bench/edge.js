'use strict';
/*
 * `node bench/edge.js`: where an API request's time goes, route by route.
 *
 * Starts a private Redis (AOF everysec), one simulator, the API and a worker from dist/; runs one
 * job to completion so there is a succeeded job to read, stops the worker (submissions then only
 * queue, and no worker competes for the CPU), and runs autocannon against each route:
 *   live    GET /health/live
 *   get     GET /api/v1/images/jobs/{id} of the succeeded job
 *   submit  POST /api/v1/images/jobs (each one a new queued job)
 *   queued  GET /api/v1/images/jobs/{id} of a queued job (queue_position is computed)
 * For each: req/s, latency p50/p99, the API process's CPU time per request (from /proc: steadier
 * than req/s on a shared machine, where autocannon competes with the API for the same cores), and the Redis commands each request cost: those the API sends
 * (MONITOR during 200 sequential requests; a script is one EVALSHA) and those Redis executes,
 * script internals included (INFO commandstats before and after). With --cpu-prof the API runs under `node --cpu-prof` and the
 * profile's self time is summed by package and by function at the end (the .cpuprofile is kept and
 * opens in Chrome DevTools). Beside each route the same answer is measured from floors
 * (bench/lib/edge-floor.js: node:http alone, plus the route's Redis work, in a minimal Nest app on
 * Express and on Fastify, BullMQ's add), each its own process, and the API's CPU over each is printed
 * (--no-floors skips them).
 *
 *   node bench/edge.js [--seconds 10] [--connections 32] [--routes live,get,submit,queued] [--cpu-prof]
 *                      [--auth] [--log-level info] [--keep-logs] [--no-floors]
 */
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const { readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const os = require('node:os');
const Redis = require('ioredis');
const H = require('./lib/harness');
const P = require('../scripts/lib/processes');

const ROUTES = ['live', 'get', 'submit', 'queued'];

let args;
try {
  args = H.parseArgs(process.argv.slice(2), {
    seconds: 'number', connections: 'number', routes: 'string', 'cpu-prof': 'bool', auth: 'bool', 'log-level': 'string', 'keep-logs': 'bool', 'no-floors': 'bool', help: 'bool',
  });
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write('node bench/edge.js [--seconds 10] [--connections 32] [--routes live,get,submit,queued] [--cpu-prof] [--auth] [--log-level info] [--keep-logs] [--no-floors]\n');
  process.exit(0);
}
const SECONDS = args.seconds ?? 10;
const CONNECTIONS = args.connections ?? 32;
const SELECTED = (args.routes ?? ROUTES.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
for (const r of SELECTED) if (!ROUTES.includes(r)) throw new Error(`unknown route ${r} (known: ${ROUTES.join(', ')})`);

const T0 = Date.now();
const say = (msg) => process.stdout.write(`[edge ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);

const SUBMIT_BODY = JSON.stringify({ prompt: 'edge bench: a lighthouse at dusk', width: 256, height: 256, num_inference_steps: 4, seed: 7 });

/** Self time of a .cpuprofile, summed by package (or app file) and by function. */
function summarizeProfile(file, top = 20) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  for (let i = 0; i < prof.samples.length; i++) selfUs.set(prof.samples[i], (selfUs.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const where = (url) => {
    if (!url) return '(native/V8)';
    const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (nm) return nm[1];
    if (url.startsWith('node:')) return url;
    const app = /dist\/apps\/[^/]+\/(.*)$/.exec(url);
    return app ? app[1] : url;
  };
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byPkg = new Map();
  const byFn = new Map();
  // Inclusive: a sample counts for every package on its stack (once each), so "pino-http 12 %" is
  // the share of busy time spent inside it and whatever it called.
  const inclusive = new Map();
  let busy = 0;
  for (const [id, us] of selfUs) {
    if (byId.get(id).callFrame.functionName === '(idle)') continue;
    busy += us;
    const seen = new Set();
    for (let n = id; n !== undefined; n = parent.get(n)) seen.add(where(byId.get(n).callFrame.url));
    for (const pkg of seen) inclusive.set(pkg, (inclusive.get(pkg) ?? 0) + us);
  }
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    const pkg = where(callFrame.url);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
    const fn = `${callFrame.functionName || '(anonymous)'} ${pkg}:${callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
  }
  const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)} %`;
  const lines = [`profile ${file}: ${(total / 1e6).toFixed(1)} s sampled`, 'self time by package:'];
  for (const [k, v] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(v)}  ${k}`);
  lines.push(`inclusive share of busy (not idle) time, by package (${(busy / 1e6).toFixed(1)} s busy):`);
  for (const [k, v] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${((100 * v) / (busy || 1)).toFixed(1).padStart(5)} %  ${k}`);
  lines.push('self time by function:');
  for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${pct(v)}  ${k}`);
  return lines.join('\n');
}

/** Which floor (bench/lib/edge-floor.js) a route is read against. */
const FLOOR_OF = { live: ['bare'], get: ['bare', 'get', 'nest', 'nest-fastify'], queued: ['bare', 'get', 'nest', 'nest-fastify'], submit: ['bare', 'submit'] };

/** Starts a floor server as its own process, answering `answer` (the API's own answer for the route). */
async function startFloor(kind, redisUrl, answer, runDir) {
  const port = await H.freePort();
  const file = join(runDir, `floor-${kind}.json`);
  writeFileSync(file, answer);
  const child = P.track(spawn(process.execPath, [join(__dirname, 'lib', 'edge-floor.js'), kind, String(port), redisUrl, file], { stdio: ['ignore', 'pipe', 'inherit'] }));
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`the ${kind} floor exited with ${code}`)));
  });
  return { url: `http://${H.HOST}:${port}/`, pid: child.pid, stop: () => P.stopChild(child, 'SIGTERM', 5_000) };
}

/** autocannon against a target, with the serving process's CPU time per request. */
async function measure(target, pid, headers) {
  await H.cannon({ url: target.url, method: target.method, body: target.body, headers, connections: CONNECTIONS, duration: 1 });
  const cpu0 = H.cpuSeconds(pid);
  const res = await H.cannon({ url: target.url, method: target.method, body: target.body, headers, connections: CONNECTIONS, duration: SECONDS });
  const cpuUs = ((H.cpuSeconds(pid) - cpu0) * 1e6) / Math.max(1, res.requests.total);
  return { res, cpuUs, rps: res.requests.total / (res.duration || 1) };
}

async function main() {
  H.requireBuild(['api', 'worker', 'sim', 'keys']);
  const runDir = H.makeRunDir('edge');
  const logs = join(runDir, 'logs');
  const profDir = join(runDir, 'profile');
  let ok = false;
  let redisClient;
  try {
    const redis = await H.RedisProcess.start({ dir: join(runDir, 'redis'), logPath: join(logs, 'redis.log'), maxmemory: '1gb' });
    redisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const sim = await H.startSim('sim', { SIM_STEP_MS: '5', SIM_OUTPUT_DIR: join(runDir, 'sim-out') }, logs);
    const common = { ...H.UNLIMITED, REDIS_URL: redis.url, QUEUE_PREFIX: 'edge', COMFYUI_URLS: sim.url, WORKFLOWS_DIR: 'workflows', LOG_LEVEL: args['log-level'] ?? 'info' };
    const headers = { 'content-type': 'application/json' };
    if (args.auth) {
      const r = require('node:child_process').spawnSync(process.execPath, [H.entryPath('keys'), 'create', '--name', 'edge-bench', '--json'], { env: { PATH: process.env.PATH, REDIS_URL: redis.url, QUEUE_PREFIX: 'edge' }, encoding: 'utf8' });
      const key = /fk_[A-Za-z0-9_-]+/.exec(r.stdout ?? '')?.[0];
      if (!key) throw new Error(`could not create an API key: ${r.stderr || r.stdout}`);
      headers.authorization = `Bearer ${key}`;
    }
    const api = await H.startApi(common, logs, { nodeArgs: args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [] });
    const worker = new H.AppProcess('worker', 'worker', common, logs);
    worker.start();
    // Another seed than the submissions', so they never hit the result cache with it.
    const done = await H.request('POST', `${api.url}/api/v1/images/jobs`, { body: { ...JSON.parse(SUBMIT_BODY), seed: 1 }, headers: { ...headers, prefer: 'wait=30' }, timeoutMs: 60_000 });
    if (done.body?.status !== 'succeeded') throw new Error(`the warm-up job answered ${done.status} ${JSON.stringify(done.body).slice(0, 200)}`);
    await worker.signal('SIGTERM', 15_000);
    const queued = await H.request('POST', `${api.url}/api/v1/images/jobs`, { body: JSON.parse(SUBMIT_BODY), headers });
    if (queued.status !== 202) throw new Error(`a submission answered ${queued.status}`);

    say(`setup: autocannon -c ${CONNECTIONS} for ${SECONDS} s per route, LOG_LEVEL ${common.LOG_LEVEL}, auth ${args.auth ? 'on (one key)' : 'off'}${args['cpu-prof'] ? ', API under --cpu-prof' : ''}, ` +
      `node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (shared machine: compare runs back to back)`);
    const targets = {
      live: { title: 'GET /health/live', url: `${api.url}/health/live` },
      get: { title: 'GET /api/v1/images/jobs/{id}', url: `${api.url}/api/v1/images/jobs/${done.body.id}` },
      submit: { title: 'POST /api/v1/images/jobs', url: `${api.url}/api/v1/images/jobs`, method: 'POST', body: SUBMIT_BODY },
      queued: { title: 'GET …/jobs/{id} (queued)', url: `${api.url}/api/v1/images/jobs/${queued.body.id}` },
    };
    const lines = ['', `HTTP EDGE (autocannon -c ${CONNECTIONS}, ${SECONDS} s per route; API CPU from /proc; Redis: sent = MONITOR, executed = INFO commandstats)`];
    const answers = { live: undefined, get: done.bytes, queued: queued.bytes, submit: queued.bytes };
    const floors = [];
    for (const name of SELECTED) {
      const t = targets[name];
      // measure() warms up first, so the JIT and the connection pools are hot before the figures count.
      const before = await H.redisCommandStats(redisClient);
      const { res, cpuUs, rps } = await measure(t, api.pid, headers);
      const after = await H.redisCommandStats(redisClient);
      const per = H.commandsPerRequest(before, after, res.requests.total);
      const trips = await H.roundTripsPerRequest(redis.url, () => H.request(t.method ?? 'GET', t.url, { body: t.body && JSON.parse(t.body), headers }), 200);
      const detail = Object.entries(per.by).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');
      lines.push(`${H.cannonLine(t.title, res)}   API CPU ${Number.isFinite(cpuUs) ? Math.round(cpuUs) : 'n/a'} µs/request`);
      lines.push(`${''.padEnd(34)} Redis: ${trips.total.toFixed(2)} commands sent/request (${trips.detail || 'none'}); ${per.total.toFixed(2)} executed incl. inside scripts (${detail || 'none'})`);
      if (!args['no-floors']) {
        // The same answer from a server with no framework: the bare machine, then the route's Redis work alone.
        for (const kind of FLOOR_OF[name]) {
          const floor = await startFloor(kind, redis.url, answers[name] ?? Buffer.from('{"status":"ok"}'), runDir);
          try {
            const m = await measure({ ...t, url: new URL(new URL(t.url).pathname, floor.url).toString() }, floor.pid, headers);
            floors.push({ name, kind, ...m, api: { rps, cpuUs } });
            lines.push(`${H.cannonLine(`  floor: ${kind}`, m.res)}   CPU ${Math.round(m.cpuUs)} µs/request`);
          } finally {
            await floor.stop();
          }
        }
      }
      say(`${name} done`);
    }
    if (floors.length) {
      lines.push('', 'floors: bare = node:http answering the same bytes; get = plus the job GET\'s Redis round trips (key check, rate-limit script, record);',
        'nest = the get floor in a minimal NestJS app (no middleware, guard, pipe or logger), nest-fastify = the same on the Fastify adapter;',
        'submit = plus the rate-limit script and BullMQ Queue.add.',
        'What the API adds over its route\'s floors, per request:');
      for (const f of floors.filter((x) => x.kind !== 'bare' || x.name === 'live')) {
        lines.push(`  ${f.name.padEnd(7)} API ${Math.round(f.api.cpuUs)} µs vs ${f.kind} floor ${Math.round(f.cpuUs)} µs of CPU (+${Math.round(f.api.cpuUs - f.cpuUs)} µs); ${Math.round(f.api.rps)} vs ${Math.round(f.rps)} req/s`);
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    if (args['cpu-prof']) {
      await api.signal('SIGTERM', 30_000);
      const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
      if (!files.length) throw new Error('the API wrote no .cpuprofile');
      process.stdout.write(`\n${summarizeProfile(join(profDir, files[0]))}\n`);
    }
    ok = true;
  } finally {
    await redisClient?.quit().catch(() => undefined);
    await H.cleanup();
    if (ok && !args['keep-logs'] && !args['cpu-prof']) rmSync(runDir, { recursive: true, force: true });
    else say(`logs${args['cpu-prof'] ? ' and profile' : ''} kept in ${runDir}`);
  }
}

H.installExitHandlers();
main().then(
  () => process.exit(0),
  async (e) => {
    process.stderr.write(`edge bench failed: ${e && e.stack ? e.stack : e}\n`);
    await H.cleanup();
    process.exit(1);
  },
);
