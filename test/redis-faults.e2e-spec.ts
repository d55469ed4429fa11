import request from 'supertest';
import { TestRedisServer } from './support/redis-server';
import { Stack, waitFor } from './support/stack';

describe('Redis faults', () => {
  let redis: TestRedisServer;
  let stack: Stack;

  beforeAll(async () => {
    redis = await TestRedisServer.start({ appendonly: true });
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 5 }, env: { REDIS_URL: redis.url } });
  });
  afterAll(async () => {
    await stack?.close();
    await redis?.destroy();
  });

  it('with Redis down the API answers 503 redis_unavailable within a second; after a 20 s outage the idle worker takes jobs again without a restart', async () => {
    const before = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'before', model: 'smoke-test', width: 256, height: 256 }).expect(202);
    await waitFor(async () => ((await request(stack.url).get(`/api/v1/images/jobs/${before.body.id}`)).body.status === 'succeeded' ? true : undefined));

    await redis.stop();
    const outageStarted = Date.now();
    for (const call of [
      () => request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'during', width: 256, height: 256 }),
      () => request(stack.url).get(`/api/v1/images/jobs/${before.body.id}`),
      () => request(stack.url).post('/api/v1/images/generate').send({ prompt: 'during', width: 256, height: 256 }),
    ]) {
      const t0 = Date.now();
      const res = await call();
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('redis_unavailable');
    }
    await request(stack.url).get('/health').expect(503);

    // BullMQ #4585: an outage longer than drainDelay + 1 s used to wedge idle workers forever.
    await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - outageStarted))));
    await redis.startProcess();
    const t0 = Date.now();
    const after = await waitFor(async () => {
      const r = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'after', model: 'smoke-test', width: 256, height: 256 });
      return r.status === 202 ? r.body : undefined;
    }, 10_000, 'the API to accept jobs again');
    const done = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${after.id}`);
      return r.body.status === 'succeeded' ? r.body : undefined;
    }, 30_000, 'the worker to take jobs again');
    expect(done.status).toBe('succeeded');
    expect(Date.now() - t0).toBeLessThan(30_000);
    // The job accepted before the outage survived it (AOF).
    expect((await request(stack.url).get(`/api/v1/images/jobs/${before.body.id}`).expect(200)).body.status).toBe('succeeded');
  }, 90_000);
});
