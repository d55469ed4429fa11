'use strict';
/*
 * `npm run soak`: the chaos soak (reliability.md X1, §2.6). Starts a private AOF Redis, two ComfyUI
 * simulators, one API and two workers (each worker drives ONE simulator, so a kill hits one GPU),
 * submits jobs while a fault schedule runs, stops the faults, drains, verifies, and prints one
 * figures line in the Jepsen total-queue vocabulary:
 *
 *   attempted, acknowledged, succeeded, failed (by error.code), canceled, lost, unexpected,
 *   re-executed, recovery p50/max, faults injected {...}, throughput
 *
 * Exit code 0 only when lost = 0 and unexpected = 0.
 *
 *   node bench/soak.js [--jobs 300] [--duration 150] [--short] [--step-ms 50] [--concurrency 24]
 *                      [--seed 1] [--keep-logs] [--redis-kill] [--negative-control]
 *   --short: 60 jobs over a 30 s window (CI, test/soak.e2e-spec.ts); --duration: the fault window, s.
 *
 * Definitions used here (reliability.md, top):
 * - attempted: every POST /api/v1/images/jobs sent (a submission refused with 503 during the Redis
 *   restart is retried, same Idempotency-Key and body, as a new attempt of the same logical job).
 * - acknowledged: 202 with a job id.
 * - lost: acknowledged, but after the drain not terminal, or its record answers 404/410 although
 *   retention (RESULT_TTL_SECONDS, one day) is far from over.
 * - unexpected: anything the driver did not cause: a job in Redis under our prefix that matches no
 *   attempt; a result-store key of such a job; a webhook job (the driver asks for none); a prompt on a
 *   simulator whose graph names no job of ours; a job that ended "canceled" although it was never
 *   canceled; a succeeded job whose image is missing, not a PNG, of the wrong size or not the bytes
 *   its sha256 names, or whose embedded prompt graph (ComfyUI writes it into the PNG) names another
 *   job; two jobs with the same image bytes.
 * - re-executed: see SimObserver below.
 * - recovery (per worker kill): kill → the job that was in flight on that GPU is terminal; when no
 *   job was in flight, kill → the next job start on that GPU. Also reported: the stalled-job
 *   recovery (kill → next start of the in-flight job, BullMQ's stall check), to compare with
 *   B = lockDuration + 2 × stalledInterval.
 */
const { createHash, randomUUID } = require('node:crypto');
const { rmSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { Queue } = require('bullmq');
const Redis = require('ioredis');
const H = require('./lib/harness');

const { sleep } = H;

// ------------------------------------------------------------------------------------------ options

let args;
try {
  args = H.parseArgs(process.argv.slice(2), {
    jobs: 'number', duration: 'number', short: 'bool', 'step-ms': 'number', concurrency: 'number', seed: 'number', 'keep-logs': 'bool', help: 'bool',
    'redis-kill': 'bool', 'negative-control': 'bool',
  });
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write('node bench/soak.js [--jobs N] [--duration S] [--short] [--step-ms MS] [--concurrency C] [--seed N] [--keep-logs] [--redis-kill] [--negative-control]\n');
  process.exit(0);
}
const SHORT = !!args.short;
const JOBS = Math.max(1, Math.floor(args.jobs ?? (SHORT ? 60 : 300)));
/** The fault window: submissions are paced to span it, faults are planned inside it. */
const WINDOW_MS = 1000 * (args.duration ?? (SHORT ? 30 : Math.max(60, Math.round(JOBS * 0.5))));
const STEP_MS = args['step-ms'] ?? 50;
const CONCURRENCY = Math.max(1, args.concurrency ?? 24);
const DRAIN_CAP_MS = SHORT ? 60_000 : 180_000;
const SEED = args.seed ?? Date.now() % 1e9;
/**
 * --redis-kill: the Redis fault is SIGKILL instead of SIGTERM (Q7: with AOF, lost must stay 0).
 * --negative-control: Redis without AOF or snapshots, killed (Q7b): the run must report lost > 0
 * and fail, which proves the verifier can see loss.
 */
const NEGATIVE = !!args['negative-control'];
const REDIS_SIGNAL = NEGATIVE || args['redis-kill'] ? 'SIGKILL' : 'SIGTERM';

/** The BullMQ test profile of reliability.md ("5 s and 2 s"), shorter timeouts for the fakes. */
const PROFILE = {
  WORKER_LOCK_DURATION_MS: '5000',
  WORKER_STALLED_INTERVAL_MS: '2000',
  WORKER_MAX_STALLED_COUNT: '5',
  JOB_BACKOFF_MS: '300',
  JOB_ATTEMPTS: '5',
  COMFYUI_IDLE_TIMEOUT_MS: '4000',
  COMFYUI_POLL_INTERVAL_MS: '500',
  WORKER_SHUTDOWN_GRACE_MS: '3000',
};
const B_MS = 5000 + 2 * 2000;

/** mulberry32: the fault plan is drawn first from this seeded PRNG, so --seed repeats a run's plan. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(SEED);

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

const T0 = Date.now();
const stamp = () => `${((Date.now() - T0) / 1000).toFixed(1).padStart(6)}s`;
const say = (msg) => process.stdout.write(`[soak ${stamp()}] ${msg}\n`);

// ------------------------------------------------------------------------------------------ state

const RUN_ID = randomUUID().slice(0, 8);
const PREFIX = `soak${RUN_ID}`;
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);
const JOB_ID_IN_GRAPH = /fictures\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/;

/** Logical jobs (seq) with their submission attempts. */
const logical = [];
/** attempt tag (`<seq>.<try>`) → { seq, status, jobId? }. */
const attempts = new Map();
/** Acknowledged job id → tracking record. */
const jobs = new Map();
const faults = { kills: 0, sim_restarts: 0, drops: 0, hangs: 0, redis_restarts: 0, cancels: 0 };
const killLog = [];
const redisLog = [];
const crashes = [];
let stopping = false;

// ------------------------------------------------------------------------------------------ processes

let redis;
let sims = [];
let api;
let workers = [];
let apiUrl;
let ctl; // ioredis client of the driver (monitoring and the final scan; never writes)
let queue; // BullMQ Queue handle for reads

async function startAll(runDir) {
  const logs = join(runDir, 'logs');
  redis = await H.RedisProcess.start({ dir: join(runDir, 'redis'), appendonly: !NEGATIVE, logPath: join(logs, 'redis.log') });
  say(`redis-server (${NEGATIVE ? 'NO persistence: negative control' : 'AOF everysec'}) on ${redis.url}, dir ${join(runDir, 'redis')}`);
  const simPorts = [await H.freePort(), await H.freePort()];
  sims = simPorts.map((port, i) => {
    const p = new H.AppProcess('sim', `sim${i}`, {
      PORT: String(port), HOST: H.HOST, SIM_STEP_MS: String(STEP_MS), SIM_OUTPUT_DIR: join(runDir, `sim${i}-out`), LOG_LEVEL: 'warn',
    }, logs);
    p.url = `http://${H.HOST}:${port}`;
    p.start();
    return p;
  });
  for (const s of sims) if (!(await H.waitHttp(`${s.url}/system_stats`, 30_000, (r) => r.status === 200))) throw new Error(`simulator ${s.label} did not start (log: ${s.logPath})`);
  for (const s of sims) {
    const st = await H.request('GET', `${s.url}/sim/stats`);
    if (st.status !== 200) throw new Error(`simulator ${s.label}: GET /sim/stats answered ${st.status}; the soak needs it`);
  }
  say(`simulators: ${sims.map((s) => s.url).join(', ')} (SIM_STEP_MS=${STEP_MS})`);

  const common = {
    REDIS_URL: redis.url,
    QUEUE_PREFIX: PREFIX,
    WORKFLOWS_DIR: 'workflows',
    RESULT_STORE: 'redis',
    GPU_REQUIRED: 'false',
    // The driver polls hard from one IP: limits must not turn into test failures.
    RATE_LIMIT_SUBMIT_PER_MINUTE: '10000000',
    RATE_LIMIT_READ_PER_MINUTE: '10000000',
    QUOTA_MAX_JOBS_PER_KEY: '1000000',
    AUTH_REQUIRED: 'false',
    ...PROFILE,
  };
  const apiPort = await H.freePort();
  apiUrl = `http://${H.HOST}:${apiPort}`;
  api = new H.AppProcess('api', 'api', { ...common, PORT: String(apiPort), HOST: H.HOST, COMFYUI_URLS: sims.map((s) => s.url).join(','), LOG_LEVEL: 'warn', SYNC_TIMEOUT_MS: '60000' }, logs);
  api.start();
  workers = sims.map((s, i) => {
    const w = new H.AppProcess('worker', `worker${i}`, { ...common, COMFYUI_URLS: s.url, LOG_LEVEL: 'info' }, logs);
    w.sim = s;
    w.index = i;
    w.start();
    return w;
  });
  for (const p of [api, ...workers, ...sims]) watchCrash(p);
  if (!(await H.waitHttp(`${apiUrl}/health/live`, 45_000, (r) => r.status === 200))) throw new Error(`the API did not start (log: ${api.logPath})`);

  ctl = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200, lazyConnect: false });
  ctl.on('error', () => undefined);
  queue = new Queue('generation', { connection: { host: H.HOST, port: redis.port, maxRetriesPerRequest: 1, retryStrategy: () => 200 }, prefix: PREFIX });
  queue.on('error', () => undefined);
  // Both workers registered in Redis: the GPUs are ready to take jobs.
  const deadline = Date.now() + 45_000;
  while (Date.now() < deadline) {
    const ws = await queue.getWorkers().catch(() => []);
    if (ws.length >= workers.length) break;
    await sleep(200);
  }
  say(`API ${apiUrl} (pid ${api.pid}); workers pids ${workers.map((w) => w.pid).join(', ')}; prefix ${PREFIX}`);
}

