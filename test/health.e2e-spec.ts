import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { WorkerHeartbeatStore } from '@app/health';
import { RedisKeys } from '@app/queue';
import { WorkerModule } from '../apps/worker/src/worker.module';
import { Stack, waitFor } from './support/stack';

const ADMIN_TOKEN = 'health-admin-token-0123456789';
const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };
const { version } = require('../package.json') as { version: string };

type Health = { status: string; info?: Record<string, Record<string, unknown>>; error?: Record<string, Record<string, unknown>>; details: Record<string, Record<string, unknown>> };

/** As an operator sees it (ADMIN_TOKEN): every detail. */
async function ready(url: string, path = '/health/ready'): Promise<{ status: number; body: Health; ms: number }> {
  const started = Date.now();
  const res = await request(url).get(path).set(ADMIN);
  return { status: res.status, body: res.body as Health, ms: Date.now() - started };
}

/** Waits (through the 1.5 s cache) until readiness has the given status, and returns that answer. */
function readyBecomes(url: string, status: 200 | 503, pred: (h: Health) => boolean = () => true, timeoutMs = 10_000) {
  return waitFor(async () => {
    const r = await ready(url);
    return r.status === status && pred(r.body) ? r.body : undefined;
  }, timeoutMs, `readiness ${status}`);
}

const down = (key: string) => (h: Health) => h.details[key]?.status === 'down';
const allUp = (h: Health) => Object.values(h.details).every((d) => d.status === 'up');

async function startWorker(stack: Stack): Promise<INestApplicationContext> {
  const ctx = await NestFactory.createApplicationContext(WorkerModule.forRoot(stack.env), { logger: ['error'] });
  await ctx.init();
  return ctx;
}

