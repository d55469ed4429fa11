import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { loadEnv } from '@app/config';
import { WorkerHeartbeatStore } from '@app/health';
import { GenerationQueues, JobLifecycle } from '@app/jobs';
import { RedisKeys } from '@app/queue';
import { startSimulator, type SimulatorHandle } from '../apps/comfyui-sim/src/simulator';
import { parseModelFiles } from '../apps/comfyui-sim/src/main';
import { GenerationWorkerPool } from '../apps/worker/src/generation/generation-worker.pool';
import { WorkerMetrics } from '../apps/worker/src/metrics/worker-metrics.service';
import { WorkerModule } from '../apps/worker/src/worker.module';
import { TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const QWEN = 'qwen-image-lightning-4step';
const QWEN_FILES = [
  'diffusion_models/qwen_image_fp8_e4m3fn_scaled.safetensors',
  'text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors',
  'vae/qwen_image_vae.safetensors',
  'loras/Qwen-Image-Lightning-4steps-V2.0.safetensors',
];
const ADMIN_TOKEN = 'routing-admin-token-0123456789';

/** The shipped workflows plus two copies of the Qwen model with their own file names: `alt-model` and `absent-model`. */
function workflowsWithExtraModels(): { dir: string; files: (model: string) => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'fictures-routing-'));
  cpSync('workflows', dir, { recursive: true });
  const rename = (model: string, file: string) => `${model}_${file}`;
  for (const model of ['alt-model', 'absent-model']) {
    cpSync(join('workflows', QWEN), join(dir, model), { recursive: true });
    let graph = readFileSync(join(dir, model, 'workflow.json'), 'utf8');
    const manifest = JSON.parse(readFileSync(join(dir, model, 'manifest.json'), 'utf8')) as Record<string, unknown> & { required_models: Array<{ folder: string; file: string }> };
    for (const r of manifest.required_models) graph = graph.split(r.file).join(rename(model, r.file));
    manifest.id = model;
    manifest.default = false;
    manifest.required_models = manifest.required_models.map((r) => ({ folder: r.folder, file: rename(model, r.file) }));
    writeFileSync(join(dir, model, 'workflow.json'), graph);
    writeFileSync(join(dir, model, 'manifest.json'), JSON.stringify(manifest));
  }
  return { dir, files: (model) => QWEN_FILES.map((f) => (model === QWEN ? f : f.replace('/', `/${model}_`))) };
}

async function submit(url: string, model: string): Promise<request.Response> {
  return request(url).post('/api/v1/images/jobs').send({ prompt: `a lighthouse (${model})`, model, width: 256, height: 256 });
}

/** Once every job has ended: their names in the order the simulator executed their prompts. */
async function executionOrder(stack: Stack, sim: SimulatorHandle, ids: string[], names: Map<string, string>): Promise<Array<string | undefined>> {
  const lifecycle = stack.api.get(JobLifecycle);
  const promptOf = new Map<string, string>();
  for (const id of ids) {
    await untilEnded(stack, id);
    const r = await lifecycle.read(id);
    if (r.found && r.view.result) promptOf.set(r.view.result.prompt_id, id);
  }
  return sim.stats().executedPromptIds.map((p) => names.get(promptOf.get(p) ?? ''));
}

async function untilEnded(stack: Stack, id: string, timeoutMs = 20_000): Promise<{ status: string; comfyui?: string }> {
  const lifecycle = stack.api.get(JobLifecycle);
  return waitFor(async () => {
    const r = await lifecycle.read(id);
    if (!r.found || !['succeeded', 'failed', 'canceled'].includes(r.view.status)) return undefined;
    return { status: r.view.status, comfyui: r.view.result?.comfyui };
  }, timeoutMs, `job ${id} to end`);
}

