'use strict';
/*
 * `npm run bench`: what the service adds to an image on top of the GPU's own work, in one run.
 *
 * Starts a private Redis (AOF everysec, as in production), a ComfyUI simulator, the API and a
 * worker from dist/, and prints, side by side:
 *
 * 1. LATENCY rows, per image size (256² and 1328² by default) and per client count (1 and 4):
 *      direct : the floor, a minimal ComfyUI client with no service in between: POST /prompt,
 *               wait on the WebSocket, GET /history/{id}, GET /view
 *      sync   : POST /api/v1/images/generate (waits, answers a data: URL)
 *      wait   : POST /api/v1/images/jobs → GET …/{id}?wait=60 (long-poll) → GET …/images/0
 *      sse    : POST /api/v1/images/jobs → GET …/events until the final `job` event → GET …/images/0
 *      poll   : POST /api/v1/images/jobs → GET the job every --poll-ms until it ended → GET …/images/0
 *      openai : POST /v1/images/generations (OpenAI-compatible, waits, answers b64_json; the job is
 *               found through its X-Job-Id header). Not in the default modes: --modes …,openai
 *    e2e      = client clock, from the first request to the last byte of the image.
 *    gpu      = the simulator's own execution time of that prompt (its /history: execution_start →
 *               execution_success), what a real GPU would spend whatever the middleware did.
 *    overhead = e2e − gpu (with 4 clients a job also waits for the others: that wait is not
 *               overhead, so the 4-client rows show throughput and the GPU's side instead).
 *    busy     = the GPU's share of the row's span (first start → last end) spent executing;
 *    gap      = the GPU's idle time between one prompt's end and the next one's start.
 * 2. HTTP: autocannon -c 32 on POST /api/v1/images/jobs, GET /api/v1/images/jobs/{id} and
 *    GET /health/live (req/s, p50, p99), with the worker stopped so only the API works.
 * 3. SCALING: 1, 2, 4, 8 simulators (4 steps × --scale-step-ms at 256², so the CPU stays mostly idle)
 *    behind one worker with a slot each; jobs/s from the simulators' histories, and × of one GPU.
 * 4. DEPTH: submission and job GET p50 (one client) with an empty queue, with --depth waiting jobs
 *    (added by a pipelined addBulk of small jobs), and empty again (the machine's load drifts).
 *
 * The last line is machine-readable:
 *   BENCH sync_ovh_p50_ms=… async_wait_ovh_p50_ms=… gpu_busy_pct=… submit_rps=… get_rps=… scale8_x=…
 * (overheads at the largest size with one client; busy share of the sync row with 4 clients at the
 * largest size; req/s with 32 connections; jobs/s of 8 simulators over 1).
 *
 *   node bench/latency.js [--quick] [--jobs 30] [--sizes 256,1328] [--modes direct,sync,wait,sse,poll[,openai]]
 *                         [--concurrency 4] [--step-ms 50] [--steps 4] [--poll-ms 10] [--cannon-seconds 10]
 *                         [--scale 1,2,4,8] [--scale-step-ms 100] [--scale-jobs 12] [--depth 100000]
 *                         [--log-level info] [--keep-logs]
 */
const { join } = require('node:path');
const http = require('node:http');
const { rmSync } = require('node:fs');
const { randomUUID } = require('node:crypto');
const os = require('node:os');
const WebSocket = require('ws');
const H = require('./lib/harness');

const { sleep } = H;

const USAGE = 'node bench/latency.js [--quick] [--jobs 30] [--sizes 256,1328] [--modes direct,sync,wait,sse,poll[,openai]] [--concurrency 4] [--step-ms 50] [--steps 4] ' +
  '[--poll-ms 10] [--cannon-seconds 10] [--scale 1,2,4,8] [--scale-step-ms 100] [--scale-jobs 12] [--depth 100000] [--log-level info] [--keep-logs]\n';

