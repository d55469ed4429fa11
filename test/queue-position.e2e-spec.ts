import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import Redis from 'ioredis';
import request from 'supertest';
import { JobName } from '@app/queue';
import { TestRedisServer } from './support/redis-server';
import { generationQueue, TestKeys } from './support/security';
import { Stack } from './support/stack';

const body = (prompt: string) => ({ prompt, width: 256, height: 256 });

/** Calls of each command Redis has run so far, scripts' inner commands included. */
async function commandCalls(redis: Redis): Promise<Record<string, number>> {
  const info = await redis.info('commandstats');
  return Object.fromEntries([...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]));
}

describe('queue_position: priorities, the wait list, and a deep queue', () => {
  // A private Redis: the command counts below must not see other specs' traffic.
  let server: TestRedisServer;
  let stack: Stack;
  let keys: TestKeys;
  let redis: Redis;
  let queue: Queue;

  beforeAll(async () => {
    server = await TestRedisServer.start();
    // No worker: every job stays queued.
    stack = await Stack.start({ comfyui: 0, worker: false, env: { REDIS_URL: server.url, QUEUE_MAX_WAITING: '1000000' } });
    keys = TestKeys.of(stack);
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    queue = generationQueue(stack);
  }, 60_000);
  afterAll(async () => {
    await queue?.close();
    await redis?.quit().catch(() => undefined);
    await keys?.close();
    await stack?.close();
    await server?.destroy();
  });

  it('orders by priority (lower first), then by arrival; jobs without a priority go before all of them', async () => {
    const batch = await keys.create('batch', { priority: 500 });
    const normal = await keys.create('normal');
    const urgent = await keys.create('urgent', { priority: 5 });
    const submit = async (k: typeof batch, name: string) => {
      const r = await request(stack.url).post('/api/v1/images/jobs').set(k.auth).send(body(name)).expect(202);
      return { name, k, id: r.body.id as string, atSubmit: r.body.queue_position as number, status: r.body.status as string };
    };
    const jobs = [
      await submit(batch, 'b1'), await submit(normal, 'n1'), await submit(urgent, 'u1'),
      await submit(batch, 'b2'), await submit(urgent, 'u2'), await submit(normal, 'n2'),
    ];
    const position = async (j: { k: typeof batch; id: string }) =>
      (await request(stack.url).get(`/api/v1/images/jobs/${j.id}`).set(j.k.auth).expect(200)).body.queue_position as number;
    const order = async () => {
      const positions = await Promise.all(jobs.map(async (j) => [j.name, await position(j)] as const));
      return positions.sort((a, b) => a[1] - b[1]).map(([name, p]) => `${name}@${p}`);
    };
    // The submission's own answer is the place at that moment.
    expect(jobs.map((j) => `${j.name}@${j.atSubmit}:${j.status}`)).toEqual(['b1@0:queued', 'n1@0:queued', 'u1@0:queued', 'b2@3:queued', 'u2@1:queued', 'n2@3:queued']);
    expect(await order()).toEqual(['u1@0', 'u2@1', 'n1@2', 'n2@3', 'b1@4', 'b2@5']);

    // Another producer's jobs without a priority sit in the wait list, which workers serve first (oldest first).
    const like = (await queue.getJob(jobs[1].id))!.data;
    const plain = [randomUUID(), randomUUID()];
    for (const id of plain) await queue.add(JobName.Generate, { ...like, submitted_at: Date.now() }, { jobId: id });
    expect(await queue.getJobState(plain[0])).toBe('waiting');
    const plainPositions = await Promise.all(plain.map((id) => request(stack.url).get(`/api/v1/images/jobs/${id}`).set(normal.auth).expect(200)));
    expect(plainPositions.map((r) => r.body.queue_position)).toEqual([0, 1]);
    expect(await order()).toEqual(['u1@2', 'u2@3', 'n1@4', 'n2@5', 'b1@6', 'b2@7']);

    // A canceled job leaves the order; the ones behind it move up.
    await request(stack.url).delete(`/api/v1/images/jobs/${plain[0]}`).set(normal.auth).expect(200);
    await request(stack.url).delete(`/api/v1/images/jobs/${jobs[2].id}`).set(urgent.auth).expect(200);
    jobs.splice(2, 1);
    expect(await order()).toEqual(['u2@1', 'n1@2', 'n2@3', 'b1@4', 'b2@5']);
    const left = await request(stack.url).get(`/api/v1/images/jobs/${plain[1]}`).set(normal.auth).expect(200);
    expect(left.body.queue_position).toBe(0);
  });

  it('a prioritized job in a queue of 20,000 gets its exact place without scanning the queue', async () => {
    const deep = await keys.create('deep', { priority: 300 });
    const mine = (await request(stack.url).post('/api/v1/images/jobs').set(deep.auth).send(body('mine')).expect(202)).body.id as string;
    const like = (await queue.getJob(mine))!.data;
    const before = (await request(stack.url).get(`/api/v1/images/jobs/${mine}`).set(deep.auth).expect(200)).body.queue_position as number;
    // 10,000 ahead of it (priority 200) and 10,000 behind it (priority 400), added in bulk.
    for (const [priority, n] of [[200, 10_000], [400, 10_000]] as const) {
      for (let i = 0; i < n; i += 2_000) {
        await queue.addBulk(Array.from({ length: 2_000 }, () => ({ name: JobName.Generate, data: like, opts: { jobId: randomUUID(), priority } })));
      }
    }
    const calls0 = await commandCalls(redis);
    const r = await request(stack.url).get(`/api/v1/images/jobs/${mine}`).set(deep.auth).expect(200);
    const calls1 = await commandCalls(redis);
    expect(r.body).toMatchObject({ status: 'queued', queue_position: before + 10_000 });
    const ran = (c: string) => (calls1[c] ?? 0) - (calls0[c] ?? 0);
    // The place came from a rank in the priority set, not from walking a list or a range. The one
    // LRANGE allowed reads the active list (jobs held by workers count ahead), which the GPUs bound.
    expect(ran('zrank')).toBeGreaterThanOrEqual(1);
    expect(ran('lrange')).toBeLessThanOrEqual(1);
    for (const scan of ['lpos', 'zrange', 'zrangebyscore', 'zcount']) expect({ [scan]: ran(scan) }).toEqual({ [scan]: 0 });
  }, 120_000);
});