describe('model-aware routing: each model runs only where its files are', () => {
  const workflows = workflowsWithExtraModels();
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({
      simEach: [{ models: parseModelFiles(workflows.files(QWEN).join(',')) }, { models: parseModelFiles(workflows.files('alt-model').join(',')) }],
      env: { WORKFLOWS_DIR: workflows.dir, WORKER_HEARTBEAT_INTERVAL_MS: '300' },
    });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(workflows.dir, { recursive: true, force: true });
  });

  it('advertises each worker’s models in its heartbeat and in the simulators’ /models', async () => {
    const [a, b] = stack.sims;
    const beats = await new WorkerHeartbeatStore(stack.redis, new RedisKeys(stack.env.QUEUE_PREFIX)).list();
    const modelsOf = (url: string) => beats.find((h) => h.comfyui === url)?.models?.slice().sort();
    expect(modelsOf(a.url)).toEqual([QWEN, 'smoke-test']);
    expect(modelsOf(b.url)).toEqual(['alt-model', 'smoke-test']);
    expect((await request(a.url).get('/models/vae')).body).toEqual(['qwen_image_vae.safetensors']);
    expect((await request(b.url).get('/models/vae')).body).toEqual(['alt-model_qwen_image_vae.safetensors']);
  });

  it('jobs of two models on two GPUs: every job runs on the ComfyUI that has its files', async () => {
    const executedBefore = stack.sims.map((s) => s.stats().executed);
    const ids: Array<{ id: string; model: string }> = [];
    for (let i = 0; i < 4; i++) {
      for (const model of [QWEN, 'alt-model']) {
        const r = await submit(stack.url, model);
        expect(r.status).toBe(202);
        ids.push({ id: (r.body as { id: string }).id, model });
      }
    }
    for (const { id, model } of ids) {
      const ended = await untilEnded(stack, id);
      expect(ended.status).toBe('succeeded');
      expect(ended.comfyui).toBe(model === QWEN ? stack.sims[0].url : stack.sims[1].url);
    }
    expect(stack.sims.map((s, i) => s.stats().executed - executedBefore[i])).toEqual([4, 4]);
    expect(stack.sims.map((s) => s.stats().rejected)).toEqual([0, 0]);
  });

  it('a model every ComfyUI has (no files needed) runs on either', async () => {
    const r = await submit(stack.url, 'smoke-test');
    expect(r.status).toBe(202);
    expect((await untilEnded(stack, (r.body as { id: string }).id)).status).toBe('succeeded');
  });

  it('a model no live worker serves: 503 model_unavailable with Retry-After, async and sync, nothing queued', async () => {
    const waitingBefore = await stack.api.get(JobLifecycle).waitingCount();
    const r = await submit(stack.url, 'absent-model');
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('model_unavailable');
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    const sync = await request(stack.url).post('/api/v1/images/generate').send({ prompt: 'x', model: 'absent-model', width: 256, height: 256 });
    expect(sync.status).toBe(503);
    expect(sync.body.error.code).toBe('model_unavailable');
    expect(await stack.api.get(JobLifecycle).waitingCount()).toBe(waitingBefore);
  });

  it('a ComfyUI that comes back with other files is checked again: its worker switches models', async () => {
    const pool = stack.worker!.get(GenerationWorkerPool);
    const old = stack.sims[1];
    const port = old.port;
    await old.close();
    await waitFor(async () => (pool.allSlots[1].comfyUp ? undefined : true), 5_000, 'the worker to notice ComfyUI is down');
    // The same address, now with the Qwen files instead of alt-model's.
    stack.sims[1] = await startSimulator({ port, stepMs: 10, models: parseModelFiles(workflows.files(QWEN).join(',')) });
    const beats = new WorkerHeartbeatStore(stack.redis, new RedisKeys(stack.env.QUEUE_PREFIX));
    await waitFor(async () => {
      const b = (await beats.list()).find((h) => h.comfyui === stack.sims[1].url);
      return b?.state === 'idle' && b.models?.includes(QWEN) ? true : undefined;
    }, 10_000, 'the restarted ComfyUI to serve Qwen');
    expect([...pool.allSlots[1].workers.keys()].sort()).toEqual([QWEN, 'smoke-test']);
    await waitFor(async () => ((await submit(stack.url, 'alt-model')).status === 503 ? true : undefined), 5_000, 'alt-model to be unavailable');
  });
});

