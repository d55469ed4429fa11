'use strict';
/*
 * `npm run bench`: what the service adds to an image on top of the GPU's own work.
 *
 * Starts a private Redis (AOF everysec, as in production), one ComfyUI simulator, the API and one
 * worker from dist/, then runs N jobs (default 100) per row:
 *   sync  : POST /api/v1/images/generate (waits, answers a data: URL)
 *   sse   : POST /api/v1/images/jobs → GET …/events until the final `job` event → GET …/images/0
 *   poll  : POST /api/v1/images/jobs → GET the job every --poll-ms until succeeded → GET …/images/0
 *   openai: POST /v1/images/generations (OpenAI-compatible, waits, answers b64_json); its job's
 *           timings are read afterwards through the X-Job-Id header, outside the timed span
 * each sequentially (one client) and with --concurrency clients at once.
 *
 * end-to-end = client clock, from sending the POST to the last byte of the image.
 * GPU time   = the simulator's own execution time, ComfyUI's execution_start → execution_success
 *              (history timestamps), which the worker reports as timings.comfyui_ms. That is what
 *              a real GPU would spend whatever the middleware did; everything else is ours. When a
 *              job lacks comfyui_ms, the same span is read from the simulator's /history.
 * overhead   = end-to-end − GPU time. With several clients on one GPU, jobs also wait for each
 *              other; that wait is not overhead, so concurrent rows subtract timings.queue_ms
 *              (accepted → a worker took the job) too, and add the GPU gap: idle time of the GPU
 *              between one prompt's execution_success and the next one's execution_start while
 *              work was queued — the per-image cost the pipeline puts on the GPU.
 *
 * Then autocannon against GET /health/live and GET /api/v1/images/jobs/{id} (RPS, p50, p99).
 *
 *   node bench/latency.js [--jobs 100] [--concurrency 4] [--step-ms 20] [--size 512] [--steps 4]
 *                         [--modes sync,sse,poll,openai] [--poll-ms 100] [--cannon-seconds 10] [--log-level info]
 */
const { join } = require('node:path');
const http = require('node:http');
const net = require('node:net');
const { rmSync } = require('node:fs');
const os = require('node:os');
const autocannon = require('autocannon');
const H = require('./lib/harness');

const { sleep } = H;

let args;
try {
  args = H.parseArgs(process.argv.slice(2), {
    jobs: 'number', concurrency: 'number', 'step-ms': 'number', size: 'number', steps: 'number', modes: 'string',
    'poll-ms': 'number', 'cannon-seconds': 'number', 'log-level': 'string', 'keep-logs': 'bool', help: 'bool',
  });
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write('node bench/latency.js [--jobs 100] [--concurrency 4] [--step-ms 20] [--size 512] [--steps 4] [--modes sync,sse,poll,openai] [--poll-ms 100] [--cannon-seconds 10] [--log-level info]\n');
  process.exit(0);
}
const N = Math.max(1, Math.floor(args.jobs ?? 100));
const CONC = Math.max(2, Math.floor(args.concurrency ?? 4));
const STEP_MS = args['step-ms'] ?? 20;
const SIZE = args.size ?? 512;
const STEPS = args.steps ?? 4;
const MODES = (args.modes ?? 'sync,sse,poll').split(',').map((s) => s.trim()).filter(Boolean);
const POLL_MS = args['poll-ms'] ?? 100;
const CANNON_S = args['cannon-seconds'] ?? 10;
const LOG_LEVEL = args['log-level'] ?? 'info';
for (const m of MODES) if (!['sync', 'sse', 'poll', 'openai'].includes(m)) throw new Error(`unknown mode ${m}`);

const T0 = Date.now();
const say = (msg) => process.stdout.write(`[bench ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
const JOB_ID_IN_GRAPH = /fictures\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/;

let apiUrl;
let sim;
let redisCtl;
let imageBytes = 0;
let images = 0;
let seq = 0;

function body() {
  seq++;
  return { prompt: `bench ${seq}: a lighthouse at dusk`, width: SIZE, height: SIZE, num_inference_steps: STEPS, seed: seq };
}

/** The job resource's timings; throws unless the job succeeded. */
function timingsOf(resource) {
  if (!resource || resource.status !== 'succeeded') throw new Error(`job ended ${resource && resource.status}: ${JSON.stringify(resource && resource.error)}`);
  return resource.timings || {};
}

async function runSync() {
  const t = process.hrtime.bigint();
  const r = await H.request('POST', `${apiUrl}/api/v1/images/generate`, { body: body(), timeoutMs: 120_000 });
  const e2e = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 200 || !r.body || !/^data:image\/png;base64,/.test(r.body.image_url || '')) throw new Error(`sync answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  imageBytes += Math.floor(((r.body.image_url.length - 'data:image/png;base64,'.length) * 3) / 4);
  images++;
  return { e2e, jobId: r.body.job_id, timings: r.body.timings || {} };
}