/** Any exit the driver did not cause is a crash: counted, and the process is started again. */
function watchCrash(p) {
  const hook = () => {
    p.child.once('exit', (code, signal) => {
      if (stopping || H.isCleaningUp() || p.expectExit) {
        p.expectExit = false;
        return;
      }
      crashes.push({ at: Date.now(), label: p.label, code, signal });
      say(`!! ${p.label} exited on its own (code ${code}, signal ${signal}); restarting it`);
      setTimeout(() => {
        if (!stopping && !H.isCleaningUp() && !p.running) {
          p.start();
          hook();
        }
      }, 500);
    });
  };
  hook();
  p.rehook = hook;
}

// ------------------------------------------------------------------------------------------ observers

/**
 * Which ComfyUI prompts ran, and for which job. The simulator's GET /sim/stats lists
 * executedPromptIds: every execution_start, in order, a prompt id again each time it runs again,
 * kept across /sim/restart. The worker names the SaveImage output `fictures/<jobId>`, so every
 * prompt graph carries its job id: each executed id is mapped to its job from the graph in
 * /history/{id}, or in /queue (read on every poll) while it is pending or running. A job with two
 * or more executions (two prompt ids, or one id executed twice) was rendered more than once:
 * re-executed. A worker that re-attaches to the prompt a crashed worker left running does not
 * execute it again, so a clean recovery does not count. /sim/restart wipes history and queue, so
 * the observer syncs right before each restart; executions whose graph could not be read at all
 * are reported as unattributed (neither re-executed nor unexpected).
 */
class SimObserver {
  constructor(sim) {
    this.sim = sim;
    this.executedList = [];
    this.promptJob = new Map(); // prompt id → job id (or null: graph without a job id)
    this.unreadable = new Set();
    this.maxConcurrent = 0;
    this.errors = 0;
    this.busy = false;
  }

