import { UnrecoverableError, Worker } from 'bullmq';
import request from 'supertest';
import { QueueName, RedisKeys } from '@app/queue';
import { generationQueue, jobCount, TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const body = (prompt = 'a quota test') => ({ prompt, width: 256, height: 256 });

describe('per-key job quota (queued + running)', () => {
  let stack: Stack;
  let keys: TestKeys;

  beforeAll(async () => {
    // No worker: jobs stay queued until the test moves them on itself.
    stack = await Stack.start({ comfyui: 0, worker: false });
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    keys?.close();
    await stack?.close();
  });

  function submit(auth: { Authorization: string }, prompt?: string): request.Test {
    return request(stack.url).post('/api/v1/images/jobs').set(auth).send(body(prompt));
  }

  it('submission Q+1 is 429 quota_exceeded; a slot frees however a job ends', async () => {
    const k = await keys.create('quota', { max_jobs: 2 });
    const j1 = (await submit(k.auth, 'ends by success')).body.id as string;
    const j2 = (await submit(k.auth, 'ends by cancel')).body.id as string;
    expect(j1 && j2).toBeTruthy();
    const before = await jobCount(stack);
    const over = await submit(k.auth);
    expect(over.status).toBe(429);
    expect(over.body.error).toMatchObject({ code: 'quota_exceeded', details: { max_jobs: 2 } });
    expect(await jobCount(stack)).toBe(before);
    // Other keys are not affected.
    const other = await keys.create('other', { max_jobs: 1 });
    expect((await submit(other.auth)).status).toBe(202);

    // canceled
    await request(stack.url).delete(`/api/v1/images/jobs/${j2}`).set(k.auth).expect(200);
    const j3 = (await submit(k.auth, 'ends by failure').expect(202)).body.id as string;
    expect((await submit(k.auth)).status).toBe(429);

    // succeeded and failed: a worker of our own takes both
    const done = new Set<string>();
    const worker = new Worker(
      QueueName.Generation,
      async (job) => {
        if (job.data.params.prompt === 'ends by failure') throw new UnrecoverableError('[comfyui_rejected] no');
        return { images: [], seed: 1, model: job.data.params.model, prompt_id: 'p', comfyui: 'x', timings: { queue_ms: 1, execution_ms: 1, total_ms: 2 } };
      },
      { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX },
    );
    worker.on('completed', (job) => done.add(job.id as string));
    worker.on('failed', (job) => job && done.add(job.id as string));
    try {
      await waitFor(async () => (done.has(j1) && done.has(j3) ? true : undefined), 10_000, 'the two jobs to end');
    } finally {
      await worker.close();
    }
    expect((await request(stack.url).get(`/api/v1/images/jobs/${j3}`).set(k.auth)).body.status).toBe('failed');
    const j4 = (await submit(k.auth, 'removed by an operator').expect(202)).body.id as string;
    expect((await submit(k.auth).expect(202)).status).toBe(202);
    expect((await submit(k.auth)).status).toBe(429);

    // removed from BullMQ behind the API's back
    const q = generationQueue(stack);
    try {
      await q.remove(j4);
    } finally {
      await q.close();
    }
    expect((await submit(k.auth)).status).toBe(202);
    expect((await submit(k.auth)).status).toBe(429);
  });

  it('a slot reserved by an API that crashed before enqueueing is reclaimed; a fresh reservation is not', async () => {
    const k = await keys.create('crash', { max_jobs: 2 });
    const set = new RedisKeys(stack.env.QUEUE_PREFIX).keyJobs(k.id);
    // One API crashed 60 s ago between reserving and queue.add; another is adding right now
    // (unconfirmed reservations are scored -reserved_at).
    await keys.redis.zadd(set, -(Date.now() - 60_000), 'ghost-of-a-crash', -Date.now(), 'in-flight-add');
    expect((await submit(k.auth)).status).toBe(202);
    expect((await submit(k.auth)).status).toBe(429);
    const members = await keys.redis.zrange(set, 0, -1);
    expect(members).toContain('in-flight-add');
    expect(members).not.toContain('ghost-of-a-crash');
  });

  it('concurrent submissions cannot overshoot the quota', async () => {
    const k = await keys.create('burst', { max_jobs: 3 });
    const results = await Promise.all(Array.from({ length: 12 }, () => submit(k.auth)));
    expect(results.filter((r) => r.status === 202)).toHaveLength(3);
    expect(results.filter((r) => r.status === 429).every((r) => r.body.error.code === 'quota_exceeded')).toBe(true);
  });

  it("a key's priority orders the queue (lower number first)", async () => {
    const slow = await keys.create('batch', { priority: 500 });
    const fast = await keys.create('interactive', { priority: 5 });
    const s = (await submit(slow.auth).expect(202)).body.id as string;
    const f = (await submit(fast.auth).expect(202)).body.id as string;
    const pos = async (auth: { Authorization: string }, id: string) => (await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(auth).expect(200)).body.queue_position as number;
    expect(await pos(fast.auth, f)).toBeLessThan(await pos(slow.auth, s));
    const q = generationQueue(stack);
    try {
      expect((await q.getJob(f))?.opts.priority).toBe(5);
      expect((await q.getJob(s))?.opts.priority).toBe(500);
    } finally {
      await q.close();
    }
  });
});