/** The command line (only when run as a script: the harness test requires this file for its parts). */
function cli() {
  let a;
  try {
    a = H.parseArgs(process.argv.slice(2), {
      quick: 'bool', jobs: 'number', sizes: 'string', modes: 'string', concurrency: 'number', 'step-ms': 'number', steps: 'number',
      'poll-ms': 'number', 'cannon-seconds': 'number', scale: 'string', 'scale-step-ms': 'number', 'scale-jobs': 'number', depth: 'number',
      'log-level': 'string', 'keep-logs': 'bool', help: 'bool',
    });
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  if (a.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  return a;
}
const args = require.main === module ? cli() : {};
const QUICK = !!args.quick;
const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const CONFIG = {
  jobs: Math.max(2, Math.floor(args.jobs ?? (QUICK ? 4 : 30))),
  // --quick: the largest size only (the BENCH line's figures are taken there).
  sizes: list(args.sizes ?? (QUICK ? '1328' : '256,1328')).map(Number),
  modes: list(args.modes ?? 'direct,sync,wait,sse,poll'),
  concurrency: Math.max(2, Math.floor(args.concurrency ?? 4)),
  stepMs: args['step-ms'] ?? 50,
  steps: args.steps ?? 4,
  pollMs: args['poll-ms'] ?? 10,
  cannonSeconds: args['cannon-seconds'] ?? (QUICK ? 2 : 10),
  scale: list(args.scale ?? (QUICK ? '1,8' : '1,2,4,8')).map(Number),
  scaleStepMs: args['scale-step-ms'] ?? (QUICK ? 50 : 100),
  scaleJobs: Math.max(2, Math.floor(args['scale-jobs'] ?? (QUICK ? 4 : 12))),
  depth: Math.max(0, Math.floor(args.depth ?? (QUICK ? 10_000 : 100_000))),
  depthSamples: QUICK ? 40 : 200,
  logLevel: args['log-level'] ?? 'info',
};
const MODES = ['direct', 'sync', 'wait', 'sse', 'poll', 'openai'];
for (const m of CONFIG.modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m} (known: ${MODES.join(', ')})`);
for (const s of CONFIG.sizes) if (!Number.isInteger(s) || s < 256 || s > 2048 || s % 16) throw new Error(`--sizes: ${s} is not a multiple of 16 within 256..2048`);
for (const n of CONFIG.scale) if (!Number.isInteger(n) || n < 1 || n > 16) throw new Error(`--scale: ${n} is not a count of 1..16`);

const T0 = Date.now();
const say = (msg) => process.stdout.write(`[bench ${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
/** ms from hrtime `t` to `until` (default now). */
const ms = (t, until = process.hrtime.bigint()) => Number(until - t) / 1e6;
const TERMINAL = ['succeeded', 'failed', 'canceled'];

let seq = 0;
function jobBody(size, steps = CONFIG.steps) {
  seq++;
  return { prompt: `bench ${seq}: a lighthouse at dusk`, width: size, height: size, num_inference_steps: steps, seed: seq };
}

// ------------------------------------------------------------------------------ the GPU's own view

/** The simulator's history: per prompt, execution_start and execution_success (ms) and the first output image. */
async function simHistory(sim) {
  const r = await H.request('GET', `${sim.url}/history`, { timeoutMs: 30_000 });
  const out = new Map();
  for (const [promptId, entry] of Object.entries(r.body || {})) {
    const msgs = (entry.status && entry.status.messages) || [];
    const ts = (name) => msgs.find((m) => m[0] === name)?.[1]?.timestamp;
    const image = Object.values(entry.outputs || {}).flatMap((o) => o.images || [])[0];
    out.set(promptId, { start: ts('execution_start'), end: ts('execution_success'), image, graph: entry.prompt && entry.prompt[2] });
  }
  return out;
}

const clearHistory = (sim) => H.request('POST', `${sim.url}/history`, { body: { clear: true } });

/** GPU busy share and idle gaps over a set of executions (each {start, end}). */
function gpuSide(spans) {
  const s = spans.filter((x) => x.start && x.end).sort((a, b) => a.start - b.start);
  if (!s.length) return { busyPct: NaN, gaps: [], span: NaN };
  const busy = s.reduce((a, x) => a + (x.end - x.start), 0);
  const span = s[s.length - 1].end - s[0].start;
  const gaps = [];
  for (let i = 1; i < s.length; i++) gaps.push(Math.max(0, s[i].start - s[i - 1].end));
  return { busyPct: span > 0 ? (100 * busy) / span : NaN, gaps, span };
}

/** The four legs of a job's overhead, in the order they happen (see hopSplit). */
const HOPS = ['intake', 'dispatch', 'drain', 'answer'];

/**
 * A job's overhead cut at the API's and the simulator's clock marks (ms, one machine's clock):
 * intake = first request → job created (HTTP, guards, validation, admission checks); dispatch =
 * created → GPU start (queue, worker pickup, cancel check, prompt id on record, POST /prompt);
 * drain = GPU end → job finished (the worker sees the end, /history, /view, store; finished_at is
 * stamped as the terminal record is made); answer = finished → last byte (the record is written,
 * the API is woken, reads the job and image, the client receives).
 * created_at / finished_at as the job resource gives them (ISO strings or ms); NaN where one is missing.
 */
function hopSplit({ at, e2e, createdAt, finishedAt, gpuStart, gpuEnd }) {
  const t = (x) => (typeof x === 'number' ? x : typeof x === 'string' ? Date.parse(x) : NaN);
  const created = t(createdAt);
  const finished = t(finishedAt);
  const start = t(gpuStart);
  const end = t(gpuEnd);
  return { intake: created - at, dispatch: start - created, drain: finished - end, answer: at + e2e - finished };
}

/** The job id a prompt was made for: the API's SaveImage prefix carries it. */
const JOB_ID_IN_GRAPH = /fictures\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/;

// ---------------------------------------------------------------------------- the direct client

/**
 * The floor: what a client of ComfyUI itself does, with nothing in between. One WebSocket per
 * client lane; the graph is the one the API built for the same size (taken from the simulator's
 * history), with a fresh seed so ComfyUI's cache never answers.
 */
class DirectClient {
  constructor(sim, graph) {
    this.sim = sim;
    this.graph = graph;
    this.clientId = randomUUID();
    this.waiters = new Map();
  }

  async open() {
    const ws = new WebSocket(`${this.sim.url.replace(/^http/, 'ws')}/ws?clientId=${this.clientId}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg;
      try {
        msg = JSON.parse(String(data));
      } catch {
        return;
      }
      const id = msg.data && msg.data.prompt_id;
      const done = msg.type === 'execution_success' || (msg.type === 'executing' && msg.data && msg.data.node === null);
      const failed = msg.type === 'execution_error' || msg.type === 'execution_interrupted';
      const w = id && this.waiters.get(id);
      if (w && (done || failed)) {
        this.waiters.delete(id);
        if (failed) w.reject(new Error(`prompt ${id}: ${msg.type}`));
        else w.resolve();
      }
    });
    this.ws = ws;
    return this;
  }

  close() {
    this.ws?.close();
  }

  withSeed() {
    const g = JSON.parse(JSON.stringify(this.graph));
    const seed = Math.floor(Math.random() * 2 ** 48);
    for (const node of Object.values(g)) {
      for (const k of ['seed', 'noise_seed']) if (node.inputs && typeof node.inputs[k] === 'number') node.inputs[k] = seed;
    }
    return g;
  }

  async run() {
    const t = process.hrtime.bigint();
    const r = await H.request('POST', `${this.sim.url}/prompt`, { body: { prompt: this.withSeed(), client_id: this.clientId } });
    if (r.status !== 200) throw new Error(`direct /prompt answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    const promptId = r.body.prompt_id;
    await new Promise((resolve, reject) => {
      this.waiters.set(promptId, { resolve, reject });
      setTimeout(() => reject(new Error(`direct prompt ${promptId} timed out`)), 120_000).unref();
    });
    const h = await H.request('GET', `${this.sim.url}/history/${promptId}`);
    const image = Object.values(h.body?.[promptId]?.outputs || {}).flatMap((o) => o.images || [])[0];
    if (!image) throw new Error(`direct prompt ${promptId} has no image`);
    const q = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder || '', type: image.type || 'output' });
    const img = await H.request('GET', `${this.sim.url}/view?${q}`, { raw: true, timeoutMs: 30_000 });
    if (img.status !== 200 || !H.pngSize(img.body)) throw new Error(`direct /view answered ${img.status}`);
    return { e2e: ms(t), promptId, bytes: img.body.length };
  }
}

// ---------------------------------------------------------------------------- the API's clients

let apiUrl;

async function create(size, headers = {}) {
  const r = await H.request('POST', `${apiUrl}/api/v1/images/jobs`, { body: jobBody(size), headers, timeoutMs: 120_000 });
  if (r.status !== 202 && r.status !== 200) throw new Error(`POST jobs answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  return r.body;
}

async function download(jobId) {
  const img = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${jobId}/images/0`, { raw: true, timeoutMs: 30_000 });
  if (img.status !== 200 || !H.pngSize(img.body)) throw new Error(`image of ${jobId} answered ${img.status}`);
  return img.body.length;
}

function succeeded(resource) {
  if (!resource || resource.status !== 'succeeded') throw new Error(`job ended ${resource && resource.status}: ${JSON.stringify(resource && resource.error)}`);
  return resource;
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

const RUNNERS = {
  async sync(size) {
    const t = process.hrtime.bigint();
    const r = await H.request('POST', `${apiUrl}/api/v1/images/generate`, { body: jobBody(size), timeoutMs: 120_000 });
    if (r.status !== 200 || !/^data:image\/png;base64,/.test(r.body?.image_url || '')) throw new Error(`sync answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    // The clock stops at the answer's last byte: parsing its JSON is the client's own business (the direct client parses no image either).
    return { e2e: ms(t, r.lastByteAt), jobId: r.body.job_id, bytes: Math.floor(((r.body.image_url.length - 22) * 3) / 4) };
  },
  async openai(size) {
    const b = jobBody(size);
    const t = process.hrtime.bigint();
    const r = await H.request('POST', `${apiUrl}/v1/images/generations`, { body: { prompt: b.prompt, size: `${size}x${size}`, seed: b.seed }, timeoutMs: 120_000 });
    const b64 = r.body?.data?.[0]?.b64_json;
    if (r.status !== 200 || !b64) throw new Error(`openai answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    return { e2e: ms(t, r.lastByteAt), jobId: r.headers['x-job-id'], bytes: Math.floor((b64.length * 3) / 4) };
  },
  async wait(size) {
    const t = process.hrtime.bigint();
    const { id } = await create(size);
    const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${id}?wait=60`, { timeoutMs: 120_000 });
    succeeded(r.body);
    const bytes = await download(id);
    return { e2e: ms(t), jobId: id, bytes };
  },
  async sse(size) {
    const t = process.hrtime.bigint();
    const { id } = await create(size);
    succeeded(await sseUntilDone(id));
    const bytes = await download(id);
    return { e2e: ms(t), jobId: id, bytes };
  },
  async poll(size) {
    const t = process.hrtime.bigint();
    const { id } = await create(size);
    for (;;) {
      const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${id}`);
      if (r.status === 200 && TERMINAL.includes(r.body.status)) {
        succeeded(r.body);
        break;
      }
      await sleep(CONFIG.pollMs);
    }
    const bytes = await download(id);
    return { e2e: ms(t), jobId: id, bytes };
  },
};

// ---------------------------------------------------------------------------------------- rows

function stats(values) {
  const v = values.filter((x) => Number.isFinite(x));
  return { n: v.length, p50: H.percentile(v, 50), p99: H.percentile(v, 99), max: v.length ? Math.max(...v) : NaN };
}

/** n runs of one mode at one size with `concurrency` clients; the GPU's side from the simulator's history. */
async function row(sim, graphs, mode, size, concurrency, n) {
  await clearHistory(sim);
  const directs = mode === 'direct' ? await Promise.all(Array.from({ length: concurrency }, () => new DirectClient(sim, graphs.get(size)).open())) : [];
  const results = [];
  let next = 0;
  const started = Date.now();
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async (_, lane) => {
        while (next < n) {
          next++;
          // Wall clock at the first request, to place the run around the simulator's own timestamps.
          const at = Date.now();
          const r = mode === 'direct' ? await directs[lane].run() : await RUNNERS[mode](size);
          results.push({ ...r, at });
        }
      }),
    );
  } finally {
    for (const d of directs) d.close();
  }
  const wall = Date.now() - started;
  const hist = await simHistory(sim);
  const byJob = new Map();
  for (const [promptId, h] of hist) {
    const m = JOB_ID_IN_GRAPH.exec(JSON.stringify(h.graph ?? {}));
    byJob.set(m ? m[1] : promptId, h);
  }
  for (const r of results) {
    const h = byJob.get(r.jobId ?? r.promptId) ?? hist.get(r.promptId);
    r.gpu = h && h.start && h.end ? h.end - h.start : NaN;
    r.overhead = r.e2e - r.gpu;
    // Where the overhead is: first request → execution_start, and execution_success → last byte (ms clocks).
    r.before = h && h.start ? h.start - r.at : NaN;
    r.after = h && h.end ? r.at + r.e2e - h.end : NaN;
  }
  // Each side split once more at the job's own clock marks: created (the API accepted it) and finished (the worker made its record).
  if (mode !== 'direct' && concurrency === 1) {
    for (const r of results) {
      const job = r.jobId ? await H.request('GET', `${apiUrl}/api/v1/images/jobs/${r.jobId}`, { timeoutMs: 30_000 }) : undefined;
      const h = byJob.get(r.jobId);
      Object.assign(r, hopSplit({ at: r.at, e2e: r.e2e, createdAt: job?.body?.created_at, finishedAt: job?.body?.finished_at, gpuStart: h?.start, gpuEnd: h?.end }));
    }
  }
  const side = gpuSide([...hist.values()]);
  return {
    mode, size, concurrency, wall, n: results.length,
    e2e: stats(results.map((r) => r.e2e)),
    gpu: stats(results.map((r) => r.gpu)),
    overhead: stats(results.map((r) => r.overhead)),
    before: stats(results.map((r) => r.before)),
    after: stats(results.map((r) => r.after)),
    hops: Object.fromEntries(HOPS.map((k) => [k, stats(results.map((r) => r[k] ?? NaN))])),
    busyPct: side.busyPct,
    gap: stats(side.gaps),
    jobsPerS: results.length / (wall / 1000),
    meanKiB: results.reduce((a, r) => a + (r.bytes || 0), 0) / Math.max(1, results.length) / 1024,
  };
}