// Without pipelining a slot has one seat: the models alternate job by job. Pipelined, it has two
// (one running, one waiting in ComfyUI's queue) handed out, at equal priority, first come first
// served: each model's worker holds up to two jobs, so the turns come in pairs — still neither
// model starves.
describe.each([
  { pipeline: false, order: ['a1', 'b1', 'a2', 'b2', 'a3', 'b3'], submittedWhileFrozen: 1 },
  { pipeline: true, order: ['a1', 'a2', 'b1', 'b2', 'a3', 'b3'], submittedWhileFrozen: 2 },
])('one GPU serving two models: they take turns (WORKER_PIPELINE=$pipeline)', ({ pipeline, order: expected, submittedWhileFrozen }) => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, env: { WORKER_HEARTBEAT_INTERVAL_MS: '300', WORKER_PIPELINE: String(pipeline) } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('a backlog of one model does not starve the other: the slot alternates between them', async () => {
    const sim = stack.sims[0];
    const lifecycle = stack.api.get(JobLifecycle);
    const queues = stack.api.get(GenerationQueues);
    sim.faults.set({ hang: true });
    const names = new Map<string, string>();
    const ids: string[] = [];
    const add = async (model: string, name: string) => {
      const r = await submit(stack.url, model);
      expect(r.status).toBe(202);
      const id = (r.body as { id: string }).id;
      ids.push(id);
      names.set(id, name);
      return id;
    };
    await add(QWEN, 'a1');
    await waitFor(async () => (sim.stats().submitted === 1 ? true : undefined), 5_000, 'the first job on the frozen GPU');
    await add(QWEN, 'a2');
    await add(QWEN, 'a3');
    const b1 = await add('smoke-test', 'b1');
    await add('smoke-test', 'b2');
    await add('smoke-test', 'b3');
    // The smoke-test worker of the slot holds b1 at the gate (taken, not started: queued) while a1 runs.
    await waitFor(async () => {
      const r = await lifecycle.read(b1);
      const state = await queues.forModel('smoke-test').getJobState(b1);
      return r.found && r.view.status === 'queued' && r.view.started_at === null && state === 'active' ? true : undefined;
    }, 5_000, 'the other model’s job to wait at the gate');
    await waitFor(async () => (sim.stats().submitted === submittedWhileFrozen ? true : undefined), 5_000, 'the prompts ComfyUI holds while frozen');
    expect(sim.stats().submitted).toBe(submittedWhileFrozen);
    sim.faults.set({ hang: false });
    expect(await executionOrder(stack, sim, ids, names)).toEqual(expected);
    expect(sim.stats().maxConcurrent).toBe(1);
  });
});

// Across the models of one GPU, the seats go by the jobs' priority first: an urgent job of one model
// waiting for a seat goes ahead of a less urgent one of another model that has waited longer.
describe('one GPU serving two models: a seat goes to the more urgent job first (pipelined)', () => {
  let stack: Stack;
  let keys: TestKeys;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, env: { WORKER_HEARTBEAT_INTERVAL_MS: '300', WORKER_PIPELINE: 'true' } });
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    await keys?.close();
    await stack?.close();
  });

  it('with both seats taken, the high-priority job of one model runs before the waiting low-priority job of the other', async () => {
    const sim = stack.sims[0];
    const lifecycle = stack.api.get(JobLifecycle);
    const queues = stack.api.get(GenerationQueues);
    const low = await keys.create('batch', { priority: 500 });
    const high = await keys.create('interactive', { priority: 5 });
    const names = new Map<string, string>();
    const ids: string[] = [];
    const add = async (model: string, name: string, auth: Record<string, string>) => {
      const r = await request(stack.url).post('/api/v1/images/jobs').set(auth).send({ prompt: `seats (${name})`, model, width: 256, height: 256 }).expect(202);
      const id = r.body.id as string;
      ids.push(id);
      names.set(id, name);
      return id;
    };
    const atTheGate = (id: string, model: string) =>
      waitFor(async () => {
        const r = await lifecycle.read(id);
        const state = await queues.forModel(model).getJobState(id);
        return r.found && r.view.status === 'queued' && r.view.started_at === null && state === 'active' ? true : undefined;
      }, 5_000, `${names.get(id)} taken and waiting for a seat`);
    sim.faults.set({ hang: true });
    await add('smoke-test', 'b0', low.auth);
    await waitFor(async () => (sim.stats().submitted === 1 ? true : undefined), 5_000, 'b0 on the frozen GPU');
    await add(QWEN, 'a1', low.auth);
    await waitFor(async () => (sim.stats().submitted === 2 ? true : undefined), 5_000, 'a1 held in ComfyUI\'s queue');
    // Both seats are taken: a2 (low) waits at the gate first, then b1 (high).
    await atTheGate(await add(QWEN, 'a2', low.auth), QWEN);
    await atTheGate(await add('smoke-test', 'b1', high.auth), 'smoke-test');
    expect(sim.stats().submitted).toBe(2);
    sim.faults.set({ hang: false });
    expect(await executionOrder(stack, sim, ids, names)).toEqual(['b0', 'a1', 'b1', 'a2']);
  });
});