describe('health: liveness and readiness with every check going down and up', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 20 },
      env: { WORKER_HEARTBEAT_INTERVAL_MS: '300', HEALTH_MIN_FREE_VRAM_MB: '2048', HEALTH_QUEUE_STUCK_MS: '1000', ADMIN_TOKEN },
    });
    await readyBecomes(stack.url, 200);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('is ready with all five checks up, and /health answers the same', async () => {
    const r = await ready(stack.url);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ok');
    expect(Object.keys(r.body.details).sort()).toEqual(['comfyui', 'gpu', 'queue', 'redis', 'workers']);
    expect(r.body.details.comfyui).toMatchObject({ status: 'up', instances: [{ url: stack.sims[0].url, up: true, version: '0.3.64' }] });
    const gpu = r.body.details.gpu as { devices: Array<Record<string, unknown>> };
    expect(gpu.devices[0]).toMatchObject({ comfyui: stack.sims[0].url, index: 0, vram_total_mb: 80995 });
    expect(typeof gpu.devices[0].name).toBe('string');
    expect(gpu.devices[0].vram_free_mb).toBeGreaterThan(2048);
    expect(r.body.details.workers).toMatchObject({ status: 'up', alive: 1, by_state: { idle: 1 } });
    expect(r.body.details.queue).toMatchObject({ status: 'up', waiting: 0 });
    const h = await request(stack.url).get('/health').set(ADMIN).expect(200);
    expect(Object.keys(h.body.details).sort()).toEqual(Object.keys(r.body.details).sort());
    expect(h.body.details.comfyui.instances[0].url).toBe(stack.sims[0].url);
    expect(h.headers['cache-control']).toBe('no-store');
  });

  it('/health keeps the original service\'s fields beside the checks', async () => {
    const h = await request(stack.url).get('/health').expect(200);
    expect(h.body).toMatchObject({
      status: 'healthy',
      version,
      models: { image: { name: 'qwen-image-lightning-4step', type: 'text-to-image', framework: 'comfyui', device: 'cuda', initialized: true } },
    });
    expect(Object.keys(h.body.details).sort()).toEqual(['comfyui', 'gpu', 'queue', 'redis', 'workers']);
    expect(h.body.info.redis.status).toBe('up');
  });

  it('without ADMIN_TOKEN the checks show statuses and counts only: no URL, worker id, version or host', async () => {
    const admin = await ready(stack.url);
    for (const path of ['/health', '/health/ready', '/health/live']) {
      const res = await request(stack.url).get(path).expect(200);
      const text = JSON.stringify(res.body);
      // (a very short host name could occur inside any word)
      const host = hostname().length >= 4 ? [hostname()] : [];
      for (const secret of [stack.sims[0].url, '127.0.0.1', '0.3.64', ...host, (admin.body.details.workers.workers as Array<{ id: string }>)[0].id]) {
        expect(text).not.toContain(secret);
      }
    }
    const anon = (await request(stack.url).get('/health/ready').expect(200)).body as Health;
    expect(anon.details.comfyui).toEqual({ status: 'up', instances: 1, instances_up: 1 });
    expect(anon.details.workers).toMatchObject({ status: 'up', alive: 1, by_state: { idle: 1 }, workers: 1 });
    expect(anon.details.gpu).toMatchObject({ status: 'up', devices: 1 });
    expect(anon.details.queue).toMatchObject({ status: 'up', waiting: 0, active: 0 });
    // A wrong token is simply anonymous.
    const wrong = await request(stack.url).get('/health/ready').set('Authorization', `Bearer ${ADMIN_TOKEN}x`).expect(200);
    expect(JSON.stringify(wrong.body)).not.toContain(stack.sims[0].url);
  });

  it('liveness is 200 and touches nothing', async () => {
    const r = await request(stack.url).get('/health/live').expect(200);
    expect(r.body).toMatchObject({ status: 'ok' });
  });

  it('ComfyUI stopped → 503 (comfyui down) while liveness stays 200; started again → 200', async () => {
    await stack.sims[0].stop();
    const h = await readyBecomes(stack.url, 503, down('comfyui'));
    expect(h.status).toBe('error');
    expect(h.error?.comfyui).toMatchObject({ status: 'down', instances: [{ url: stack.sims[0].url, up: false }] });
    await request(stack.url).get('/health/live').expect(200);
    const unhealthy = await waitFor(async () => {
      const res = await request(stack.url).get('/health');
      return res.status === 503 && res.body.models?.image?.initialized === false ? res.body : undefined;
    }, 10_000, '/health unhealthy, model not initialized');
    expect(unhealthy).toMatchObject({ status: 'unhealthy', version, models: { image: { device: 'unknown', initialized: false } } });
    expect(unhealthy.error.comfyui).toEqual({ status: 'down', instances: 1, instances_up: 0 });
    await stack.sims[0].start();
    await readyBecomes(stack.url, 200, allUp);
  });

  it('free VRAM below HEALTH_MIN_FREE_VRAM_MB → 503 (gpu down); back above → 200', async () => {
    stack.sims[0].faults.set({ vramFreeMb: 1000 });
    const h = await readyBecomes(stack.url, 503, down('gpu'));
    expect(String(h.error?.gpu.message)).toContain('1000 MiB free, below 2048 MiB');
    expect(h.details.comfyui.status).toBe('up');
    stack.sims[0].faults.reset();
    await readyBecomes(stack.url, 200, allUp);
  });

  it('no CUDA device while GPU_REQUIRED → 503 (gpu down); GPU back → 200', async () => {
    stack.sims[0].faults.set({ noGpu: true });
    const h = await readyBecomes(stack.url, 503, down('gpu'));
    expect(String(h.error?.gpu.message)).toContain('no CUDA device');
    const cpu = await waitFor(async () => {
      const res = await request(stack.url).get('/health');
      return res.body.models?.image?.device === 'cpu' ? res : undefined;
    }, 10_000, '/health to report a CPU device');
    expect(cpu.status).toBe(503);
    expect(cpu.body.models.image.initialized).toBe(true);
    stack.sims[0].faults.reset();
    await readyBecomes(stack.url, 200, allUp);
  });

  it('no worker heartbeat → 503 (workers down); a worker starts → 200', async () => {
    await stack.worker?.close();
    stack.worker = undefined;
    const h = await readyBecomes(stack.url, 503, down('workers'));
    expect(h.error?.workers).toMatchObject({ alive: 0, message: 'no worker has a fresh heartbeat' });
    stack.worker = await startWorker(stack);
    const up = await readyBecomes(stack.url, 200, allUp);
    expect(up.details.workers).toMatchObject({ alive: 1 });
  });

  it('a wedged consumer (heartbeat fresh, jobs waiting, none taken) → 503 (queue down); a working worker → 200', async () => {
    await stack.worker?.close();
    stack.worker = undefined;
    // The #4585 wedge: the process still beats, its BullMQ consumer takes nothing.
    const beats = new WorkerHeartbeatStore(stack.redis, new RedisKeys(stack.env.QUEUE_PREFIX));
    const now = Date.now();
    await beats.publish(
      {
        id: 'wedged:1:0', host: 'wedged', pid: 1, comfyui: stack.sims[0].url, state: 'idle', job_id: null, job_started_at: null,
        last_progress_at: null, last_job_started_at: now - 60_000, comfyui_version: '0.3.64', gpus: [], busy_ratio: 0,
        interval_ms: 300, started_at: now - 120_000, at: now,
      },
      60_000,
    );
    try {
      const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'stuck behind a wedge', width: 256, height: 256 }).expect(202);
      const h = await readyBecomes(stack.url, 503, down('queue'));
      expect(h.error?.queue).toMatchObject({ waiting: 1, active: 0, workers_alive: 1 });
      expect(String(h.error?.queue.message)).toContain('no worker has started one');
      expect(h.details.redis.status).toBe('up');
      stack.worker = await startWorker(stack);
      await waitFor(async () => {
        const j = await request(stack.url).get(`/api/v1/images/jobs/${body.id}`).expect(200);
        return j.body.status === 'succeeded' ? true : undefined;
      }, 15_000, 'the waiting job to run');
      await readyBecomes(stack.url, 200, (b) => b.details.queue.status === 'up');
    } finally {
      await beats.remove(['wedged:1:0']);
    }
  });
});

