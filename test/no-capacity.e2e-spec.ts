import { NestFactory } from '@nestjs/core';
import request from 'supertest';
import { WorkerModule } from '../apps/worker/src/worker.module';
import { jobCount } from './support/security';
import { Stack, waitFor } from './support/stack';

const body = { prompt: 'a lighthouse at dusk', model: 'smoke-test', width: 256, height: 256 };

/** Waits until the API's view of the fleet (the cache /health and /generate share) says whether a worker can take a job. */
function capacityBecomes(stack: Stack, initialized: boolean, timeoutMs = 15_000) {
  return waitFor(async () => {
    const res = await request(stack.url).get('/health');
    return res.body?.models?.image?.initialized === initialized ? true : undefined;
  }, timeoutMs, `models.image.initialized ${initialized}`);
}

/** Waits (through the heartbeat cache) until POST /generate answers the given status. */
function generateBecomes(stack: Stack, status: number, timeoutMs = 15_000) {
  return waitFor(async () => {
    const res = await request(stack.url).post('/api/v1/images/generate').send(body);
    return res.status === status ? res : undefined;
  }, timeoutMs, `POST /generate → ${status}`);
}

describe('sync without capacity: no worker at all', () => {
  let stack: Stack;
  beforeAll(async () => {
    // SYNC_TIMEOUT_MS stays long: a hang would show as a test time-out, not as a 504.
    stack = await Stack.start({ comfyui: 0, worker: false, env: { SYNC_TIMEOUT_MS: '20000', WORKER_HEARTBEAT_INTERVAL_MS: '1000' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('POST /generate answers 503 no_capacity with Retry-After within a second, and enqueues nothing', async () => {
    const before = await jobCount(stack);
    const started = Date.now();
    const res = await request(stack.url).post('/api/v1/images/generate').send(body);
    const ms = Date.now() - started;
    expect(res.status).toBe(503);
    expect(ms).toBeLessThan(1000);
    expect(res.body.error.code).toBe('no_capacity');
    expect(res.body.error.message).toContain('/api/v1/images/jobs');
    expect(res.body.request_id).toBeTruthy();
    expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(await jobCount(stack)).toBe(before);
  });

  it('invalid input is still a 400 first', async () => {
    for (const [bad, code] of [
      [{ prompt: '' }, 'validation_failed'],
      [{ prompt: 'x', width: 100 }, 'validation_failed'],
      [{ prompt: 'x', model: 'no-such-model' }, 'unknown_model'],
      [{ prompt: 'x', model: 'smoke-test', num_inference_steps: 999 }, 'validation_failed'],
    ] as const) {
      const res = await request(stack.url).post('/api/v1/images/generate').send(bad);
      expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 400, code });
    }
  });

  it('async submissions are still accepted: they wait for a GPU', async () => {
    const res = await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);
    expect(res.body.status).toBe('queued');
  });
});

describe('sync without capacity: workers coming and going', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 5 }, env: { WORKER_HEARTBEAT_INTERVAL_MS: '300' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('with a worker → 200; worker stopped → 503 no_capacity while async jobs queue; worker back → the queued job runs and 200 again', async () => {
    const ok = await request(stack.url).post('/api/v1/images/generate').send(body).expect(200);
    expect(ok.body.image_url).toMatch(/^data:image\/png;base64,/);

    await stack.worker?.close();
    stack.worker = undefined;
    // Until the API sees it gone, a request would be accepted and wait for SYNC_TIMEOUT_MS.
    await capacityBecomes(stack, false);
    const refused = await generateBecomes(stack, 503);
    expect(refused.body.error.code).toBe('no_capacity');
    expect(refused.headers['retry-after']).toBeDefined();
    const queued = await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);

    stack.worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(stack.env), { logger: ['error'] });
    await stack.worker.init();
    await waitFor(async () => {
      const j = await request(stack.url).get(`/api/v1/images/jobs/${queued.body.id}`).expect(200);
      return j.body.status === 'succeeded' ? true : undefined;
    }, 15_000, 'the queued job to run once a worker is back');
    await generateBecomes(stack, 200);
  });

  it('a worker whose ComfyUI does not answer is no capacity either', async () => {
    await stack.sims[0].stop();
    await capacityBecomes(stack, false);
    const refused = await generateBecomes(stack, 503);
    expect(refused.body.error.code).toBe('no_capacity');
    await stack.sims[0].start();
    await generateBecomes(stack, 200, 20_000);
  });
});
