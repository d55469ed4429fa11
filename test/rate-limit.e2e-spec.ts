import request from 'supertest';
import { TestRedisServer } from './support/redis-server';
import { TestKeys } from './support/security';
import { Stack } from './support/stack';

describe('rate limit across two API instances (Redis storage, per key)', () => {
  let stack: Stack;
  let keys: TestKeys;
  let second: string;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { RATE_LIMIT_PER_MINUTE: '4' } });
    second = (await stack.addApi()).url;
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    keys?.close();
    await stack?.close();
  });

  it('the (limit+1)-th request in the window is 429 rate_limited with Retry-After, whichever instance serves it', async () => {
    const k = await keys.create('default-limit');
    const urls = [stack.url, second];
    for (let i = 0; i < 4; i++) {
      const res = await request(urls[i % 2]).get('/api/v1/models').set(k.auth).expect(200);
      expect(res.headers['x-ratelimit-limit']).toBe('4');
      expect(res.headers['x-ratelimit-remaining']).toBe(String(3 - i));
    }
    for (const url of urls) {
      const res = await request(url).get('/api/v1/models').set(k.auth).expect(429);
      expect(res.body.error.code).toBe('rate_limited');
      expect(res.body.request_id).toBeTruthy();
      const retry = Number(res.headers['retry-after']);
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      expect(res.body.error.details).toMatchObject({ limit: 4 });
      expect(res.text).not.toContain(k.key);
    }
    // Job routes count against the same budget.
    await request(stack.url).post('/api/v1/images/jobs').set(k.auth).send({ prompt: 'p' }).expect(429);
  });

  it('counts per key: another key has its own budget, and a key may have its own limit', async () => {
    const other = await keys.create('own-limit', { rpm: 6 });
    for (let i = 0; i < 6; i++) await request([stack.url, second][i % 2]).get('/api/v1/models').set(other.auth).expect(200);
    await request(second).get('/api/v1/models').set(other.auth).expect(429);
    const fresh = await keys.create('fresh');
    await request(stack.url).get('/api/v1/models').set(fresh.auth).expect(200);
  });

  it('never limits health, docs or a rejected key', async () => {
    for (let i = 0; i < 12; i++) await request(stack.url).get('/health/live').expect(200);
    await request(stack.url).get('/docs-json').expect(200);
    for (let i = 0; i < 6; i++) await request(second).get('/api/v1/models').set('X-API-Key', 'fk_wrong').expect(401);
  });
});

describe('rate limit while open: per client IP', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { RATE_LIMIT_PER_MINUTE: '3' } });
  });
  afterAll(async () => stack?.close());

  it('tracks the client address (from X-Forwarded-For behind a trusted proxy)', async () => {
    const from = (ip: string) => request(stack.url).get('/api/v1/models').set('X-Forwarded-For', ip);
    for (let i = 0; i < 3; i++) await from('203.0.113.7').expect(200);
    const res = await from('203.0.113.7').expect(429);
    expect(res.body.error.code).toBe('rate_limited');
    expect(res.headers['retry-after']).toBeDefined();
    await from('203.0.113.8').expect(200);
  });
});

describe('rate limit with Redis down', () => {
  let redis: TestRedisServer;
  let stack: Stack;
  let keys: TestKeys;
  beforeAll(async () => {
    redis = await TestRedisServer.start({ appendonly: true });
    stack = await Stack.start({ comfyui: 0, worker: false, env: { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '100' } });
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
