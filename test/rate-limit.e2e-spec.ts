import request from 'supertest';
import { TestRedisServer } from './support/redis-server';
import { TestKeys } from './support/security';
import { readSse } from './support/sse';
import { Stack } from './support/stack';

describe('rate limits by kind across two API instances (Redis storage, per key)', () => {
  let stack: Stack;
  let keys: TestKeys;
  let second: string;
  const job = '3b0d6c1e-8f5a-4c2b-9e7d-1a2b3c4d5e6f';

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { RATE_LIMIT_SUBMIT_PER_MINUTE: '4', RATE_LIMIT_READ_PER_MINUTE: '6' } });
    second = (await stack.addApi()).url;
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    keys?.close();
    await stack?.close();
  });

  const expectLimited = (res: request.Response, kind: string, limit: number, key: string) => {
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('rate_limited');
    expect(res.body.request_id).toBeTruthy();
    const retry = Number(res.headers['retry-after']);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect(res.body.error.details).toMatchObject({ kind, limit, retry_after_seconds: retry });
    expect(res.text).not.toContain(key);
  };

  it('a client polling fast runs out of reads, never of submissions; whichever instance serves it', async () => {
    const k = await keys.create('poller');
    const urls = [stack.url, second];
    const id = (await request(stack.url).post('/api/v1/images/jobs').set(k.auth).send({ prompt: 'p' }).expect(202)).body.id as string;
    for (let i = 0; i < 6; i++) {
      const res = await request(urls[i % 2]).get(i % 3 ? `/api/v1/images/jobs/${id}` : '/api/v1/models').set(k.auth).expect(200);
      expect(res.headers['x-ratelimit-limit']).toBe('6');
      expect(res.headers['x-ratelimit-remaining']).toBe(String(5 - i));
    }
    for (const url of urls) {
      expectLimited(await request(url).get(`/api/v1/images/jobs/${id}`).set(k.auth), 'read', 6, k.key);
      expectLimited(await request(url).get('/api/v1/models').set(k.auth), 'read', 6, k.key);
      expectLimited(await request(url).get(`/api/v1/images/jobs/${id}/images/0`).set(k.auth), 'read', 6, k.key);
      expectLimited(await request(url).get(`/api/v1/images/jobs/${id}/events`).set(k.auth), 'read', 6, k.key);
    }
    // Its submission budget is untouched: 1 used of 4.
    const res = await request(second).post('/api/v1/images/jobs').set(k.auth).send({ prompt: 'p' }).expect(202);
    expect(res.headers['x-ratelimit-limit']).toBe('4');
    expect(res.headers['x-ratelimit-remaining']).toBe('2');
  });

  it('a client submitting fast runs out of submissions, never of reads', async () => {
    const k = await keys.create('submitter');
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await request([stack.url, second][i % 2]).post('/api/v1/images/jobs').set(k.auth).send({ prompt: `p${i}` }).expect(202)).body.id);
    expectLimited(await request(stack.url).post('/api/v1/images/jobs').set(k.auth).send({ prompt: 'p' }), 'submit', 4, k.key);
    // The synchronous route spends the same budget.
    expectLimited(await request(second).post('/api/v1/images/generate').set(k.auth).send({ prompt: 'p' }), 'submit', 4, k.key);
    for (const id of ids.slice(0, 3)) await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(k.auth).expect(200);
    // Cancel counts as a read: a client out of submissions can still free its slots.
    await request(second).delete(`/api/v1/images/jobs/${ids[3]}`).set(k.auth).expect(200);
  });

  it("a key's --rpm is its own submission budget; reads keep the deployment's", async () => {
    const own = await keys.create('own-limit', { rpm: 2 });
    for (let i = 0; i < 2; i++) await request([stack.url, second][i % 2]).post('/api/v1/images/jobs').set(own.auth).send({ prompt: 'p' }).expect(202);
    expectLimited(await request(second).post('/api/v1/images/jobs').set(own.auth).send({ prompt: 'p' }), 'submit', 2, own.key);
    const read = await request(stack.url).get('/api/v1/models').set(own.auth).expect(200);
    expect(read.headers['x-ratelimit-limit']).toBe('6');
    const fresh = await keys.create('fresh');
    await request(stack.url).post('/api/v1/images/jobs').set(fresh.auth).send({ prompt: 'p' }).expect(202);
    await request(stack.url).get(`/api/v1/images/jobs/${job}`).set(fresh.auth).expect(404);
  });

  it('never limits health, docs, metrics or a rejected key', async () => {
    for (let i = 0; i < 12; i++) await request(stack.url).get('/health/live').expect(200);
    for (let i = 0; i < 8; i++) {
      const res = await request(stack.url).get('/docs-json').expect(200);
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
    for (let i = 0; i < 8; i++) await request(stack.url).get('/metrics').expect((r) => expect(r.status).not.toBe(429));
    for (let i = 0; i < 8; i++) await request(second).get('/api/v1/models').set('X-API-Key', 'fk_wrong').expect(401);
  });
});