const f = (x, w = 7, d = 1) => (Number.isFinite(x) ? x.toFixed(d).padStart(w) : 'n/a'.padStart(w));

function latencyTable(rows) {
  const lines = [
    '',
    `LATENCY (ms; ${CONFIG.jobs} jobs per 1-client row, ${CONFIG.jobs * 2} per ${CONFIG.concurrency}-client row; ${CONFIG.steps} steps × SIM_STEP_MS ${CONFIG.stepMs}; poll every ${CONFIG.pollMs} ms)`,
    'size  mode   clients |  e2e p50  e2e p99  gpu p50 |  ovh p50  ovh p99  ovh max | GPU busy  gap p50  gap p99 | jobs/s | image KiB',
  ];
  for (const r of rows) {
    const one = r.concurrency === 1;
    lines.push(
      `${String(r.size).padEnd(5)} ${r.mode.padEnd(6)} ${String(r.concurrency).padStart(7)} | ${f(r.e2e.p50, 8)} ${f(r.e2e.p99, 8)} ${f(r.gpu.p50, 8)} | ` +
        `${one ? `${f(r.overhead.p50, 8)} ${f(r.overhead.p99, 8)} ${f(r.overhead.max, 8)}` : '       -        -        -'} | ` +
        `${f(r.busyPct, 7)} % ${one ? '       -        -' : `${f(r.gap.p50, 8)} ${f(r.gap.p99, 8)}`} | ${f(r.jobsPerS, 6)} | ${f(r.meanKiB, 9, 0)}`,
    );
  }
  lines.push('e2e = client: first request → last image byte. gpu = the simulator\'s execution_start → execution_success of that prompt.');
  lines.push('ovh = e2e − gpu (1 client). GPU busy = executing share of first start → last end; gap = idle between prompts (several clients).');
  // What the service adds over a client of ComfyUI itself, which pays the WebSocket, /history and /view too.
  for (const size of [...new Set(rows.map((r) => r.size))]) {
    const direct = rows.find((r) => r.size === size && r.mode === 'direct' && r.concurrency === 1);
    const others = rows.filter((r) => r.size === size && r.mode !== 'direct' && r.concurrency === 1);
    if (!direct || !others.length) continue;
    lines.push(`${size}² over the direct client (ovh p50 − direct ovh p50 ${f(direct.overhead.p50, 0)}): ${others.map((r) => `${r.mode} ${f(r.overhead.p50 - direct.overhead.p50, 0)}`).join(', ')} ms`);
  }
  // The overhead split at the GPU's run: the submission's way in, and the image's way out.
  for (const size of [...new Set(rows.map((r) => r.size))]) {
    const ones = rows.filter((r) => r.size === size && r.concurrency === 1);
    if (!ones.length) continue;
    lines.push(`${size}² ovh p50 split, request → GPU start + GPU end → last byte: ${ones.map((r) => `${r.mode} ${f(r.before.p50, 0)} + ${f(r.after.p50, 0)}`).join(', ')} ms`);
  }
  // Each side cut again at the job's own marks (see hopSplit): intake + dispatch before the GPU, drain + answer after it.
  for (const size of [...new Set(rows.map((r) => r.size))]) {
    const ones = rows.filter((r) => r.size === size && r.concurrency === 1 && r.hops && Number.isFinite(r.hops.intake.p50));
    if (!ones.length) continue;
    const legs = (r) => `${r.mode} ${HOPS.map((k) => f(r.hops[k].p50, 0, 1)).join(' + ')}`;
    lines.push(`${size}² ovh p50 by leg, intake + dispatch (request → created → GPU start) + drain + answer (GPU end → finished → last byte): ${ones.map(legs).join(', ')} ms`);
  }
  return lines;
}