  async poll() {
    try {
      const q = await H.request('GET', `${this.sim.url}/queue`, { timeoutMs: 3000 });
      if (q.status === 200 && q.body) {
        const items = [...(q.body.queue_running || []), ...(q.body.queue_pending || [])];
        this.busy = (q.body.queue_running || []).length > 0;
        for (const item of items) this.learn(item[1], item[2]);
      }
      const s = await H.request('GET', `${this.sim.url}/sim/stats`, { timeoutMs: 3000 });
      if (s.status === 200 && s.body) {
        this.maxConcurrent = Math.max(this.maxConcurrent, s.body.maxConcurrent || 0);
        const list = s.body.executedPromptIds || [];
        if (list.length >= this.executedList.length) this.executedList = list;
      }
      for (const id of new Set(this.executedList)) {
        if (this.promptJob.has(id) || this.unreadable.has(id)) continue;
        const h = await H.request('GET', `${this.sim.url}/history/${encodeURIComponent(id)}`, { timeoutMs: 3000 });
        const entry = h.status === 200 && h.body ? h.body[id] : undefined;
        if (entry && Array.isArray(entry.prompt)) this.learn(id, entry.prompt[2]);
        // Not in history (yet): still running (learned from /queue above) or wiped by a restart.
      }
    } catch {
      this.errors++;
    }
  }

  learn(promptId, graph) {
    if (!promptId || this.promptJob.has(promptId) || !graph) return;
    const m = JOB_ID_IN_GRAPH.exec(JSON.stringify(graph));
    this.promptJob.set(promptId, m ? m[1] : null);
  }

  /** Before a restart: ids executed but not mapped yet are read while history still has them. */
  async sync() {
    await this.poll();
    await this.poll();
  }

  finish() {
    for (const id of this.executedList) if (!this.promptJob.has(id)) this.unreadable.add(id);
  }
}

/**
 * Attempt starts seen in Redis: every 250 ms the active list, each job's processedOn and the
 * ComfyUI its progress names (the processor records it before submitting). Gives "next job start
 * on that GPU" after a kill; the final job hashes add the last attempt of jobs that ran too briefly.
 */
const attemptStarts = new Map(); // `${jobId}@${processedOn}` → { jobId, at, comfyui }
let peakRedisMemory = 0;

async function pollAttempts() {
  try {
    const active = await queue.getJobs(['active'], 0, -1);
    for (const j of active) {
      if (!j || !j.processedOn) continue;
      const key = `${j.id}@${j.processedOn}`;
      const p = typeof j.progress === 'object' && j.progress ? j.progress : {};
      // progress belongs to this attempt only when it was written after the attempt started.
      const comfyui = p.comfyui && (p.started_at ?? 0) >= j.processedOn - 100 ? p.comfyui : undefined;
      const rec = attemptStarts.get(key);
      if (!rec) attemptStarts.set(key, { jobId: j.id, at: j.processedOn, comfyui });
      else if (!rec.comfyui && comfyui) rec.comfyui = comfyui;
    }
  } catch {
    // Redis restarting
  }
}

async function pollRedisMemory() {
  try {
    const info = await ctl.info('memory');
    const m = /used_memory_peak:(\d+)/.exec(info);
    if (m) peakRedisMemory = Math.max(peakRedisMemory, Number(m[1]));
  } catch {
    // Redis restarting
  }
}