describe('rate limits while open: per client IP, by kind', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { RATE_LIMIT_SUBMIT_PER_MINUTE: '2', RATE_LIMIT_READ_PER_MINUTE: '3', SYNC_TIMEOUT_MS: '100' } });
  });
  afterAll(async () => stack?.close());

  it('tracks the client address (from X-Forwarded-For behind a trusted proxy), each budget on its own', async () => {
    const read = (ip: string) => request(stack.url).get('/api/v1/models').set('X-Forwarded-For', ip);
    const submit = (ip: string, path = '/api/v1/images/jobs') => request(stack.url).post(path).set('X-Forwarded-For', ip).send({ prompt: 'p' });
    for (let i = 0; i < 3; i++) await read('203.0.113.7').expect(200);
    const limited = await read('203.0.113.7').expect(429);
    expect(limited.body.error).toMatchObject({ code: 'rate_limited', details: { kind: 'read', limit: 3 } });
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await submit('203.0.113.7').expect(202);
    // The synchronous route answers 503 no_capacity here (no GPU) but has spent a submission all the same.
    await submit('203.0.113.7', '/api/v1/images/generate').expect(503);
    const tooMany = await submit('203.0.113.7').expect(429);
    expect(tooMany.body.error).toMatchObject({ code: 'rate_limited', details: { kind: 'submit', limit: 2 } });
    expect(Number(tooMany.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await read('203.0.113.8').expect(200);
    await submit('203.0.113.8').expect(202);
  });
});

describe('rate limit of a server-sent event stream', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, env: { RATE_LIMIT_READ_PER_MINUTE: '3' } });
  });
  afterAll(async () => stack?.close());

  it('counts once, when it opens, however many events it carries', async () => {
    const id = (await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'p', width: 256, height: 256, num_inference_steps: 8 }).expect(202)).body.id as string;
    const { status, events } = await readSse(`${stack.url}/api/v1/images/jobs/${id}/events`);
    expect(status).toBe(200);
    expect(events.length).toBeGreaterThanOrEqual(6);
    expect(events[events.length - 1].event).toBe('job');
    const after = await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
    expect(after.headers['x-ratelimit-remaining']).toBe('1');
    await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
    const res = await request(stack.url).get(`/api/v1/images/jobs/${id}/events`).expect(429);
    expect(res.headers['retry-after']).toBeDefined();
  });
});

describe('rate limit with Redis down', () => {
  let redis: TestRedisServer;
  let stack: Stack;
  let keys: TestKeys;
  beforeAll(async () => {
    redis = await TestRedisServer.start({ appendonly: true });
    stack = await Stack.start({ comfyui: 0, worker: false, env: { REDIS_URL: redis.url, RATE_LIMIT_SUBMIT_PER_MINUTE: '100', RATE_LIMIT_READ_PER_MINUTE: '100' } });
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    keys?.close();
    if (!redis.running) await redis.startProcess();
    await stack?.close();
    await redis.destroy();
  });

  it('answers 503 redis_unavailable (never 500) while Redis is away, and recovers', async () => {
    const k = await keys.create('k');
    await request(stack.url).get('/api/v1/models').set(k.auth).expect(200);
    await redis.stop();
    for (const path of ['/api/v1/models', '/api/v1/images/jobs/3b0d6c1e-8f5a-4c2b-9e7d-1a2b3c4d5e6f']) {
      const res = await request(stack.url).get(path).set(k.auth);
      expect({ path, status: res.status }).toEqual({ path, status: 503 });
      expect(res.body.error.code).toBe('redis_unavailable');
    }
    const post = await request(stack.url).post('/api/v1/images/jobs').set(k.auth).send({ prompt: 'p' });
    expect(post.status).toBe(503);
    await request(stack.url).get('/health/live').expect(200);
    await redis.startProcess();
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await request(stack.url).get('/api/v1/models').set(k.auth)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });
});
