import Redis from 'ioredis';
import request from 'supertest';
import { TestRedisServer } from './support/redis-server';
import { Stack, waitFor } from './support/stack';

// Messages are for operators: anonymous probes see statuses and counts only.
const ADMIN_TOKEN = 'health-admin-token-0123456789';
const ADMIN = { Authorization: `Bearer ${ADMIN_TOKEN}` };

type Health = { status: string; details: Record<string, { status: string; message?: string }> };

function readiness(url: string, status: 200 | 503, pred: (h: Health) => boolean, timeoutMs = 20_000) {
  return waitFor(async () => {
    const res = await request(url).get('/health/ready').set(ADMIN);
    return res.status === status && pred(res.body as Health) ? (res.body as Health) : undefined;
  }, timeoutMs, `readiness ${status}`);
}

describe('health: Redis down and back (private redis-server)', () => {
  let server: TestRedisServer;
  let stack: Stack;

  beforeAll(async () => {
    server = await TestRedisServer.start();
    stack = await Stack.start({ comfyui: 1, env: { REDIS_URL: server.url, WORKER_HEARTBEAT_INTERVAL_MS: '300', ADMIN_TOKEN } });
    await readiness(stack.url, 200, () => true);
  });
  afterAll(async () => {
    await stack?.close();
    await server?.destroy();
  });

  it('Redis stopped → 503 (redis down) within a second per probe, liveness 200; Redis back → 200', async () => {
    await server.stop();
    const h = await readiness(stack.url, 503, (b) => b.details.redis?.status === 'down');
    expect(h.status).toBe('error');
    const started = Date.now();
    const res = await request(stack.url).get('/health/ready');
    expect(res.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1000);
    await request(stack.url).get('/health/live').expect(200);
    await server.startProcess();
    const back = await readiness(stack.url, 200, (b) => Object.values(b.details).every((d) => d.status === 'up'));
    expect(back.details.workers.status).toBe('up');
  });

  it('Redis that hangs (CLIENT PAUSE) → 503 with the ping timed out, answered within a second; resumed → 200', async () => {
    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    try {
      await readiness(stack.url, 200, () => true);
      await admin.call('CLIENT', 'PAUSE', '4000', 'ALL');
      const h = await waitFor(async () => {
        const started = Date.now();
        const res = await request(stack.url).get('/health/ready').set(ADMIN);
        expect(Date.now() - started).toBeLessThan(1000);
        return res.status === 503 && (res.body as Health).details.redis?.status === 'down' ? (res.body as Health) : undefined;
      }, 6_000, 'redis down while paused');
      expect(h.details.redis.message).toContain('timed out');
      await admin.call('CLIENT', 'UNPAUSE');
      await readiness(stack.url, 200, (b) => b.details.redis?.status === 'up');
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      admin.disconnect();
    }
  });
});