/** The job running on this GPU right now, from Redis: active, and its current progress names this ComfyUI. */
async function inflightOn(url) {
  try {
    const active = await queue.getJobs(['active'], 0, -1);
    for (const j of active) {
      const p = typeof j.progress === 'object' && j.progress ? j.progress : {};
      if (p.comfyui === url && (p.started_at ?? 0) >= (j.processedOn ?? 0) - 100) return { jobId: j.id, promptId: p.prompt_id, processedOn: j.processedOn };
    }
  } catch {
    // Redis restarting
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------ driver

function jobBody(seq) {
  const smoke = rand() < 0.5;
  const meta = { soak_run: RUN_ID, soak_seq: String(seq) };
  const seed = Math.floor(rand() * 2 ** 31);
  return smoke
    ? { prompt: `soak ${seq} smoke`, model: 'smoke-test', width: 256, height: 256, seed, metadata: meta }
    : { prompt: `soak ${seq}: a lighthouse at dusk`, model: 'qwen-image-lightning-4step', width: 256, height: 256, num_inference_steps: 4 + Math.floor(rand() * 5), seed, metadata: meta };
}

/**
 * One logical job: POST until acknowledged, each POST an attempt. Like a careful client, every
 * attempt of one logical job carries the same Idempotency-Key and body, so a retry after an
 * indeterminate answer (a 503 while Redis restarts may come after the job was written) gets the
 * job the earlier attempt created instead of a second one.
 */
async function submit(seq) {
  const body = jobBody(seq);
  const lj = { seq, body, tries: 0 };
  logical[seq] = lj;
  const headers = { 'idempotency-key': `soak-${RUN_ID}-${seq}` };
  const deadline = Date.now() + 60_000;
  while (!stopping) {
    const tag = `${seq}.${lj.tries++}`;
    const a = { seq, tag, sentAt: Date.now(), status: undefined };
    attempts.set(tag, a);
    try {
      const r = await H.request('POST', `${apiUrl}/api/v1/images/jobs`, { body, headers, timeoutMs: 15_000 });
      a.status = r.status;
      if (r.status === 202 && r.body && r.body.id) {
        a.jobId = r.body.id;
        a.replayed = r.headers['idempotent-replayed'] === 'true';
        jobs.set(r.body.id, { id: r.body.id, seq, tag, body, ackAt: Date.now(), status: r.body.status, canceled: undefined, notFound: 0, resource: r.body });
        lj.jobId = r.body.id;
        return;
      }
      a.error = r.body && r.body.error ? r.body.error.code : `http_${r.status}`;
    } catch (e) {
      a.status = 'error';
      a.error = e.code || e.message;
    }
    if (Date.now() > deadline) return; // given up: attempted, never acknowledged
    await sleep(300 + rand() * 400);
  }
}

/** Acknowledged jobs not terminal yet; one that keeps answering 404 is not waited for (it is lost). */
function outstanding() {
  let n = 0;
  for (const j of jobs.values()) if (!TERMINAL.has(j.status) && !(j.notFoundRun >= 10)) n++;
  return n;
}

let submittedAll = false;
async function submitter() {
  const interval = (WINDOW_MS * 0.9) / JOBS;
  const started = Date.now();
  const inflightSubmits = new Set();
  for (let seq = 0; seq < JOBS && !stopping; seq++) {
    const due = started + seq * interval;
    // Bounded wait for room: if jobs stop finishing, keep submitting rather than wait forever.
    const roomDeadline = Math.max(due, Date.now()) + 30_000;
    while (!stopping && (Date.now() < due || (outstanding() + inflightSubmits.size >= CONCURRENCY && Date.now() < roomDeadline))) await sleep(20);
    const p = submit(seq).finally(() => inflightSubmits.delete(p));
    inflightSubmits.add(p);
  }
  await Promise.all(inflightSubmits);
  submittedAll = true;
}

async function refresh(j) {
  try {
    const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${j.id}`, { timeoutMs: 5000 });
    if (r.status === 200 && r.body) {
      j.resource = r.body;
      j.status = r.body.status;
      j.notFoundRun = 0;
    } else if (r.status === 404 || r.status === 410) {
      j.notFound++;
      j.notFoundRun = (j.notFoundRun || 0) + 1;
    }
  } catch {
    // API or Redis blinking: next round
  }
}

let pollerStop = false;
async function poller() {
  while (!stopping && !pollerStop) {
    const open = [...jobs.values()].filter((j) => !TERMINAL.has(j.status) && !(j.notFoundRun >= 10));
    await mapLimit(open, 8, refresh);
    await sleep(400);
  }
}

// ------------------------------------------------------------------------------------------ faults

async function simFaults(sim, patch) {
  const r = await H.request('POST', `${sim.url}/sim/faults`, { body: patch, timeoutMs: 3000 });
  if (r.status >= 300) throw new Error(`POST ${sim.url}/sim/faults ${JSON.stringify(patch)} → ${r.status} ${JSON.stringify(r.body)}`);
}

const pendingRestarts = new Set();

/** GPUs under the hang fault: no kill lands on their worker meanwhile, so the watchdog is what acts. */
const hanging = [false, false];

async function killWorker(planned) {
  let i = planned;
  if (hanging[i]) i = 1 - i;
  while (!stopping && hanging[i]) await sleep(100);
  const w = workers[i];
  if (!w.running) return;
  // Land the kill mid-job: wait (bounded) until this GPU runs one of our jobs.
  let inflight;
  const until = Date.now() + 3000;
  while (!stopping && Date.now() < until) {
    inflight = await inflightOn(w.sim.url);
    if (inflight) break;
    await sleep(100);
  }
  if (stopping || !w.running) return;
  const pid = w.pid;
  const at = Date.now();
  w.expectExit = true;
  await w.signal('SIGKILL');
  faults.kills++;
  const delay = 1000 + Math.floor(rand() * 2000);
  const k = { at, worker: i, pid, sim: w.sim.url, inflight: inflight?.jobId, restartDelay: delay };
  killLog.push(k);
  say(`fault: SIGKILL worker${i} (pid ${pid})${inflight ? ` mid-job ${inflight.jobId.slice(0, 8)}` : ' (GPU idle)'}; restart in ${delay} ms`);
  const p = (async () => {
    await sleep(delay);
    if (stopping || H.isCleaningUp()) return;
    w.start();
    w.rehook();
    k.restartedAt = Date.now();
  })();
  pendingRestarts.add(p);
  p.finally(() => pendingRestarts.delete(p));
}

async function restartSim(i) {
  const s = sims[i];
  await observers[i].sync();
  const r = await H.request('POST', `${s.url}/sim/restart`, { timeoutMs: 5000 });
  if (r.status >= 300) throw new Error(`POST /sim/restart → ${r.status}`);
  faults.sim_restarts++;
  say(`fault: /sim/restart ${s.label} (queue and history forgotten)`);
}

async function dropSockets(i) {
  await simFaults(sims[i], { dropSocketAfter: 2 });
  faults.drops++;
  say(`fault: dropSocketAfter=2 on ${sims[i].label}`);
  await sleep(2500);
  await simFaults(sims[i], { dropSocketAfter: null });
}

/**
 * Hang a GPU whose worker has been up for a while (not one just killed and still booting: then
 * nobody would be waiting on the hung prompt). Longer than COMFYUI_IDLE_TIMEOUT_MS, so the
 * worker's watchdog has to interrupt and retry (C1).
 */
async function hang(planned, ms) {
  const settled = (k) => workers[k].running && Date.now() - workers[k].startedAt > 8000;
  const until = Date.now() + 10_000;
  let i = planned;
  while (!stopping && !settled(i) && Date.now() < until) {
    if (settled(1 - i)) i = 1 - i;
    else await sleep(200);
  }
  hanging[i] = true;
  try {
    await simFaults(sims[i], { hang: true });
    faults.hangs++;
    say(`fault: hang ${sims[i].label} for ${ms} ms`);
    await sleep(ms);
    await simFaults(sims[i], { hang: false });
    await sleep(1000);
  } finally {
    hanging[i] = false;
  }
}

async function restartRedis() {
  const downAt = Date.now();
  await redis.stop(REDIS_SIGNAL);
  faults.redis_restarts++;
  say(`fault: redis-server ${REDIS_SIGNAL}${REDIS_SIGNAL === 'SIGTERM' ? ' (AOF fsynced on shutdown)' : ''}`);
  await sleep(1000);
  await redis.startProcess();
  const upAt = Date.now();
  redisLog.push({ downAt, upAt });
  say(`redis-server back after ${upAt - downAt} ms`);
}

async function cancelOne() {
  const open = [...jobs.values()].filter((j) => !TERMINAL.has(j.status) && !j.canceled);
  if (!open.length) return;
  // Half of the cancels aim at a running job (interrupt on its GPU), half at a queued one.
  const wantRunning = rand() < 0.5;
  const pool = open.filter((j) => (j.status === 'running') === wantRunning);
  const j = (pool.length ? pool : open)[Math.floor(rand() * (pool.length ? pool.length : open.length))];
  j.canceled = { at: Date.now(), statusBefore: j.status };
  faults.cancels++;
  try {
    const r = await H.request('DELETE', `${apiUrl}/api/v1/images/jobs/${j.id}`, { timeoutMs: 10_000 });
    j.canceled.http = r.status;
    j.canceled.answer = r.body && (r.body.status || (r.body.error && r.body.error.code));
  } catch (e) {
    j.canceled.http = 'error';
    j.canceled.answer = e.message;
  }
  say(`fault: DELETE job ${j.id.slice(0, 8)} (${j.canceled.statusBefore}) → ${j.canceled.http} ${j.canceled.answer}`);
}

/** The schedule: every fault at a planned time inside the window; counts bounded. */
function planFaults() {
  const W = WINDOW_MS;
  const ev = [];
  const redisAt = 0.5 * W;
  ev.push({ at: redisAt, kind: 'redis' });
  // Kills spread over the first 85 % of the window (jobs still arrive after the last one), none
  // within 4 s of the Redis restart.
  const kills = SHORT ? 3 : Math.max(4, Math.round(JOBS / 20));
  let prev = -Infinity;
  for (let k = 0; k < kills; k++) {
    let at = W * (0.05 + (0.8 * (k + 0.5)) / kills);
    if (Math.abs(at - redisAt) < 4000) at = redisAt - 4000 >= prev + 4000 ? redisAt - 4000 : redisAt + 4000;
    ev.push({ at, kind: 'kill', target: k % 2 });
    prev = at;
  }
  const simRestarts = SHORT ? [0.3] : [0.3, 0.7];
  simRestarts.forEach((f, k) => ev.push({ at: f * W, kind: 'simRestart', target: k % 2 }));
  const drops = SHORT ? [0.15] : [0.15, 0.4, 0.62, 0.85];
  drops.forEach((f, k) => ev.push({ at: f * W, kind: 'drop', target: (k + 1) % 2 }));
  const hangs = SHORT ? [0.62] : [0.22, 0.78];
  // Longer than COMFYUI_IDLE_TIMEOUT_MS (4 s), so the worker's watchdog must act (C1).
  hangs.forEach((f, k) => ev.push({ at: f * W, kind: 'hang', target: (k + 1) % 2, ms: 6000 }));
  const cancels = SHORT ? 3 : Math.max(5, Math.round(JOBS * 0.03));
  for (let k = 0; k < cancels; k++) ev.push({ at: W * (0.1 + 0.8 * rand()), kind: 'cancel' });
  return ev.sort((a, b) => a.at - b.at);
}

async function faultRunner(plan, start) {
  const running = new Set();
  for (const e of plan) {
    while (!stopping && Date.now() < start + e.at) await sleep(20);
    if (stopping) break;
    // Nothing left to hurt (all submitted and finished): the remaining faults would prove nothing.
    if (submittedAll && outstanding() === 0) break;
    const run = (async () => {
      try {
        if (e.kind === 'kill') await killWorker(e.target);
        else if (e.kind === 'simRestart') await restartSim(e.target);
        else if (e.kind === 'drop') await dropSockets(e.target);
        else if (e.kind === 'hang') await hang(e.target, e.ms);
        else if (e.kind === 'redis') await restartRedis();
        else if (e.kind === 'cancel') await cancelOne();
      } catch (err) {
        say(`fault ${e.kind} could not be injected: ${err.message}`);
      }
    })();
    running.add(run);
    run.finally(() => running.delete(run));
    // Redis restart is a barrier: no other fault starts while it is down, so its recovery is measurable.
    if (e.kind === 'redis') await run;
  }
  await Promise.all(running);
}

// ------------------------------------------------------------------------------------------ verification

async function readAllQueueJobs() {
  const states = ['active', 'waiting', 'delayed', 'prioritized', 'paused', 'completed', 'failed', 'waiting-children'];
  return (await queue.getJobs(states, 0, -1)).filter(Boolean);
}

async function scanKeys(pattern) {
  const out = [];
  let cursor = '0';
  do {
    const [next, keys] = await ctl.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

async function verify(observers) {
  const unexpected = [];
  const lost = [];
  const acked = [...jobs.values()];

  // 1. Final read of every acknowledged job through the API.
  await mapLimit(acked, 8, async (j) => {
    for (let i = 0; i < 5; i++) {
      try {
        const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${j.id}`, { timeoutMs: 10_000 });
        j.finalHttp = r.status;
        if (r.status === 200) {
          j.resource = r.body;
          j.status = r.body.status;
        }
        if (r.status < 500) return;
      } catch {
        // retry
      }
      await sleep(500);
    }
  });
  for (const j of acked) {
    // A job whose record is gone counts as lost only, never also under the status last seen.
    if (j.finalHttp !== 200) j.status = 'gone';
    if (j.finalHttp === 404 || j.finalHttp === 410) lost.push({ id: j.id, why: `record gone (${j.finalHttp})` });
    else if (j.finalHttp !== 200) lost.push({ id: j.id, why: `unreadable (${j.finalHttp})` });
    else if (!TERMINAL.has(j.status)) lost.push({ id: j.id, why: `not terminal after the drain (${j.status})` });
  }

  // 2. Every succeeded job's image: there, a PNG of the requested size, the bytes its sha256 names.
  const succeeded = acked.filter((j) => j.finalHttp === 200 && j.status === 'succeeded');
  const imageOwners = new Map();
  let imagesCheckedAgainstGraph = 0;
  await mapLimit(succeeded, 4, async (j) => {
    const img = j.resource.images && j.resource.images[0];
    if (!img) return unexpected.push({ id: j.id, why: 'succeeded without an image' });
    try {
      const r = await H.request('GET', `${apiUrl}/api/v1/images/jobs/${j.id}/images/0`, { timeoutMs: 10_000, raw: true });
      if (r.status !== 200) return unexpected.push({ id: j.id, why: `succeeded but image 0 answers ${r.status}` });
      const size = H.pngSize(r.body);
      if (!size) return unexpected.push({ id: j.id, why: 'image 0 is not a PNG' });
      if (size.width !== j.body.width || size.height !== j.body.height) return unexpected.push({ id: j.id, why: `image ${size.width}x${size.height}, asked ${j.body.width}x${j.body.height}` });
      const sha = createHash('sha256').update(r.body).digest('hex');
      if (sha !== img.sha256) return unexpected.push({ id: j.id, why: 'image bytes do not match their sha256' });
      // ComfyUI embeds the prompt graph in the PNG; its SaveImage prefix must name this job.
      const embedded = H.pngText(r.body).prompt;
      const owner = embedded ? JOB_ID_IN_GRAPH.exec(embedded) : null;
      if (owner && owner[1] !== j.id) return unexpected.push({ id: j.id, why: `image was rendered for job ${owner[1]}` });
      if (owner) imagesCheckedAgainstGraph++;
      if (imageOwners.has(sha)) return unexpected.push({ id: j.id, why: `same image bytes as job ${imageOwners.get(sha)}` });
      imageOwners.set(sha, j.id);
      j.imageOk = true;
    } catch (e) {
      unexpected.push({ id: j.id, why: `image download failed: ${e.message}` });
    }
    return undefined;
  });

  // 3. A canceled outcome nobody asked for.
  for (const j of acked) if (j.status === 'canceled' && !j.canceled) unexpected.push({ id: j.id, why: 'canceled, but the driver never canceled it' });

  // 4. Redis under our prefix: every job and result key must belong to an attempt of ours.
  const ackedIds = new Set(jobs.keys());
  // Jobs of ours that no 202 named: an attempt answered 5xx or timed out after the job was written.
  // "recovered" when its logical job was never acknowledged, "duplicated" when another job was.
  const recovered = new Map();
  const duplicated = new Map();
  const queueJobs = await readAllQueueJobs();
  const hashes = new Map(queueJobs.map((q) => [q.id, q]));
  for (const q of queueJobs) {
    if (ackedIds.has(q.id)) continue;
    const meta = (q.data && q.data.metadata) || {};
    const lj = meta.soak_run === RUN_ID ? logical[Number(meta.soak_seq)] : undefined;
    const state = await q.getState().catch(() => 'unknown');
    if (lj && !lj.jobId) recovered.set(q.id, { seq: lj.seq, state });
    else if (lj) duplicated.set(q.id, { seq: lj.seq, of: lj.jobId, state });
    else unexpected.push({ id: q.id, why: `job in Redis that no attempt of ours created (${q.name})` });
  }
  const known = (id) => ackedIds.has(id) || recovered.has(id) || duplicated.has(id);
  for (const key of await scanKeys(`${PREFIX}:*`)) {
    const m = /^[^:]+:(job|img|canceled|gone|webhook):([0-9a-f-]{36})/.exec(key);
    if (m && !known(m[2])) unexpected.push({ id: m[2], why: `result-store key ${m[1]} of a job that is not ours` });
  }
  const webhookQueue = new Queue('webhook', { connection: { host: H.HOST, port: redis.port, maxRetriesPerRequest: 1 }, prefix: PREFIX });
  const webhookCounts = await webhookQueue.getJobCounts().catch(() => ({}));
  await webhookQueue.close().catch(() => undefined);
  const webhookJobs = Object.values(webhookCounts).reduce((a, b) => a + b, 0);
  if (webhookJobs) unexpected.push({ id: '-', why: `${webhookJobs} webhook deliveries, none asked for` });

  // 5. Executions on the GPUs, attributed to jobs.
  const execByJob = new Map(); // job id → prompt ids executed for it, one entry per execution
  let unattributed = 0;
  let executions = 0;
  for (const o of observers) {
    o.finish();
    for (const pid of o.executedList) {
      executions++;
      if (!o.promptJob.has(pid)) {
        unattributed++;
        continue;
      }
      const jobId = o.promptJob.get(pid);
      if (!jobId || !known(jobId)) {
        unexpected.push({ id: jobId || '-', why: `prompt ${pid} on ${o.sim.label} for a job that is not ours` });
        continue;
      }
      if (!execByJob.has(jobId)) execByJob.set(jobId, []);
      execByJob.get(jobId).push(pid);
    }
  }
  const reExecuted = [...execByJob.entries()].filter(([, l]) => l.length > 1);
  const extraExecutions = reExecuted.reduce((a, [, l]) => a + l.length - 1, 0);
  // Cross-check: each succeeded job's result names a prompt that ran for it.
  let resultNotSeenExecuted = 0;
  for (const j of succeeded) {
    const rv = hashes.get(j.id) && hashes.get(j.id).returnvalue;
    if (rv && rv.prompt_id && !(execByJob.get(j.id) || []).includes(rv.prompt_id)) resultNotSeenExecuted++;
  }

  return { lost, unexpected, recovered, duplicated, hashes, imagesCheckedAgainstGraph, execByJob, reExecuted, extraExecutions, executions, unattributed, resultNotSeenExecuted };
}