// ------------------------------------------------------------------------------------- scaling

/** Jobs/s of `count` simulators behind one worker (a slot each), from their histories. */
async function scalingRow(stack, count) {
  const sims = stack.scaleSims.slice(0, count);
  await Promise.all(sims.map(clearHistory));
  const worker = new H.AppProcess('worker', `worker-scale-${count}`, { ...stack.common, COMFYUI_URLS: sims.map((s) => s.url).join(',') }, stack.logs);
  const total = CONFIG.scaleJobs * count;
  // Every job is queued before the worker starts, so the row measures dispatch, not submission.
  const ids = [];
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < total) {
      next++;
      ids.push((await create(256)).id);
    }
  }));
  worker.start();
  try {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const stat = await Promise.all(sims.map((s) => H.request('GET', `${s.url}/sim/stats`)));
      const done = stat.reduce((a, r) => a + (r.body?.completed ?? 0), 0) - (stack.scaleDone.get(count) ?? 0);
      if (done >= total) break;
      if (Date.now() > deadline) throw new Error(`scaling row with ${count} simulators: ${done} of ${total} done after 300 s (log ${worker.logPath})`);
      await sleep(100);
    }
    // Every job must have succeeded through the API (its result stored), not only run on a GPU.
    const deadline2 = Date.now() + 60_000;
    for (const id of ids) {
      for (;;) {
        const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${id}`);
        if (r.status === 200 && TERMINAL.includes(r.body.status)) {
          succeeded(r.body);
          break;
        }
        if (Date.now() > deadline2) throw new Error(`job ${id} did not end`);
        await sleep(20);
      }
    }
  } finally {
    await worker.signal('SIGTERM', 30_000);
  }
  const spans = (await Promise.all(sims.map(simHistory))).flatMap((h) => [...h.values()]).filter((x) => x.start && x.end);
  const first = Math.min(...spans.map((s) => s.start));
  const last = Math.max(...spans.map((s) => s.end));
  const perGpu = await Promise.all(sims.map(async (s) => gpuSide([...(await simHistory(s)).values()]).busyPct));
  return { count, jobs: spans.length, jobsPerS: spans.length / ((last - first) / 1000), busyPct: perGpu.reduce((a, b) => a + b, 0) / perGpu.length };
}

// --------------------------------------------------------------------------------------- depth

/** p50 of one-client submissions and GETs of a queued job. */
async function depthSample(n) {
  const submit = [];
  const get = [];
  let id;
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const r = await H.request('POST', `${apiUrl}/api/v1/images/jobs`, { body: jobBody(256) });
    submit.push(ms(t));
    if (r.status !== 202) throw new Error(`depth: POST answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    id = r.body.id;
  }
  let position;
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${id}`);
    get.push(ms(t));
    if (r.status !== 200) throw new Error(`depth: GET answered ${r.status}`);
    position = r.body.queue_position;
  }
  return { submitP50: H.percentile(submit, 50), getP50: H.percentile(get, 50), position };
}

/** Adds `count` small waiting jobs to the default model's queue, in pipelined bulks. */
async function fillQueue(queue, count, like) {
  const BULK = 2_000;
  const inFlight = [];
  for (let i = 0; i < count; i += BULK) {
    const n = Math.min(BULK, count - i);
    inFlight.push(queue.addBulk(Array.from({ length: n }, () => ({ name: 'generate', data: like, opts: { jobId: randomUUID(), priority: 100 } }))));
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

/**
 * Waits until Redis is not rewriting its AOF: the bulk fill grows the file past the rewrite
 * threshold, and a rewrite running in the background competes for the same cores, which would
 * put the cost of a one-off rewrite into the depth figures.
 */
async function aofQuiet(client, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const info = await client.info('persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return true;
    await sleep(200);
  }
  return false;
}

// ---------------------------------------------------------------------------------------- main

/** The BENCH line from the figures (n/a where a row did not run). */
function benchLine(figures) {
  const v = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  return `BENCH sync_ovh_p50_ms=${v(figures.syncOvh)} async_wait_ovh_p50_ms=${v(figures.waitOvh)} gpu_busy_pct=${v(figures.busy)} ` +
    `submit_rps=${v(figures.submitRps, 0)} get_rps=${v(figures.getRps, 0)} scale8_x=${v(figures.scale8, 2)}`;
}

async function main() {
  H.requireBuild(['api', 'worker', 'sim']);
  const { Queue } = require('bullmq');
  const Redis = require('ioredis');
  const runDir = H.makeRunDir('bench');
  const logs = join(runDir, 'logs');
  let ok = false;
  let queue;
  let redisClient;
  try {
    // Images stay in the Redis result store for a day: ~300 images of 1.4 MB need more than the test 256 MB.
    const redis = await H.RedisProcess.start({ dir: join(runDir, 'redis'), appendonly: true, logPath: join(logs, 'redis.log'), maxmemory: '3gb' });
    const sim = await H.startSim('sim', { SIM_STEP_MS: String(CONFIG.stepMs), SIM_OUTPUT_DIR: join(runDir, 'sim-out') }, logs);
    const common = { ...H.UNLIMITED, REDIS_URL: redis.url, QUEUE_PREFIX: 'bench', WORKFLOWS_DIR: 'workflows', LOG_LEVEL: CONFIG.logLevel, COMFYUI_URLS: sim.url };
    const api = await H.startApi(common, logs);
    apiUrl = api.url;
    const worker = new H.AppProcess('worker', 'worker', common, logs);
    worker.start();
    // Ready = Redis, the simulator and a worker's heartbeat are all up (a sync request needs a live worker).
    if (!(await H.waitHttp(`${apiUrl}/health/ready`, 60_000, (r) => r.status === 200))) throw new Error(`the worker did not come up (log ${worker.logPath})`);
    say(`setup: sizes ${CONFIG.sizes.join(', ')}, modes ${CONFIG.modes.join(', ')}, ${CONFIG.steps} steps × ${CONFIG.stepMs} ms, 1 and ${CONFIG.concurrency} clients, ` +
      `${QUICK ? 'QUICK, ' : ''}LOG_LEVEL ${CONFIG.logLevel}, node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} ` +
      '(a shared machine: figures move with its load)');

    // Warm-up, and the graph the API builds at each size (the direct client sends the same one).
    const graphs = new Map();
    for (const size of CONFIG.sizes) {
      await clearHistory(sim);
      for (let i = 0; i < 3; i++) await RUNNERS.sync(size);
      const [h] = [...(await simHistory(sim)).values()];
      if (!h?.graph) throw new Error('the simulator history has no prompt graph');
      graphs.set(size, h.graph);
    }

    const rows = [];
    for (const size of CONFIG.sizes) {
      for (const mode of CONFIG.modes) {
        for (const c of [1, CONFIG.concurrency]) {
          const r = await row(sim, graphs, mode, size, c, c === 1 ? CONFIG.jobs : CONFIG.jobs * 2);
          rows.push(r);
          say(`${size}² ${mode} ×${c}: e2e p50 ${r.e2e.p50.toFixed(1)} ms, ${c === 1 ? `overhead p50 ${r.overhead.p50.toFixed(1)} ms` : `GPU busy ${r.busyPct.toFixed(1)} %`}`);
        }
      }
    }
    const lastJob = rows.filter((r) => r.mode !== 'direct').length ? (await create(256, { prefer: 'wait=30' })).id : undefined;
    await worker.signal('SIGTERM', 30_000);

    // SCALING: simulators that spend their time sleeping, like GPUs seen from the CPU.
    const scaleSims = [];
    for (let i = 0; i < Math.max(...CONFIG.scale); i++) {
      scaleSims.push(await H.startSim(`sim-scale-${i + 1}`, { SIM_STEP_MS: String(CONFIG.scaleStepMs), SIM_OUTPUT_DIR: join(runDir, `sim-scale-${i + 1}`) }, logs));
    }
    // A fresh simulator's first prompts run up to ~30 % slower (its code paths and image encoder
    // warming up): two direct prompts on each first, so the rows compare steady states.
    const warmGraph = graphs.get(256) ?? [...graphs.values()][0];
    await Promise.all(scaleSims.map(async (s) => {
      const client = await new DirectClient(s, warmGraph).open();
      try {
        for (let i = 0; i < 2; i++) await client.run();
      } finally {
        client.close();
      }
    }));
    const stack = { common, logs, scaleSims, scaleDone: new Map() };
    const scaling = [];
    for (const count of CONFIG.scale) {
      // Completed counters are cumulative: remember where each row starts.
      const before = await Promise.all(scaleSims.slice(0, count).map((s) => H.request('GET', `${s.url}/sim/stats`)));
      stack.scaleDone.set(count, before.reduce((a, r) => a + (r.body?.completed ?? 0), 0));
      const r = await scalingRow(stack, count);
      scaling.push(r);
      say(`scaling ${count} GPU(s): ${r.jobsPerS.toFixed(2)} jobs/s, GPU busy ${r.busyPct.toFixed(1)} %`);
    }
    await Promise.all(scaleSims.map((s) => s.signal('SIGTERM', 10_000)));

    // DEPTH: no worker runs now; an empty queue, then `depth` waiting jobs.
    queue = new Queue(QUEUE_NAME, { connection: { url: redis.url }, prefix: 'bench' });
    redisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    await queue.drain(true);
    await aofQuiet(redisClient);
    const empty = await depthSample(CONFIG.depthSamples);
    const like = (await queue.getJob((await create(256)).id)).data;
    const tFill = Date.now();
    await fillQueue(queue, CONFIG.depth, { ...like, params: { ...like.params, prompt: 'depth' } });
    const fillS = (Date.now() - tFill) / 1000;
    if (!(await aofQuiet(redisClient))) say('depth: Redis still rewrites its AOF after 120 s; measuring anyway');
    const deep = await depthSample(CONFIG.depthSamples);
    await queue.drain(true);
    // Empty again: the machine's load drifts; the deep figures are compared with both empty ones.
    await aofQuiet(redisClient);
    const emptyAfter = await depthSample(CONFIG.depthSamples);
    await queue.drain(true);
    say(`depth: ${CONFIG.depth} jobs added in ${fillS.toFixed(1)} s; submit p50 ${empty.submitP50.toFixed(2)} → ${deep.submitP50.toFixed(2)} → ${emptyAfter.submitP50.toFixed(2)} ms, ` +
      `GET p50 ${empty.getP50.toFixed(2)} → ${deep.getP50.toFixed(2)} → ${emptyAfter.getP50.toFixed(2)} ms`);

    // HTTP: the API alone (the worker is stopped; submissions only queue).
    const cannon = {};
    const targets = [
      ['submit', 'POST /api/v1/images/jobs', { url: `${apiUrl}/api/v1/images/jobs`, method: 'POST', body: JSON.stringify({ prompt: 'cannon', width: 256, height: 256 }), headers: { 'content-type': 'application/json' } }],
      ...(lastJob ? [['get', 'GET /api/v1/images/jobs/{id}', { url: `${apiUrl}/api/v1/images/jobs/${lastJob}` }]] : []),
      ['live', 'GET /health/live', { url: `${apiUrl}/health/live` }],
    ];
    for (const [name, title, o] of targets) {
      await H.cannon({ ...o, connections: 32, duration: 1 });
      const res = await H.cannon({ ...o, connections: 32, duration: CONFIG.cannonSeconds });
      cannon[name] = { title, res, rps: res.requests.total / (res.duration || 1) };
      say(`autocannon ${title}: ${Math.round(cannon[name].rps)} req/s`);
    }
    await queue.drain(true);

    const lines = latencyTable(rows);
    lines.push('', `HTTP (autocannon -c 32, ${CONFIG.cannonSeconds} s per route, worker stopped)`);
    for (const c of Object.values(cannon)) lines.push(H.cannonLine(c.title, c.res));
    lines.push('', `SCALING (256², ${CONFIG.steps} steps × ${CONFIG.scaleStepMs} ms, ${CONFIG.scaleJobs} jobs per GPU, one worker with a slot per GPU)`);
    const one = scaling.find((s) => s.count === 1);
    for (const s of scaling) {
      lines.push(`${String(s.count).padStart(2)} GPU(s)  ${f(s.jobsPerS, 7, 2)} jobs/s  ${one ? `${f(s.jobsPerS / one.jobsPerS, 5, 2)}× of one` : ''}  (ideal ${s.count}×)  GPU busy ${f(s.busyPct, 5)} %`);
    }
    lines.push('', `DEPTH (one client, ${CONFIG.depthSamples} requests each; GET of the newest queued job, queue_position computed)`);
    lines.push(`waiting      0: submit p50 ${f(empty.submitP50, 6, 2)} ms   GET p50 ${f(empty.getP50, 6, 2)} ms   (queue_position ${empty.position})`);
    lines.push(`waiting ${String(CONFIG.depth).padStart(6)}: submit p50 ${f(deep.submitP50, 6, 2)} ms   GET p50 ${f(deep.getP50, 6, 2)} ms   (queue_position ${deep.position}; added in ${fillS.toFixed(1)} s)`);
    lines.push(`waiting      0: submit p50 ${f(emptyAfter.submitP50, 6, 2)} ms   GET p50 ${f(emptyAfter.getP50, 6, 2)} ms   (again, after draining)`);
    const mean = (a, b) => (a + b) / 2;
    lines.push(`ratio deep / mean of the empty ones: submit ${f(deep.submitP50 / mean(empty.submitP50, emptyAfter.submitP50), 4, 2)}, GET ${f(deep.getP50 / mean(empty.getP50, emptyAfter.getP50), 4, 2)}`);

    const largest = Math.max(...CONFIG.sizes);
    const pick = (mode, c) => rows.find((r) => r.mode === mode && r.size === largest && r.concurrency === c);
    const eight = scaling.find((s) => s.count === 8);
    const figures = {
      syncOvh: pick('sync', 1)?.overhead.p50,
      waitOvh: pick('wait', 1)?.overhead.p50,
      busy: pick('sync', CONFIG.concurrency)?.busyPct,
      submitRps: cannon.submit?.rps,
      getRps: cannon.get?.rps,
      scale8: eight && one ? eight.jobsPerS / one.jobsPerS : NaN,
    };
    lines.push('', `load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${((Date.now() - T0) / 1000).toFixed(0)} s in all`);
    lines.push(benchLine(figures));
    process.stdout.write(`${lines.join('\n')}\n`);
    ok = true;
  } finally {
    await queue?.close().catch(() => undefined);
    await redisClient?.quit().catch(() => undefined);
    await H.cleanup();
    if (ok && !args['keep-logs']) rmSync(runDir, { recursive: true, force: true });
    else say(`logs kept in ${runDir}`);
  }
}

/** The default model's queue (libs/queue QueueName.Generation). */
const QUEUE_NAME = 'generation';

module.exports = { gpuSide, benchLine, stats, simHistory, clearHistory, DirectClient, hopSplit };

if (require.main === module) {
  H.installExitHandlers();
  main().then(
    () => process.exit(0),
    async (e) => {
      process.stderr.write(`bench failed: ${e && e.stack ? e.stack : e}\n`);
      await H.cleanup();
      process.exit(1);
    },
  );
}
