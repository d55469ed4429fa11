import { Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError } from 'bullmq';
import type Redis from 'ioredis';
import { loadEnv } from '@app/config';
import { RedisKeys, type WebhookJobData } from '@app/queue';
import { dnsLookup, WebhookStateStore } from '@app/webhooks';
import { startReceiver, type LocalReceiver, type ReceiverHandler } from '@app/webhooks/testing/local-receiver';
import { WebhookAttemptError, WebhookProcessor, type WebhookJob } from './webhook.processor';

/** Just the Redis commands the processor and the state store use, in memory. */
class FakeRedis {
  readonly hashes = new Map<string, Map<string, string>>();
  readonly strings = new Map<string, string>();

  private hash(key: string): Map<string, string> {
    let h = this.hashes.get(key);
    if (!h) this.hashes.set(key, (h = new Map()));
    return h;
  }

  multi() {
    const ops: (() => void)[] = [];
    const chain = {
      hsetnx: (k: string, f: string, v: string) => {
        ops.push(() => void (this.hash(k).has(f) || this.hash(k).set(f, v)));
        return chain;
      },
      hset: (k: string, f: string, v: string) => {
        ops.push(() => void this.hash(k).set(f, v));
        return chain;
      },
      expire: () => chain,
      exec: async () => {
        ops.forEach((op) => op());
        return [];
      },
    };
    return chain;
  }

  async hget(k: string, f: string) {
    return this.hashes.get(k)?.get(f) ?? null;
  }
  async hgetall(k: string) {
    return Object.fromEntries(this.hashes.get(k) ?? []);
  }
  async exists(k: string) {
    return this.strings.has(k) ? 1 : 0;
  }
  async set(k: string, v: string) {
    this.strings.set(k, v);
    return 'OK';
  }
}

const SECRET = `whsec_${Buffer.from('unit-test-webhook-signing-key-32b').toString('base64')}`;
const env = loadEnv({
  QUEUE_PREFIX: 'unit',
  WEBHOOK_SECRET: SECRET,
  WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_RETRY_SCHEDULE_MS: '100,200',
});

function fakeJob(url: string, o: { attemptsMade?: number; attemptsStarted?: number } = {}) {
  const data: WebhookJobData = { job_id: 'j1', event: 'succeeded', webhook_id: 'msg_j1_succeeded', url, body: '{"type":"image.job.succeeded"}' };
  const moveToDelayed = jest.fn(async () => undefined);
  const attemptsMade = o.attemptsMade ?? 0;
  const job = { id: 'wh-j1-succeeded', data, attemptsMade, attemptsStarted: o.attemptsStarted ?? attemptsMade + 1, opts: { attempts: 3 }, moveToDelayed };
  return { job: job as unknown as WebhookJob, moveToDelayed };
}

describe('WebhookProcessor', () => {
  beforeAll(() => Logger.overrideLogger(false));
  let redis: FakeRedis;
  let processor: WebhookProcessor;
  let states: WebhookStateStore;
  let receiver: LocalReceiver | undefined;
  const serve = async (handler: ReceiverHandler) => {
    receiver = await startReceiver(handler);
    return receiver.url();
  };

  beforeEach(() => {
    redis = new FakeRedis();
    const keys = new RedisKeys('unit');
    states = new WebhookStateStore(redis as unknown as Redis, keys, 60);
    processor = new WebhookProcessor(env, redis as unknown as Redis, keys, states, dnsLookup);
  });
  afterEach(async () => {
    await receiver?.close();
    receiver = undefined;
  });

  it('walks the schedule in its backoff, never waits less than Retry-After, and stops when it runs out', () => {
    expect(processor.backoffMs(1)).toBeGreaterThanOrEqual(80);
    expect(processor.backoffMs(1)).toBeLessThanOrEqual(120);
    expect(processor.backoffMs(2, new WebhookAttemptError('http_503', 5_000))).toBe(5_000);
    expect(processor.backoffMs(3)).toBe(-1);
  });

  it('records a 2xx as delivered', async () => {
    const { job } = fakeJob(await serve((_q, res) => res.end('ok')));
    await expect(processor.process(job, 'token')).resolves.toEqual({ status: 200, attempts: 1 });
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'delivered', attempts: 1, last_status_code: 200, last_error: null });
    expect(receiver?.requests[0].headers['webhook-id']).toBe('msg_j1_succeeded');
  });

  it('retries a 500 on the schedule, and gives up on the last attempt', async () => {
    const url = await serve((_q, res) => {
      res.statusCode = 500;
      res.end();
    });
    await expect(processor.process(fakeJob(url).job, 'token')).rejects.toBeInstanceOf(WebhookAttemptError);
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'pending', attempts: 1, last_status_code: 500, last_error: 'http_500' });
    await expect(processor.process(fakeJob(url, { attemptsMade: 2 }).job, 'token')).rejects.toBeInstanceOf(WebhookAttemptError);
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'gave_up', attempts: 3 });
  });

  it('postpones a 429 with Retry-After without using an attempt, a bounded number of times', async () => {
    const url = await serve((_q, res) => {
      res.writeHead(429, { 'Retry-After': '7' });
      res.end();
    });
    const { job, moveToDelayed } = fakeJob(url);
    const before = Date.now();
    await expect(processor.process(job, 'token')).rejects.toBeInstanceOf(DelayedError);
    const [[until, token]] = moveToDelayed.mock.calls as unknown as [number, string][];
    expect(token).toBe('token');
    expect(until).toBeGreaterThanOrEqual(before + 7_000);
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'pending', last_status_code: 429 });

    const worn = fakeJob(url, { attemptsMade: 0, attemptsStarted: 50 });
    const err = await processor.process(worn.job, 'token').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebhookAttemptError);
    expect((err as WebhookAttemptError).retryAfterMs).toBe(7_000);
    expect(worn.moveToDelayed).not.toHaveBeenCalled();
  });

  it('stops for good on 410 and sends nothing more to that URL', async () => {
    const url = await serve((_q, res) => {
      res.statusCode = 410;
      res.end();
    });
    await expect(processor.process(fakeJob(url).job, 'token')).rejects.toBeInstanceOf(UnrecoverableError);
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'failed', last_status_code: 410 });
    await expect(processor.process(fakeJob(url).job, 'token')).rejects.toThrow('endpoint_gone');
    expect(receiver?.requests).toHaveLength(1);
  });

  it('fails a blocked destination for good without connecting', async () => {
    await expect(processor.process(fakeJob('http://10.0.0.1:9/hook').job, 'token')).rejects.toBeInstanceOf(UnrecoverableError);
    expect(await states.get('j1', 'succeeded')).toMatchObject({ status: 'failed', attempts: 1, last_status_code: null, last_error: 'blocked_destination' });
  });
});