async function runOpenAi() {
  const b = body();
  const t = process.hrtime.bigint();
  const r = await H.request('POST', `${apiUrl}/v1/images/generations`, { body: { prompt: b.prompt, size: `${SIZE}x${SIZE}`, seed: b.seed }, timeoutMs: 120_000 });
  const e2e = Number(process.hrtime.bigint() - t) / 1e6;
  const b64 = r.body && r.body.data && r.body.data[0] && r.body.data[0].b64_json;
  if (r.status !== 200 || !b64) throw new Error(`openai answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  imageBytes += Math.floor((b64.length * 3) / 4);
  images++;
  const jobId = r.headers['x-job-id'];
  const job = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${jobId}`);
  return { e2e, jobId, timings: timingsOf(job.body) };
}

async function download(jobId) {
  const img = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${jobId}/images/0`, { raw: true, timeoutMs: 30_000 });
  if (img.status !== 200 || !H.pngSize(img.body)) throw new Error(`image of ${jobId} answered ${img.status}`);
  imageBytes += img.body.length;
  images++;
}

async function create() {
  const r = await H.request('POST', `${apiUrl}/api/v1/images/jobs`, { body: body(), timeoutMs: 30_000 });
  if (r.status !== 202) throw new Error(`POST jobs answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  return r.body.id;
}

/** Reads the job's server-sent events until the final `job` event; resolves with that resource. */
function sseUntilDone(jobId) {
  return new Promise((resolve, reject) => {
    const u = new URL(`${apiUrl}/api/v1/images/jobs/${jobId}/events`);
    const req = http.get({ host: u.hostname, port: u.port, path: u.pathname, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`events answered ${res.statusCode}`));
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block);
          const data = /^data: (.*)$/m.exec(block);
          if (event && event[1] === 'job' && data) {
            req.destroy();
            resolve(JSON.parse(data[1]));
            return;
          }
        }
      });
      res.on('end', () => reject(new Error('event stream ended without a job event')));
      res.on('error', () => undefined);
    });
    req.setTimeout(120_000, () => req.destroy(new Error('event stream timed out')));
    req.on('error', (e) => {
      if (!/aborted|socket hang up/.test(e.message)) reject(e);
    });
  });
}

async function runSse() {
  const t = process.hrtime.bigint();
  const id = await create();
  const resource = await sseUntilDone(id);
  const timings = timingsOf(resource);
  await download(id);
  return { e2e: Number(process.hrtime.bigint() - t) / 1e6, jobId: id, timings };
}

