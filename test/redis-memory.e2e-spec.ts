import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import Redis from 'ioredis';
import request from 'supertest';
import { QueueName } from '@app/queue';
import { freePort } from '../scripts/lib/processes';
import { API_ENTRY, type AppProcess, startApp, stopApp, WORKER_ENTRY } from './support/processes';
import { TestRedisServer } from './support/redis-server';
import { Stack, waitFor } from './support/stack';

const BIG = { model: 'smoke-test', width: 1024, height: 1024 };
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
}

/** MEMORY USAGE summed over the keys that belong to one job (shared lists and sets excluded). */
async function jobKeyBytes(redis: Redis, prefix: string, jobId: string): Promise<{ bytes: number; keys: string[]; each: string }> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*${jobId}*`, 'COUNT', 1000);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  let bytes = 0;
  const each: string[] = [];
  for (const k of keys) {
    const b = Number(await redis.call('MEMORY', 'USAGE', k, 'SAMPLES', '0'));
    bytes += b;
    each.push(`${k.slice(prefix.length + 1).replace(jobId, '<id>')} ${b}`);
  }
  return { bytes, keys, each: each.join(', ') };
}

describe('Redis that cannot fill up', () => {
  let redis: TestRedisServer;
  let stack: Stack;
  let client: Redis;

  beforeAll(async () => {
    redis = await TestRedisServer.start({ maxmemory: '24mb' });
    client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 1 },
      env: { REDIS_URL: redis.url, RESULT_STORE: 'redis', JOB_ATTEMPTS: '2', JOB_BACKOFF_MS: '100', REDIS_MEMORY_HIGH_WATERMARK: '0.8' },
    });
  });
  afterAll(async () => {
    await stack?.close();
    client?.disconnect();
    await redis?.destroy();
  });

  it('a small maxmemory: submissions get 503 storage_full with Retry-After, never a 500, and every accepted job ends', async () => {
    const accepted: string[] = [];
    const statuses: number[] = [];
    const submit = async (path = '/api/v1/images/jobs', body: Record<string, unknown> = { prompt: 'fill', ...BIG }) => {
      const res = await request(stack.url).post(path).send(body);
      statuses.push(res.status);
      if (res.status === 202) accepted.push(res.body.id);
      return res;
    };
    const ended = (ids: string[]) =>
      waitFor(async () => {
        const views = await Promise.all(ids.map(async (id) => (await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200)).body));
        return views.every((v) => TERMINAL.has(v.status)) ? views : undefined;
      }, 120_000, `${ids.length} jobs to end`);

    // A burst accepted while Redis is nearly empty holds more images than Redis has room for: the
    // workers hit OOM and must neither lose a job nor leave one running. The queue is paused while
    // it is accepted, so no image lands before the last submission (however slow the machine).
    const queue = stack.api.get<Queue>(getQueueToken(QueueName.Generation), { strict: false });
    await queue.pause();
    const burst: string[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await submit();
      expect(res.status).toBe(202);
      burst.push(res.body.id);
    }
    await queue.resume();
    const views = await ended(burst);
    const byOutcome = new Map<string, number>();
    for (const v of views) {
      const outcome = v.status === 'failed' ? `failed:${v.error.code}` : v.status;
      byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + 1);
    }
    expect([...byOutcome.keys()].every((o) => o === 'succeeded' || o === 'failed:storage_full')).toBe(true);
    expect(byOutcome.get('succeeded')).toBeGreaterThan(0);
    expect(byOutcome.get('failed:storage_full')).toBeGreaterThan(0);
    const image = views.find((v) => v.status === 'succeeded');
    const first = views[0];
    process.stdout.write(`redis-memory: burst of ${burst.length} at 1024x1024 -> ${JSON.stringify(Object.fromEntries(byOutcome))}\n`);

    // A succeeded job's image is whole and downloadable.
    const png = await request(stack.url).get(`/api/v1/images/jobs/${image.id}/images/0`).expect(200);
    expect(png.body.length).toBe(image.images[0].bytes);

    // Past the watermark (the probe's cache may let a few more in first: those end too).
    const refused = await waitFor(async () => {
      const res = await submit();
      return res.status === 503 ? res : undefined;
    }, 30_000, 'a 503 from admission control');
    expect(refused.body.error.code).toBe('storage_full');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    const sync = await submit('/api/v1/images/generate', { prompt: 'fill', ...BIG });
    expect(sync.status).toBe(503);
    expect(sync.body.error.code).toBe('storage_full');
    expect(sync.headers['retry-after']).toBeDefined();
    // Bad input is the caller's to fix whatever Redis holds: 400 before 503.
    expect((await submit('/api/v1/images/jobs', { prompt: 'fill', ...BIG, width: 2047 })).status).toBe(400);
    // Reads keep working.
    await request(stack.url).get(`/api/v1/images/jobs/${first.id}`).expect(200);

    const all = await ended(accepted);
    expect(all.every((v) => v.status === 'succeeded' || (v.status === 'failed' && v.error.code === 'storage_full'))).toBe(true);
    expect(statuses.filter((s) => s >= 500 && s !== 503)).toEqual([]);
    expect(await queue.getJobCounts('active', 'waiting', 'delayed', 'prioritized')).toEqual({ active: 0, waiting: 0, delayed: 0, prioritized: 0 });

    const finished = await jobKeyBytes(client, stack.env.QUEUE_PREFIX, image.id);
    process.stdout.write(
      `redis-memory: a finished job with its 1024x1024 image in Redis: ${finished.bytes} bytes (image ${image.images[0].bytes} bytes) (${finished.each}); ` +
        `used_memory ${await usedMemory(client)} of 24 MiB\n`,
    );
  }, 240_000);
});


describe('Redis memory per job', () => {
  let stack: Stack;
  afterAll(async () => {
    await stack?.close();
  });

  it('bytes of Redis per queued job (figures, printed)', async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
    const n = 200;
    const before = await usedMemory(stack.redis);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: `a lighthouse at dusk, number ${i}`, ...BIG }).expect(202);
      ids.push(res.body.id);
    }
    const after = await usedMemory(stack.redis);
    const own = await jobKeyBytes(stack.redis, stack.env.QUEUE_PREFIX, ids[0]);
    expect(own.bytes).toBeGreaterThan(0);
    process.stdout.write(
      `redis-memory: a queued job: ${own.bytes} bytes in its own keys (${own.each}); ` +
        `${Math.round((after - before) / n)} bytes of used_memory per job over ${n} jobs (lists, streams and indexes included)\n`,
    );
  }, 60_000);
});

describe('the eviction policy at start-up', () => {
  let redis: TestRedisServer;
  let app: AppProcess | undefined;
  beforeAll(async () => {
    redis = await TestRedisServer.start();
    const admin = new Redis(redis.url);
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    admin.disconnect();
  });
  afterEach(async () => {
    await stopApp(app);
    app = undefined;
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  const envFor = async (extra: Record<string, string> = {}) => ({
    REDIS_URL: redis.url,
    QUEUE_PREFIX: `p${Date.now()}`,
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    COMFYUI_URLS: `http://127.0.0.1:${await freePort()}`,
    LOG_LEVEL: 'info',
    ...extra,
  });

  for (const entry of [API_ENTRY, WORKER_ENTRY]) {
    it(`${entry}: REDIS_REQUIRE_NOEVICTION=true refuses to start, exit 2, with one clear line`, async () => {
      app = startApp(entry, await envFor({ REDIS_REQUIRE_NOEVICTION: 'true' }));
      const { code } = await app.exited;
      expect(code).toBe(2);
      const lines = app.output().split('\n').filter((l) => l.includes('REDIS_REQUIRE_NOEVICTION'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/maxmemory-policy is allkeys-lru/);
    }, 30_000);

    it(`${entry}: an evicting Redis is one loud JSON warning, and the process runs on`, async () => {
      app = startApp(entry, await envFor());
      const p = app;
      const line = await waitFor(async () => p.output().split('\n').find((l) => l.includes('maxmemory-policy') && l.startsWith('{')), 20_000, 'the warning');
      const parsed = JSON.parse(line) as Record<string, unknown>;
      expect(parsed).toMatchObject({ policy: 'allkeys-lru', required: 'noeviction' });
      expect(parsed.level === 40 || parsed.level === 'warn').toBe(true);
      expect(p.output().split('\n').filter((l) => l.includes('NOT noeviction'))).toHaveLength(1);
      expect(p.child.exitCode).toBeNull();
    }, 30_000);
  }
});