function recoveryFigures(hashes) {
  const t = (iso) => (iso ? Date.parse(iso) : undefined);
  const starts = [...attemptStarts.values()];
  // The last attempt of every job, from its hash, in case the monitor missed a short one.
  for (const [id, q] of hashes) {
    if (!q.processedOn) continue;
    const key = `${id}@${q.processedOn}`;
    const comfyui = q.returnvalue && q.returnvalue.comfyui;
    if (!attemptStarts.has(key)) starts.push({ jobId: id, at: q.processedOn, comfyui });
  }
  const out = [];
  for (const k of killLog) {
    const nextStartOnGpu = starts.filter((s) => s.comfyui === k.sim && s.at > k.at).reduce((m, s) => Math.min(m, s.at), Infinity);
    let inflightTerminal;
    let inflightNextStart;
    if (k.inflight) {
      const j = jobs.get(k.inflight);
      inflightTerminal = j && j.resource && TERMINAL.has(j.status) ? t(j.resource.finished_at) : undefined;
      inflightNextStart = starts.filter((s) => s.jobId === k.inflight && s.at > k.at).reduce((m, s) => Math.min(m, s.at), Infinity);
      if (!Number.isFinite(inflightNextStart)) inflightNextStart = undefined;
    }
    const recovery = k.inflight ? (inflightTerminal ? inflightTerminal - k.at : undefined) : Number.isFinite(nextStartOnGpu) ? nextStartOnGpu - k.at : undefined;
    out.push({
      ...k,
      recoveryMs: recovery,
      gpuResumeMs: Number.isFinite(nextStartOnGpu) ? nextStartOnGpu - k.at : undefined,
      stallRecoveryMs: inflightNextStart ? inflightNextStart - k.at : undefined,
    });
  }
  const redisRec = redisLog.map((r) => {
    const next = starts.filter((s) => s.at > r.upAt).reduce((m, s) => Math.min(m, s.at), Infinity);
    return { ...r, resumeMs: Number.isFinite(next) ? next - r.upAt : undefined };
  });
  return { kills: out, redis: redisRec };
}