async function runPoll() {
  const t = process.hrtime.bigint();
  const id = await create();
  let resource;
  for (;;) {
    const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${id}`);
    if (r.status === 200 && ['succeeded', 'failed', 'canceled'].includes(r.body.status)) {
      resource = r.body;
      break;
    }
    await sleep(POLL_MS);
  }
  const timings = timingsOf(resource);
  await download(id);
  return { e2e: Number(process.hrtime.bigint() - t) / 1e6, jobId: id, timings };
}

const RUNNERS = { sync: runSync, sse: runSse, poll: runPoll, openai: runOpenAi };

/** execution_start → execution_success per job, and the GPU's start/end times, from the simulator's history. */
async function simHistory() {
  const r = await H.request('GET', `${sim.url}/history`, { timeoutMs: 30_000 });
  const out = new Map();
  for (const [, entry] of Object.entries(r.body || {})) {
    const m = JOB_ID_IN_GRAPH.exec(JSON.stringify(entry.prompt && entry.prompt[2]));
    const msgs = (entry.status && entry.status.messages) || [];
    const ts = (name) => {
      const x = msgs.find((mm) => mm[0] === name);
      return x && x[1] && x[1].timestamp;
    };
    if (m) out.set(m[1], { start: ts('execution_start'), end: ts('execution_success') });
  }
  return out;
}

async function clearSimHistory() {
  await H.request('POST', `${sim.url}/history`, { body: { clear: true } });
}

function stats(values) {
  const v = values.filter((x) => Number.isFinite(x));
  const mean = v.reduce((a, b) => a + b, 0) / (v.length || 1);
  return { n: v.length, p50: H.percentile(v, 50), p95: H.percentile(v, 95), max: v.length ? Math.max(...v) : NaN, mean };
}

async function row(mode, concurrency) {
  await clearSimHistory();
  const results = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < N) {
        next++;
        results.push(await RUNNERS[mode]());
      }
    }),
  );
  const wall = Date.now() - started;
  const hist = await simHistory();
  for (const r of results) {
    const h = hist.get(r.jobId);
    r.gpu = Number.isFinite(r.timings.comfyui_ms) ? r.timings.comfyui_ms : h && h.start && h.end ? h.end - h.start : NaN;
    r.histGpu = h && h.start && h.end ? h.end - h.start : NaN;
    r.overhead = r.e2e - r.gpu;
    r.overheadNoQueue = r.e2e - r.gpu - (r.timings.queue_ms ?? 0);
  }
  // GPU idle between consecutive prompts (only meaningful while work is queued: concurrent rows).
  const spans = [...hist.values()].filter((h) => h.start && h.end).sort((a, b) => a.start - b.start);
  const gaps = [];
  for (let i = 1; i < spans.length; i++) gaps.push(spans[i].start - spans[i - 1].end);
  const mismatch = results.filter((r) => Number.isFinite(r.histGpu) && Math.abs(r.histGpu - r.gpu) > 1).length;
  return {
    mode, concurrency, wall, results, gaps, mismatch,
    e2e: stats(results.map((r) => r.e2e)),
    gpu: stats(results.map((r) => r.gpu)),
    overhead: stats(results.map((r) => (concurrency > 1 ? r.overheadNoQueue : r.overhead))),
    pickup: stats(results.map((r) => r.timings.queue_ms)),
    prep: stats(results.map((r) => r.timings.total_ms - r.timings.queue_ms - r.timings.execution_ms)),
    worker: stats(results.map((r) => r.timings.execution_ms - r.gpu)),
    delivery: stats(results.map((r) => r.e2e - r.timings.total_ms)),
    gap: stats(gaps),
  };
}

/** used_memory of the bench Redis (INFO over a raw socket: no client library needed here). */
function redisMemory() {
  return new Promise((resolve) => {
    const sock = net.connect({ host: H.HOST, port: redisCtl.port });
    let buf = '';
    sock.setTimeout(2000, () => sock.destroy());
    sock.on('error', () => resolve(NaN));
    sock.on('close', () => {
      const m = /used_memory:(\d+)/.exec(buf);
      resolve(m ? Number(m[1]) : NaN);
    });
    sock.on('connect', () => sock.write('INFO memory\r\nQUIT\r\n'));
    sock.on('data', (d) => (buf += d));
  });
}

const f = (x) => (Number.isFinite(x) ? x.toFixed(1).padStart(7) : '    n/a');

async function cannon(title, url) {
  const res = await autocannon({ url, connections: 10, duration: CANNON_S, pipelining: 1 });
  return `${title.padEnd(34)} ${String(Math.round(res.requests.average)).padStart(7)} req/s   p50 ${f(res.latency.p50)} ms   p99 ${f(res.latency.p99)} ms   non-2xx ${res.non2xx}   errors ${res.errors}`;
}

async function main() {
  H.requireBuild(['api', 'worker', 'sim']);
  const runDir = H.makeRunDir('bench');
  const logs = join(runDir, 'logs');
  let ok = false;
  try {
    // Every image stays in the Redis result store for RESULT_TTL_SECONDS: ~600 images of 512x512
    // overflow the 256 MB of the test bench (Redis OOM, jobs fail), so this Redis gets more room.
    const redis = await H.RedisProcess.start({ dir: join(runDir, 'redis'), appendonly: true, logPath: join(logs, 'redis.log'), maxmemory: '2gb' });
    redisCtl = redis;
    const simPort = await H.freePort();
    sim = new H.AppProcess('sim', 'sim', { PORT: String(simPort), HOST: H.HOST, SIM_STEP_MS: String(STEP_MS), SIM_OUTPUT_DIR: join(runDir, 'sim-out'), LOG_LEVEL: 'warn' }, logs);
    sim.url = `http://${H.HOST}:${simPort}`;
    sim.start();
    if (!(await H.waitHttp(`${sim.url}/system_stats`, 30_000, (r) => r.status === 200))) throw new Error(`the simulator did not start (log ${sim.logPath})`);
    const apiPort = await H.freePort();
    apiUrl = `http://${H.HOST}:${apiPort}`;
    const common = {
      REDIS_URL: redis.url, QUEUE_PREFIX: 'bench', COMFYUI_URLS: sim.url, WORKFLOWS_DIR: 'workflows', LOG_LEVEL: LOG_LEVEL, GPU_REQUIRED: 'false',
      RATE_LIMIT_SUBMIT_PER_MINUTE: '10000000', RATE_LIMIT_READ_PER_MINUTE: '10000000', QUOTA_MAX_JOBS_PER_KEY: '1000000', AUTH_REQUIRED: 'false',
    };
    const api = new H.AppProcess('api', 'api', { ...common, PORT: String(apiPort), HOST: H.HOST }, logs);
    api.start();
    const worker = new H.AppProcess('worker', 'worker', common, logs);
    worker.start();
    if (!(await H.waitHttp(`${apiUrl}/health/live`, 45_000, (r) => r.status === 200))) throw new Error(`the API did not start (log ${api.logPath})`);
    // The synchronous routes answer 503 no_capacity until a worker's heartbeat says it serves: wait for readiness.
    if (!(await H.waitHttp(`${apiUrl}/health/ready`, 45_000, (r) => r.status === 200))) throw new Error(`the API is not ready: no worker serves (log ${worker.logPath})`);

    say(`setup: 1 simulator (SIM_STEP_MS ${STEP_MS}), qwen-image-lightning-4step ${STEPS} steps at ${SIZE}x${SIZE}, ${N} jobs per row, ` +
      `concurrency ${CONC}, poll every ${POLL_MS} ms, LOG_LEVEL ${LOG_LEVEL}, node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0].model.trim()}), ` +
      `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    // Warm-up: the first prompt loads the "models", JIT and connection pools warm up.
    for (let i = 0; i < 5; i++) await runSync();
    let lastJobId;
    const rows = [];
    for (const mode of MODES) {
      for (const c of [1, CONC]) {
        const r = await row(mode, c);
        rows.push(r);
        lastJobId = r.results[r.results.length - 1].jobId;
        say(`${mode} c=${c}: e2e p50 ${r.e2e.p50.toFixed(1)} ms, overhead p50 ${r.overhead.p50.toFixed(1)} ms (${(r.wall / 1000).toFixed(1)} s)`);
      }
    }

    const lines = [];
    lines.push('');
    lines.push(`LATENCY (ms; ${N} jobs per row; ${SIZE}x${SIZE}, ${STEPS} steps, SIM_STEP_MS ${STEP_MS}; load average at the end ${os.loadavg()[0].toFixed(2)})`);
    lines.push('row        e2e p50 e2e p95 gpu p50 |  ovh p50 ovh p95 ovh max ovh mean |  pickup    prep comfyIO deliver (p50) | gpu gap p50  p95 | jobs/s');
    for (const r of rows) {
      const name = `${r.mode} ${r.concurrency === 1 ? 'seq' : `c=${r.concurrency}`}`.padEnd(9);
      lines.push(
        `${name}${f(r.e2e.p50)} ${f(r.e2e.p95)} ${f(r.gpu.p50)} | ${f(r.overhead.p50)} ${f(r.overhead.p95)} ${f(r.overhead.max)} ${f(r.overhead.mean)}  | ${f(r.pickup.p50)} ${f(r.prep.p50)} ${f(r.worker.p50)} ${f(r.delivery.p50)}       | ` +
          `${r.concurrency > 1 ? `${f(r.gap.p50)} ${f(r.gap.p95)}` : '      -       -'} | ${(r.results.length / (r.wall / 1000)).toFixed(1)}`,
      );
    }
    lines.push('e2e = client POST → last image byte; gpu = execution_start → execution_success (timings.comfyui_ms); ovh = e2e − gpu (concurrent rows: also − queue wait).');
    lines.push('ovh ≈ pickup (accepted → a worker took it; includes queue wait) + prep (worker start → submit, and result record) + comfyIO (submit → outputs');
    lines.push('stored, minus gpu: POST /prompt, WS, /history, /view, store) + deliver (request until accepted, and result recorded → client has');
    lines.push('the image: notification, API read, response body).');
    lines.push('gpu gap = GPU idle between one prompt\'s end and the next one\'s start while jobs were queued.');
    const mem = await redisMemory();
    lines.push(`images: ${images}, mean ${(imageBytes / Math.max(1, images) / 1024).toFixed(0)} KiB; Redis used memory at the end ${(mem / 1048576).toFixed(0)} MiB ` +
      `(results are kept RESULT_TTL_SECONDS, by default a day)`);
    const mism = rows.reduce((a, r) => a + r.mismatch, 0);
    if (mism) lines.push(`note: ${mism} jobs where timings.comfyui_ms and the simulator history differ by > 1 ms`);

    say(`autocannon: 10 connections, ${CANNON_S} s each`);
    lines.push('');
    lines.push(`HTTP (autocannon, 10 connections, ${CANNON_S} s)`);
    lines.push(await cannon('GET /health/live', `${apiUrl}/health/live`));
    lines.push(await cannon('GET /api/v1/images/jobs/{id}', `${apiUrl}/api/v1/images/jobs/${lastJobId}`));
    process.stdout.write(`${lines.join('\n')}\n`);
    ok = true;
  } finally {
    await H.cleanup();
    if (ok && !args['keep-logs']) rmSync(runDir, { recursive: true, force: true });
    else say(`logs kept in ${runDir}`);
  }
}

H.installExitHandlers();
main().then(
  () => process.exit(0),
  async (e) => {
    process.stderr.write(`bench failed: ${e && e.stack ? e.stack : e}\n`);
    await H.cleanup();
    process.exit(1);
  },
);
