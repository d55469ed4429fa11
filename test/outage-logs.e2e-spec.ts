import { randomUUID } from 'node:crypto';
import request from 'supertest';
import { API_ENTRY, type AppProcess, startApp, stopApp, WORKER_ENTRY } from './support/processes';
import { freePort, TestRedisServer } from './support/redis-server';
import { waitFor } from './support/stack';

interface LogLine {
  level?: string;
  msg?: string;
  [k: string]: unknown;
}

/** Every line of the output; a line that is not a JSON object is returned as a string. */
function lines(p: AppProcess): Array<LogLine | string> {
  return p
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      try {
        const v: unknown = JSON.parse(l);
        return v && typeof v === 'object' ? (v as LogLine) : l;
      } catch {
        return l;
      }
    });
}

const notJson = (p: AppProcess) => lines(p).filter((l): l is string => typeof l === 'string');
const objects = (p: AppProcess) => lines(p).filter((l): l is LogLine => typeof l !== 'string');
const redisWarnings = (p: AppProcess) => objects(p).filter((l) => (l.level === 'warn' || l.level === 'error') && /redis|queue/i.test(JSON.stringify(l)));
const withMsg = (p: AppProcess, msg: string) => objects(p).filter((l) => l.msg === msg && l.dependency === 'redis');

/**
 * Watches the processes for a while. Noise is an absence to prove, which only a span of time can
 * show: the span covers several of ioredis's and BullMQ's reconnect attempts (250 ms … 2 s apart).
 */
async function observe(ms: number, during: () => Promise<unknown>): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    await during().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('quiet outages: API and worker started with nothing listening on the Redis port', () => {
  let redisPort: number;
  let apiPort: number;
  let api: AppProcess | undefined;
  let worker: AppProcess | undefined;
  let redis: TestRedisServer | undefined;

  beforeAll(async () => {
    redisPort = await freePort();
    apiPort = await freePort();
    const env = {
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      QUEUE_PREFIX: `t${randomUUID().slice(0, 8)}`,
      COMFYUI_URLS: 'http://127.0.0.1:9',
      WORKFLOWS_DIR: 'workflows',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: String(apiPort),
      WORKER_HEARTBEAT_INTERVAL_MS: '500',
    };
    api = startApp(API_ENTRY, env);
    worker = startApp(WORKER_ENTRY, env);
  });
  afterAll(async () => {
    await stopApp(api);
    await stopApp(worker);
    await redis?.destroy();
  });

  it('prints one JSON warning per state change, not a stack per retry; "available again" once Redis is there', async () => {
    const url = `http://127.0.0.1:${apiPort}`;
    // The API waits up to 5 s for Redis before it listens.
    await waitFor(async () => ((await request(url).get('/health/live')).status === 200 ? true : undefined), 20_000, 'the API to listen');
    await observe(3_000, async () => {
      await request(url).get('/health/ready');
      await request(url).post('/api/v1/images/jobs').send({ prompt: 'during the outage' });
    });
    for (const p of [api!, worker!]) {
      expect(notJson(p)).toEqual([]);
      expect(withMsg(p, 'redis unavailable')).toHaveLength(1);
      const warnings = redisWarnings(p).map((l) => `${String(l.context)}: ${String(l.msg)}`);
      if (warnings.length > 3) throw new Error(`${warnings.length} Redis warnings from the ${String(objects(p)[0]?.service)}:\n${warnings.join('\n')}`);
    }

    redis = await TestRedisServer.start({ port: redisPort });
    for (const p of [api!, worker!]) {
      await waitFor(async () => (withMsg(p, 'redis available again').length ? true : undefined), 15_000, 'redis available again');
    }
    await waitFor(async () => ((await request(url).get('/health/ready')).body?.details?.redis?.status === 'up' ? true : undefined), 10_000, 'redis check up');

    // Down again: one more warning, no more stacks.
    await redis.kill();
    await waitFor(async () => (withMsg(api!, 'redis unavailable').length === 2 ? true : undefined), 10_000, 'the second outage to be reported');
    await observe(2_000, () => request(url).get('/health/ready'));
    for (const p of [api!, worker!]) {
      expect(notJson(p)).toEqual([]);
      expect(withMsg(p, 'redis unavailable').length).toBeLessThanOrEqual(2);
      expect(withMsg(p, 'redis available again')).toHaveLength(1);
    }
  });
});