const fmtS = (ms) => (ms === undefined || Number.isNaN(ms) ? 'n/a' : `${(ms / 1000).toFixed(1)} s`);
function pcts(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x));
  return { n: v.length, p50: H.percentile(v, 50), p95: H.percentile(v, 95), max: v.length ? Math.max(...v) : NaN };
}

// ------------------------------------------------------------------------------------------ main

let observers = [];

async function main() {
  H.requireBuild(['api', 'worker', 'sim']);
  const runDir = H.makeRunDir('soak');
  say(`run ${RUN_ID}: ${JOBS} jobs, fault window ${WINDOW_MS / 1000} s, seed ${SEED}${SHORT ? ' (short)' : ''}; logs in ${join(runDir, 'logs')}`);
  let ok = false;
  let reported = false;
  H.onCleanup(() => !reported && say(`stopped early: logs kept in ${runDir}`));
  try {
    await startAll(runDir);
    observers = sims.map((s) => new SimObserver(s));

    const monitors = [];
    let monitoring = true;
    monitors.push((async () => {
      while (monitoring) {
        await Promise.all(observers.map((o) => o.poll()));
        await sleep(400);
      }
    })());
    monitors.push((async () => {
      let n = 0;
      while (monitoring) {
        await pollAttempts();
        if (n++ % 8 === 0) await pollRedisMemory();
        await sleep(250);
      }
    })());

    const plan = planFaults();
    const start = Date.now();
    const loadStart = start;
    const pollerDone = poller();
    const submitDone = submitter();
    await faultRunner(plan, start);
    await submitDone;
    await Promise.all(pendingRestarts);
    const faultsEnd = Date.now();
    // Stop the faults: switches off, every worker running.
    for (const s of sims) await H.request('POST', `${s.url}/sim/faults/reset`, { timeoutMs: 3000 }).catch(() => undefined);
    for (const w of workers) {
      if (!w.running) {
        w.start();
        w.rehook();
      }
    }
    say(`faults over (${Object.entries(faults).map(([k, v]) => `${k} ${v}`).join(', ')}); draining: ${outstanding()} jobs not terminal yet`);

    const drainDeadline = Date.now() + DRAIN_CAP_MS;
    while (outstanding() > 0 && Date.now() < drainDeadline) await sleep(250);
    pollerStop = true;
    await pollerDone;
    const drainedAt = Date.now();
    say(`drain ${outstanding() === 0 ? 'complete' : `CAPPED with ${outstanding()} jobs not terminal`} after ${fmtS(drainedAt - faultsEnd)}`);
    // One more look at the GPUs before counting (executions of the last jobs).
    await Promise.all(observers.map((o) => o.sync()));
    monitoring = false;
    await Promise.all(monitors);

    const v = await verify(observers);
    const rec = recoveryFigures(v.hashes);

    // ---------------------------------------------------------------- figures
    const acked = [...jobs.values()];
    const by = (s) => acked.filter((j) => j.status === s);
    const failedByCode = {};
    for (const j of by('failed')) {
      const code = (j.resource && j.resource.error && j.resource.error.code) || 'unknown';
      failedByCode[code] = (failedByCode[code] || 0) + 1;
    }
    const canceledAsked = acked.filter((j) => j.canceled);
    // A DELETE that was accepted (not 409 job_finished) and still lost the race against completion.
    const cancelRaced = canceledAsked.filter((j) => j.status === 'succeeded' && j.canceled.http !== 409).length;
    const cancelTooLate = canceledAsked.filter((j) => j.canceled.http === 409).length;
    const retried = acked.filter((j) => j.resource && j.resource.attempts > 1).length;
    const transient404 = acked.filter((j) => j.notFound > 0 && j.finalHttp === 200).length;
    const finishedTimes = acked.map((j) => j.resource && Date.parse(j.resource.finished_at)).filter((x) => Number.isFinite(x));
    const lastFinish = finishedTimes.length ? Math.max(...finishedTimes) : Date.now();
    const terminalCount = acked.filter((j) => TERMINAL.has(j.status)).length;
    const throughput = terminalCount / Math.max(1, (lastFinish - loadStart) / 1000);
    const recovery = pcts(rec.kills.map((k) => k.recoveryMs));
    const stall = pcts(rec.kills.map((k) => k.stallRecoveryMs));
    const gpu = pcts(rec.kills.map((k) => k.gpuResumeMs));
    const succeeded = by('succeeded');
    const summarizeRefusals = () => {
      const c = {};
      for (const a of attempts.values()) if (!a.jobId) c[a.error || a.status] = (c[a.error || a.status] || 0) + 1;
      return Object.entries(c).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
    };
    const stalledEvents = [...v.hashes.values()].reduce((a, q) => a + (jobs.has(q.id) ? q.stalledCounter || 0 : 0), 0);
    const failedStr = Object.keys(failedByCode).length ? ` (${Object.entries(failedByCode).map(([k, n]) => `${k} ${n}`).join(', ')})` : '';

    const line =
      `SOAK RESULT: attempted ${attempts.size}, acknowledged ${jobs.size}, succeeded ${by('succeeded').length}, ` +
      `failed ${by('failed').length}${failedStr}, canceled ${by('canceled').length} (+${cancelRaced} cancel raced completion), ` +
      `lost ${v.lost.length}, unexpected ${v.unexpected.length}, re-executed ${v.reExecuted.length} ` +
      `(executions ${v.executions}, extra ${v.extraExecutions}, unattributed ${v.unattributed}), ` +
      `recovery p50 ${fmtS(recovery.p50)} / max ${fmtS(recovery.max)} over ${recovery.n} kills, ` +
      `faults injected {kills ${faults.kills}, sim restarts ${faults.sim_restarts}, drops ${faults.drops}, hangs ${faults.hangs}, ` +
      `redis restarts ${faults.redis_restarts}, cancels ${faults.cancels}}, throughput ${throughput.toFixed(2)} jobs/s`;

    const details = [
      `  stalled-job recovery (kill → in-flight job starts again): p50 ${fmtS(stall.p50)}, p95 ${fmtS(stall.p95)}, max ${fmtS(stall.max)} over ${stall.n}; ` +
        `B = lock + 2 × stalled interval = ${fmtS(B_MS)}: ${stall.n ? (stall.max <= B_MS ? 'within B' : 'OVER B') : 'n/a'}`,
      `  recovery (kill → in-flight job terminal, or next start on that GPU): p50 ${fmtS(recovery.p50)}, p95 ${fmtS(recovery.p95)}, max ${fmtS(recovery.max)}`,
      `  re-executed ${v.reExecuted.length} vs. bound kills + sim restarts + hangs = ${faults.kills + faults.sim_restarts + faults.hangs}: ` +
        `${v.reExecuted.length <= faults.kills + faults.sim_restarts + faults.hangs ? 'within' : 'OVER'}`,
      `  GPU resume (kill → next job start on that GPU): p50 ${fmtS(gpu.p50)}, max ${fmtS(gpu.max)} over ${gpu.n}`,
      `  Redis restart → next job start: ${rec.redis.map((r) => `${fmtS(r.resumeMs)} (outage ${fmtS(r.upAt - r.downAt)})`).join(', ') || 'n/a'}`,
      `  stalled events (sum of stalledCounter): ${stalledEvents}; jobs with more than one attempt: ${retried}; cancels answered 409 job_finished: ${cancelTooLate}; ` +
        `unacknowledged attempts: ${[...attempts.values()].filter((a) => !a.jobId).length} (${summarizeRefusals()}); idempotent replays: ${[...attempts.values()].filter((a) => a.replayed).length}; ` +
        `logical jobs never acknowledged: ${logical.filter((l) => l && !l.jobId).length}; recovered (never acknowledged, job exists): ${v.recovered.size}; ` +
        `duplicated (second job for one Idempotency-Key): ${v.duplicated.size}; jobs that answered 404 for a while: ${transient404}`,
      `  images verified: ${succeeded.filter((j) => j.imageOk).length} of ${succeeded.length} (PNG, size, sha256; ${v.imagesCheckedAgainstGraph} also by the job id in their embedded prompt graph)`,
      `  results naming a prompt not seen executed: ${v.resultNotSeenExecuted}; process crashes (not injected): ${crashes.length}${crashes.length ? ` ${JSON.stringify(crashes)}` : ''}; peak Redis memory ${(peakRedisMemory / 1048576).toFixed(1)} MiB`,
      `  timings: total ${fmtS(Date.now() - T0)}, start-up ${fmtS(start - T0)}, load+faults ${fmtS(faultsEnd - start)}, drain ${fmtS(drainedAt - faultsEnd)}; ` +
        `offered load ${(JOBS / (WINDOW_MS * 0.0009)).toFixed(2)} jobs/s, at most ${CONCURRENCY} open; simulator step ${STEP_MS} ms; jobs 256x256, smoke-test / qwen 4–8 steps`,
    ];
    for (const l of v.lost.slice(0, 20)) details.push(`  LOST ${l.id}: ${l.why}`);
    for (const u of v.unexpected.slice(0, 20)) details.push(`  UNEXPECTED ${u.id}: ${u.why}`);
    for (const [id, d] of v.duplicated) details.push(`  duplicated ${id}: seq ${d.seq}, acknowledged as ${d.of}, now ${d.state}`);
    for (const [id, d] of v.recovered) details.push(`  recovered ${id}: seq ${d.seq}, never acknowledged, now ${d.state}`);
    for (const l of logical.filter((x) => x && !x.jobId)) {
      const last = [...attempts.values()].filter((a) => a.seq === l.seq).pop();
      details.push(`  never acknowledged: seq ${l.seq} after ${l.tries} attempts, last answer ${last && (last.error || last.status)}`);
    }
    for (const [id, l] of v.reExecuted.slice(0, 10)) details.push(`  re-executed ${id.slice(0, 8)}: ${l.length} executions (${new Set(l).size} prompt ids)`);
    for (const k of rec.kills) details.push(`  kill worker${k.worker} at ${fmtS(k.at - T0)}: in flight ${k.inflight ? k.inflight.slice(0, 8) : '-'}, recovery ${fmtS(k.recoveryMs)}, stall recovery ${fmtS(k.stallRecoveryMs)}, GPU resume ${fmtS(k.gpuResumeMs)}`);

    const report = {
      run: RUN_ID, seed: SEED, jobs: JOBS, window_ms: WINDOW_MS, step_ms: STEP_MS, faults, failedByCode, lost: v.lost, unexpected: v.unexpected,
      recovered: [...v.recovered], duplicated: [...v.duplicated],
      attempts: [...attempts.values()].filter((a) => !a.jobId || a.replayed),
      reExecuted: v.reExecuted.map(([id, l]) => ({ id, executions: l })), kills: rec.kills, redis: rec.redis, crashes, line,
    };
    writeFileSync(join(runDir, 'report.json'), JSON.stringify(report, null, 2));
    process.stdout.write(`${details.join('\n')}\n${line}\n`);
    ok = v.lost.length === 0 && v.unexpected.length === 0;
    reported = true;
    if (!ok || args['keep-logs']) say(`logs and report kept in ${runDir}`);
    return { ok, runDir };
  } finally {
    stopping = true;
    await queue?.close().catch(() => undefined);
    ctl?.disconnect();
    await H.cleanup();
    if (ok && !args['keep-logs']) rmSync(runDir, { recursive: true, force: true });
  }
}

H.installExitHandlers();
// Last line of defence: whatever hangs, the soak ends (start-up + window + drain cap + verification).
const HARD_CAP_MS = 120_000 + WINDOW_MS + DRAIN_CAP_MS + 120_000;
setTimeout(() => {
  process.stderr.write(`soak exceeded its hard time cap (${HARD_CAP_MS / 1000} s): stopping everything\n`);
  stopping = true;
  H.cleanup().finally(() => process.exit(1));
}, HARD_CAP_MS).unref();
main().then(
  ({ ok }) => process.exit(ok ? 0 : 1),
  async (e) => {
    process.stderr.write(`soak failed: ${e && e.stack ? e.stack : e}\n`);
    stopping = true;
    await H.cleanup();
    process.exit(1);
  },
);