describe('QUEUE_UNSERVED_MODELS=true: a job for an unserved model waits until a worker with its files appears', () => {
  const workflows = workflowsWithExtraModels();
  let stack: Stack;
  let sim: SimulatorHandle | undefined;
  let worker: INestApplicationContext | undefined;

  beforeAll(async () => {
    stack = await Stack.start({
      simEach: [{ models: parseModelFiles(workflows.files(QWEN).join(',')) }],
      env: { WORKFLOWS_DIR: workflows.dir, WORKER_HEARTBEAT_INTERVAL_MS: '300', QUEUE_UNSERVED_MODELS: 'true' },
    });
  });
  afterAll(async () => {
    await worker?.close();
    await sim?.close();
    await stack?.close();
    rmSync(workflows.dir, { recursive: true, force: true });
  });

  it('answers 202, keeps it queued, and runs it on the new worker only', async () => {
    const r = await submit(stack.url, 'absent-model');
    expect(r.status).toBe(202);
    const id = (r.body as { id: string }).id;
    // The serving worker's heartbeat is there and does not list the model: it never takes the job.
    const seen = await request(stack.url).get(`/api/v1/images/jobs/${id}`);
    expect(seen.body.status).toBe('queued');
    sim = await startSimulator({ stepMs: 10, models: parseModelFiles(workflows.files('absent-model').join(',')) });
    worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(loadEnv({ ...stack.rawEnv, COMFYUI_URLS: sim.url })), { logger: ['error'] });
    await worker.init();
    const ended = await untilEnded(stack, id);
    expect(ended).toEqual({ status: 'succeeded', comfyui: sim.url });
    expect(stack.sims[0].stats().executed).toBe(0);
  });
});

describe('WARMUP=true: each served model is warmed before the first user job, and readiness waits for it', () => {
  let stack: Stack;

  beforeAll(async () => {
    // The first warm-up prompt hangs until the test lets it go: the worker stays `warming` meanwhile.
    stack = await Stack.start({
      sim: { faults: { hang: true } },
      waitForWorkers: false,
      env: { WARMUP: 'true', WORKER_HEARTBEAT_INTERVAL_MS: '300', COMFYUI_IDLE_TIMEOUT_MS: '60000', ADMIN_TOKEN },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('readiness is 503 warming, a user job waits; after the warm-up it runs and readiness is 200', async () => {
    const sim = stack.sims[0];
    const warming = await waitFor(async () => {
      const r = await request(stack.url).get('/health/ready').set({ Authorization: `Bearer ${ADMIN_TOKEN}` });
      return r.status === 503 && r.body.details?.workers?.message === 'warming' ? r.body : undefined;
    }, 10_000, 'readiness 503 warming');
    expect(warming.details.workers.by_state.warming).toBe(1);
    const r = await submit(stack.url, QWEN);
    expect(r.status).toBe(202);
    const id = (r.body as { id: string }).id;
    await waitFor(async () => (sim.stats().submitted === 1 ? true : undefined), 5_000, 'the warm-up prompt');
    expect((await request(stack.url).get(`/api/v1/images/jobs/${id}`)).body.status).toBe('queued');
    sim.faults.set({ hang: false });
    const ended = await untilEnded(stack, id);
    expect(ended.status).toBe('succeeded');
    const read = await stack.api.get(JobLifecycle).read(id);
    const promptId = read.found ? read.view.result?.prompt_id : undefined;
    // Every shipped model warmed (two Qwen variants, smoke-test), then the user's job.
    const models = (await request(stack.url).get('/api/v1/models')).body.data.length as number;
    expect(sim.stats().executedPromptIds).toHaveLength(models + 1);
    expect(sim.stats().executedPromptIds[models]).toBe(promptId);
    await waitFor(async () => ((await request(stack.url).get('/health/ready')).status === 200 ? true : undefined), 10_000, 'readiness 200');
  });

  it('after ComfyUI restarts, the models are warmed again before the next user job; the time is a metric', async () => {
    const sim = stack.sims[0];
    const pool = stack.worker!.get(GenerationWorkerPool);
    await sim.stop();
    await waitFor(async () => (pool.allSlots[0].comfyUp ? undefined : true), 5_000, 'the worker to notice ComfyUI is down');
    const before = sim.stats().executedPromptIds.length;
    await sim.start();
    const r = await submit(stack.url, QWEN);
    const id = (r.body as { id: string }).id;
    expect((await untilEnded(stack, id)).status).toBe('succeeded');
    const read = await stack.api.get(JobLifecycle).read(id);
    const after = sim.stats().executedPromptIds.slice(before);
    const models = (await request(stack.url).get('/api/v1/models')).body.data.length as number;
    expect(after).toHaveLength(models + 1);
    expect(after[models]).toBe(read.found ? read.view.result?.prompt_id : undefined);
    const metric = await stack.worker!.get(WorkerMetrics).registry.getSingleMetric('fictures_warmup_seconds')?.get();
    expect(metric?.values.find((v) => (v as { metricName?: string }).metricName === 'fictures_warmup_seconds_count')).toMatchObject({ value: 2, labels: { comfyui: sim.url } });
  });
});