describe('health: a ComfyUI that accepts connections but never answers', () => {
  let stack: Stack;
  let hung: Server;
  const sockets = new Set<Socket>();
  let connections = 0;

  beforeAll(async () => {
    hung = createServer((s) => {
      connections++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
    const port = (hung.address() as { port: number }).port;
    stack = await Stack.start({ comfyui: 0, worker: false, env: { COMFYUI_URLS: `http://127.0.0.1:${port}`, ADMIN_TOKEN } });
  });
  afterAll(async () => {
    await stack?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hung.close(() => r()));
  });

  it('readiness still answers within a second (503, comfyui timed out), and a probe storm reaches ComfyUI once per window', async () => {
    const first = await ready(stack.url);
    expect(first.status).toBe(503);
    expect(first.ms).toBeLessThan(1000);
    const comfy = first.body.details.comfyui as { status: string; instances: Array<{ up: boolean; error: string }> };
    expect(comfy.status).toBe('down');
    expect(comfy.instances[0].error).toMatch(/timed out|timeout/i);
    const before = connections;
    const storm = await Promise.all(Array.from({ length: 25 }, () => ready(stack.url)));
    for (const r of storm) {
      expect(r.status).toBe(503);
      // The probe's own timeout is well under a second; the bound only proves it does not hang
      // (a loaded 2-core machine adds hundreds of ms of scheduling to any request).
      expect(r.ms).toBeLessThan(3000);
    }
    expect(connections - before).toBeLessThanOrEqual(1);
    process.stdout.write(`hung ComfyUI: first probe ${first.ms} ms; storm of 25: max ${Math.max(...storm.map((r) => r.ms))} ms\n`);
    await request(stack.url).get('/health/live').expect(200);
  });
});

describe('health: HEALTH_READY_CHECKS for an API-only node that cannot reach ComfyUI', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { COMFYUI_URLS: 'http://127.0.0.1:9', HEALTH_READY_CHECKS: 'redis' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('runs only the named checks', async () => {
    const r = await request(stack.url).get('/health/ready').expect(200);
    expect(Object.keys(r.body.details)).toEqual(['redis']);
  });

  it('/health is healthy with no worker known: the model is not initialized and its device unknown (ComfyUI is not probed)', async () => {
    const h = await request(stack.url).get('/health').expect(200);
    expect(h.body).toMatchObject({ status: 'healthy', models: { image: { initialized: false, device: 'unknown' } }, details: { redis: { status: 'up' } } });
  });

  it('without ADMIN_TOKEN configured, no header reveals details, and the queue dashboard is off (404)', async () => {
    const h = await request(stack.url).get('/health/ready').set('Authorization', 'Bearer anything-at-all-0123456789').expect(200);
    expect(h.body.details.redis).toEqual({ status: 'up', latency_ms: expect.any(Number) });
    await request(stack.url).get('/admin/queues').expect(404);
  });
});
