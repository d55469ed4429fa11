'use strict';
// `npm run overhead`: the worker's own cost per job, measured end to end on this machine with the
// ComfyUI simulator. For each job: ComfyUI's execution_success (its history, its clock) → the job's
// terminal record (`finished_at`), i.e. everything the worker does after the GPU is done (history,
// /view, store, record). Also, under saturation, how busy the GPU was and the idle gap between
// prompts. Starts its own Redis, simulator, worker and API (from dist/: `npm run build` first) and
// stops them. Options: --jobs N (default 20 per row), --step-ms MS (simulator step, default 50),
// --sizes 256,1328.
const P = require('./lib/processes');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const JOBS = Number(arg('jobs', '20'));
const STEP_MS = Number(arg('step-ms', '50'));
const SIZES = String(arg('sizes', '256,1328')).split(',').map(Number);

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');

async function json(method, url, body) {
  const res = await fetch(url, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** One job through the async API, waited on with long-poll. */
async function runJob(api, size, seed) {
  const created = await json('POST', `${api}/api/v1/images/jobs`, { prompt: 'overhead', width: size, height: size, num_inference_steps: 4, seed });
  if (created.status !== 202) throw new Error(`submit answered ${created.status}: ${JSON.stringify(created.body)}`);
  for (;;) {
    const r = await json('GET', `${api}/api/v1/images/jobs/${created.body.id}?wait=30`);
    if (r.body.status === 'succeeded') return r.body;
    if (r.body.status === 'failed' || r.body.status === 'canceled') throw new Error(`job ${r.body.id} ${r.body.status}`);
  }
}

/** ComfyUI history → per job id (from SaveImage's filename prefix `fictures/<job id>`): start and end. */
async function runsByJob(sim) {
  const history = (await json('GET', `${sim}/history`)).body;
  const out = new Map();
  for (const entry of Object.values(history)) {
    const graph = entry.prompt[2];
    const prefix = Object.values(graph).map((n) => n.inputs && n.inputs.filename_prefix).find((v) => typeof v === 'string' && v.startsWith('fictures/'));
    if (!prefix) continue;
    const ts = (name) => (entry.status.messages.find((m) => m[0] === name) || [])[1]?.timestamp;
    out.set(prefix.slice('fictures/'.length), { start: ts('execution_start'), end: ts('execution_success') });
  }
  return out;
}

const workerLines = [];

async function row(api, sim, size, concurrency, seedBase) {
  workerLines.length = 0;
  const jobs = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < JOBS) {
      const i = next++;
      jobs.push(await runJob(api, size, seedBase + i));
    }
  }));
  const runs = await runsByJob(sim);
  const overhead = [];
  const spans = [];
  for (const j of jobs) {
    const r = runs.get(j.id);
    if (!r || r.end === undefined) continue;
    overhead.push(Date.parse(j.finished_at) - r.end);
    spans.push(r);
  }
  spans.sort((a, b) => a.start - b.start);
  const gaps = spans.slice(1).map((r, i) => r.start - spans[i].end);
  const busy = spans.reduce((s, r) => s + (r.end - r.start), 0);
  const wall = spans.length ? spans[spans.length - 1].end - spans[0].start : NaN;
  const local = workerLines.map((l) => l.overhead_ms);
  const fetchStore = workerLines.map((l) => l.fetch_store_ms);
  const record = workerLines.map((l) => l.record_ms);
  const detect = workerLines.map((l) => l.detect_ms).filter((x) => typeof x === 'number');
  return { overhead, gaps, busyPct: (100 * busy) / wall, local, detect, fetchStore, record };
}

async function main() {
  P.installExitHandlers();
  P.requireBuildOrExit(['api', 'worker', 'sim']);
  const redis = await P.RedisServer.start();
  const simPort = await P.freePort();
  const apiPort = await P.freePort();
  const sim = `http://${P.HOST}:${simPort}`;
  const api = `http://${P.HOST}:${apiPort}`;
  const env = {
    REDIS_URL: redis.url, QUEUE_PREFIX: 'overhead', COMFYUI_URLS: sim, PORT: String(apiPort), HOST: P.HOST, LOG_LEVEL: 'error',
    RATE_LIMIT_SUBMIT_PER_MINUTE: '1000000', RATE_LIMIT_READ_PER_MINUTE: '1000000', RESULT_CACHE: 'off',
  };
  P.track(P.spawnApp('sim', { PORT: String(simPort), HOST: P.HOST, SIM_STEP_MS: String(STEP_MS) }));
  await P.waitHttp(`${sim}/system_stats`);
  // The worker's own log line per job says where its time went (pipelined builds log it).
  const worker = P.track(P.spawnApp('worker', { ...env, LOG_LEVEL: 'info' }));
  P.eachLine(worker.stdout, (line) => {
    if (!line.includes('"job succeeded"')) return;
    try {
      const j = JSON.parse(line);
      if (typeof j.overhead_ms === 'number') workerLines.push(j);
    } catch {
      // not a JSON line
    }
  });
  P.track(P.spawnApp('api', env));
  await P.waitHttp(`${api}/health/ready`, 30_000, (r) => r.status === 200);
  await runJob(api, 256, 1); // the first job pays the model load

  const lines = [];
  let seed = 10_000;
  for (const size of SIZES) {
    for (const c of [1, 4]) {
      const r = await row(api, sim, size, c, (seed += 1000));
      lines.push(
        `${size}² C=${c}: worker overhead (ComfyUI execution_success → terminal record) p50 ${fmt(pct(r.overhead, 50))} ms, p95 ${fmt(pct(r.overhead, 95))} ms, max ${fmt(Math.max(...r.overhead))} ms; ` +
          `GPU idle gap p50 ${fmt(pct(r.gaps, 50))} ms, busy ${fmt(r.busyPct)} %` +
          (r.local.length
            ? `; of it, ComfyUI end → worker knows p50 ${fmt(pct(r.detect, 50))} ms, worker knows → record p50 ${fmt(pct(r.local, 50))} ms p95 ${fmt(pct(r.local, 95))} ms (fetch+store p50 ${fmt(pct(r.fetchStore, 50))}, record p50 ${fmt(pct(r.record, 50))})`
            : ''),
      );
      process.stdout.write(`${lines[lines.length - 1]}\n`);
    }
  }
  process.stdout.write(`(${JOBS} jobs per row, 4 simulated steps of ${STEP_MS} ms; one simulator, one worker, one API, one Redis on this machine)\n`);
  await P.stopAll();
  await redis.stop?.();
  process.exit(0);
}

main().catch(async (e) => {
  process.stderr.write(`overhead: ${e.stack || e.message}\n`);
  await P.stopAll();
  process.exit(1);
});
