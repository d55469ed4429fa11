import request from 'supertest';
import { GenerationWorkerPool } from '../apps/worker/src/generation/generation-worker.pool';
import { readSse } from './support/sse';
import { Stack, waitFor } from './support/stack';

type Job = {
  id: string;
  status: string;
  attempts: number;
  queue_position: number | null;
  error: { code: string; message: string } | null;
  progress: { step: number; total_steps: number } | null;
  started_at: string | null;
  finished_at: string | null;
};

const small = (extra: object = {}) => ({ prompt: 'a small test', width: 256, height: 256, ...extra });

async function getJob(url: string, id: string): Promise<Job> {
  return (await request(url).get(`/api/v1/images/jobs/${id}`).expect(200)).body as Job;
}

async function until(url: string, id: string, pred: (j: Job) => boolean, timeoutMs = 20_000, what = 'job state'): Promise<Job> {
  return waitFor(async () => {
    const j = await getJob(url, id);
    return pred(j) ? j : undefined;
  }, timeoutMs, what);
}

async function submit(url: string, body: object = small()): Promise<string> {
  return (await request(url).post('/api/v1/images/jobs').send(body).expect(202)).body.id as string;
}

describe('where is my job: queue position, progress, server-sent events', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 60 } });
  });
  afterAll(async () => stack?.close());

  it('reports queue positions in order, and priority reorders the queue', async () => {
    const first = await submit(stack.url, small({ num_inference_steps: 16 }));
    await until(stack.url, first, (j) => j.status === 'running');
    const ids = [await submit(stack.url), await submit(stack.url), await submit(stack.url)];
    const positions = await Promise.all(ids.map(async (id) => (await getJob(stack.url, id)).queue_position));
    expect(positions).toEqual([0, 1, 2]);
    expect((await getJob(stack.url, first)).queue_position).toBeNull();
    await Promise.all([first, ...ids].map((id) => until(stack.url, id, (j) => j.status === 'succeeded')));
  });

  it('streams status, per-step progress and the final job over SSE, from another API instance', async () => {
    const other = await stack.addApi();
    const id = await submit(stack.url, small({ num_inference_steps: 8 }));
    const { status, events } = await readSse(`${other.url}/api/v1/images/jobs/${id}/events`);
    expect(status).toBe(200);
    const kinds = events.map((e) => e.event);
    expect(kinds[0]).toBe('status');
    expect(kinds[kinds.length - 1]).toBe('job');
    const statuses = events.filter((e) => e.event === 'status').map((e) => (e.data as { status: string }).status);
    expect(statuses).toContain('running');
    const steps = events.filter((e) => e.event === 'progress').map((e) => (e.data as { step: number }).step);
    expect(steps.length).toBeGreaterThanOrEqual(4);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(Math.max(...steps)).toBe(8);
    expect((events[events.length - 1].data as Job).status).toBe('succeeded');
  });

  it('timestamps say what happened: a job just accepted by an idle GPU is never "queued" with a start time', async () => {
    // An idle worker takes a job within milliseconds of its acceptance: the 202 races with it.
    for (let i = 0; i < 8; i++) {
      const res = await request(stack.url).post('/api/v1/images/jobs').send(small({ model: 'smoke-test' })).expect(202);
      const job = res.body as Job;
      if (job.status === 'queued') expect(job.started_at).toBeNull();
      else expect(job.started_at).not.toBeNull();
      expect(job.finished_at).toBeNull();
      const done = await until(stack.url, job.id, (j) => j.status === 'succeeded');
      expect(Date.parse(done.finished_at as string)).toBeGreaterThanOrEqual(Date.parse(done.started_at as string));
    }
  });

  it('long-poll: ?wait=N and Prefer: wait=N answer when the job ends, from any API instance; bad values are 400', async () => {
    const other = await stack.addApi();
    const id = await submit(stack.url, small({ num_inference_steps: 6 }));
    const polled = await request(other.url).get(`/api/v1/images/jobs/${id}?wait=30`).expect(200);
    expect(polled.body.status).toBe('succeeded');

    const slow = await submit(stack.url, small({ num_inference_steps: 16 }));
    const early = await request(stack.url).get(`/api/v1/images/jobs/${slow}`).query({ wait: '0.3' }).expect(200);
    expect(['queued', 'running']).toContain(early.body.status);
    await request(stack.url).delete(`/api/v1/images/jobs/${slow}`).expect(200);

    const created = await request(stack.url).post('/api/v1/images/jobs').set('Prefer', 'wait=30').send(small({ model: 'smoke-test' })).expect(202);
    expect(created.body.status).toBe('succeeded');
    expect(created.headers['preference-applied']).toBe('wait=30');
    expect(created.headers.location).toContain(created.body.id);
    const viaHeader = await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}`).set('Prefer', 'respond-async, wait=5').expect(200);
    expect(viaHeader.body.status).toBe('succeeded');

    for (const bad of ['61', 'abc', '-1', '1e3', '']) {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${id}`).query({ wait: bad }).expect(400);
      expect(r.body.error.code).toBe('validation_failed');
    }
    await request(stack.url).get(`/api/v1/images/jobs/${id}?wait=1&wait=2`).expect(400);
    // Refused before anything is enqueued.
    await request(stack.url).post('/api/v1/images/jobs').set('Prefer', 'wait=999').send(small()).expect(400);
  });

  it('SSE of a finished job sends its status and the job, then closes; unknown ids are 404', async () => {
    const id = await submit(stack.url, small({ model: 'smoke-test' }));
    await until(stack.url, id, (j) => j.status === 'succeeded');
    const { events } = await readSse(`${stack.url}/api/v1/images/jobs/${id}/events`);
    expect(events.map((e) => e.event)).toEqual(['status', 'job']);
    await request(stack.url).get('/api/v1/images/jobs/6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b/events').expect(404);
  });
});

describe('cancel', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 100 } });
  });
  afterAll(async () => stack?.close());

  it('a queued job is removed and never runs; a running one is interrupted within 2 s and the GPU takes the next', async () => {
    const running = await submit(stack.url, small({ num_inference_steps: 16 }));
    const reached = await until(stack.url, running, (j) => j.status === 'running' && (j.progress?.step ?? 0) >= 2);
    const queued = await submit(stack.url, small({ prompt: 'never runs' }));
    const next = await submit(stack.url, small({ prompt: 'runs after the cancel', model: 'smoke-test' }));
    const waiting = await getJob(stack.url, queued);
    expect(waiting).toMatchObject({ status: 'queued', started_at: null, progress: null });

    const q = await request(stack.url).delete(`/api/v1/images/jobs/${queued}`).expect(200);
    expect(q.body).toMatchObject({ status: 'canceled', started_at: null, progress: null, queue_position: null });
    expect(q.body.finished_at).not.toBeNull();
    expect((await getJob(stack.url, queued)).status).toBe('canceled');

    const t0 = Date.now();
    const r = await request(stack.url).delete(`/api/v1/images/jobs/${running}`).expect(200);
    const canceled = r.body.status === 'canceled' ? r.body : await until(stack.url, running, (j) => j.status === 'canceled', 5_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(canceled.error.code).toBe('canceled');
    expect(canceled.attempts).toBe(1);
    // The step it reached stays on record (it was reset to 0 once).
    expect(canceled.progress.step).toBeGreaterThanOrEqual(reached.progress?.step ?? 2);
    expect(canceled.progress.total_steps).toBe(16);
    expect(canceled.started_at).not.toBeNull();

    await until(stack.url, next, (j) => j.status === 'succeeded');
    const stats = stack.sims[0].stats();
    expect(stats.interrupted).toBe(1);
    expect(stats.executed).toBe(2); // the canceled running one and the next; the queued one never ran
    await request(stack.url).delete(`/api/v1/images/jobs/${next}`).expect(409).expect((res) => expect(res.body.error.code).toBe('job_finished'));
    await request(stack.url).delete(`/api/v1/images/jobs/${queued}`).expect(409);
  });
});

describe('retries that mean something', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 5 }, env: { JOB_ATTEMPTS: '3', JOB_BACKOFF_MS: '100', COMFYUI_IDLE_TIMEOUT_MS: '1000' } });
  });
  afterEach(() => stack.sims[0].faults.reset());
  afterAll(async () => stack?.close());

  it('ComfyUI answering 503 twice, then succeeding: completed on attempt 3', async () => {
    stack.sims[0].faults.set({ promptFailCount: 2 });
    const id = await submit(stack.url, small({ model: 'smoke-test' }));
    const done = await until(stack.url, id, (j) => j.status === 'succeeded' || j.status === 'failed');
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(3);
  });

  it('an execution error that persists fails after every attempt, with ComfyUI’s exception shown', async () => {
    stack.sims[0].faults.set({ executionError: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
    const id = await submit(stack.url, small());
    const done = await until(stack.url, id, (j) => j.status === 'failed');
    expect(done.attempts).toBe(3);
    expect(done.error!.code).toBe('comfyui_execution_error');
    expect(done.error!.message).toContain('out of memory');
  });

  it('a hung ComfyUI is interrupted by the watchdog and the job is retried', async () => {
    stack.sims[0].faults.set({ hang: true });
    const before = stack.sims[0].stats().submitted;
    const id = await submit(stack.url, small({ model: 'smoke-test' }));
    // The watchdog (1 s without a sign of life) interrupts the first prompt and the retry resubmits.
    await waitFor(async () => (stack.sims[0].stats().submitted >= before + 2 ? true : undefined), 10_000, 'a resubmission');
    stack.sims[0].faults.set({ hang: false });
    const done = await until(stack.url, id, (j) => j.status === 'succeeded' || j.status === 'failed');
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(2);
  });

  it('a GPU that stays hung: every attempt times out (the retry queued behind the frozen prompt too), the job fails comfyui_timeout and the worker takes the next job', async () => {
    stack.sims[0].faults.set({ hang: true });
    const id = await submit(stack.url, small({ model: 'smoke-test' }));
    const done = await until(stack.url, id, (j) => j.status === 'failed', 20_000);
    expect(done.error!.code).toBe('comfyui_timeout');
    expect(done.attempts).toBe(3);
    stack.sims[0].faults.set({ hang: false });
    const next = await submit(stack.url, small({ model: 'smoke-test', prompt: 'after the hang' }));
    expect((await until(stack.url, next, (j) => j.status === 'succeeded', 20_000)).status).toBe('succeeded');
  });

  it('ComfyUI restarted mid-job (queue and history gone): the prompt is found lost and resubmitted', async () => {
    const id = await submit(stack.url, small({ num_inference_steps: 16 }));
    stack.sims[0].faults.set({}); // no fault: just make the prompt long enough to restart under it
    await until(stack.url, id, (j) => j.status === 'running' && (j.progress?.step ?? 0) >= 1);
    await stack.sims[0].restart();
    const done = await until(stack.url, id, (j) => j.status === 'succeeded' || j.status === 'failed');
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(2);
  });

  it('ComfyUI down: the worker takes no job (no attempt burned) and resumes when it is back', async () => {
    await stack.sims[0].stop();
    const pool = stack.worker!.get(GenerationWorkerPool);
    await waitFor(async () => (pool.allSlots[0].comfyUp ? undefined : true), 5_000, 'the worker to notice ComfyUI is down');
    const id = await submit(stack.url, small({ model: 'smoke-test' }));
    // Give the worker ample chances to (wrongly) take the job.
    await new Promise((r) => setTimeout(r, 2_500));
    const waiting = await getJob(stack.url, id);
    expect(waiting.status).toBe('queued');
    expect(waiting.attempts).toBe(0);
    await stack.sims[0].start();
    const done = await until(stack.url, id, (j) => j.status === 'succeeded');
    expect(done.attempts).toBe(1);
  });
});

describe('back-pressure, retention, idempotency', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, worker: false, env: { QUEUE_MAX_WAITING: '3' } });
  });
  afterAll(async () => stack?.close());

  it('beyond QUEUE_MAX_WAITING: 503 queue_full with Retry-After, nothing enqueued', async () => {
    for (let i = 0; i < 3; i++) await submit(stack.url);
    const res = await request(stack.url).post('/api/v1/images/jobs').send(small()).expect(503);
    expect(res.body.error.code).toBe('queue_full');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('QUEUE_MAX_WAITING is exact for one API instance, though far below it the count is reused for a moment', async () => {
    const limited = await Stack.start({ comfyui: 1, worker: false, env: { QUEUE_MAX_WAITING: '20' } });
    try {
      const statuses: number[] = [];
      const ids: string[] = [];
      for (let i = 0; i < 24; i++) {
        const res = await request(limited.url).post('/api/v1/images/jobs').send(small({ seed: 100 + i }));
        statuses.push(res.status);
        if (res.status === 202) ids.push(res.body.id as string);
      }
      expect(statuses).toEqual([...Array(20).fill(202), ...Array(4).fill(503)]);
      // Room again (a job canceled while waiting): the next submission sees it at once.
      await request(limited.url).delete(`/api/v1/images/jobs/${ids[0]}`).expect(200);
      await request(limited.url).post('/api/v1/images/jobs').send(small({ seed: 200 })).expect(202);
      await request(limited.url).post('/api/v1/images/jobs').send(small({ seed: 201 })).expect(503);
    } finally {
      await limited.close();
    }
  });

  it('Idempotency-Key: concurrent duplicates give exactly one job; another body is 422', async () => {
    const idem = await Stack.start({ comfyui: 1, worker: false });
    try {
      const key = `k-${Date.now()}`;
      const body = small({ prompt: 'idempotent', seed: 5 });
      const responses = await Promise.all(Array.from({ length: 10 }, () => request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body)));
      expect(responses.map((r) => r.status)).toEqual(Array(10).fill(202));
      expect(new Set(responses.map((r) => r.body.id)).size).toBe(1);
      expect(responses.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(9);
      const other = await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send({ ...body, seed: 6 }).expect(422);
      expect(other.body.error.code).toBe('idempotency_key_reused');
      // Bad input does not burn the key.
      await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', 'fresh').send({ prompt: '' }).expect(400);
      await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', 'fresh').send(body).expect(202);
    } finally {
      await idem.close();
    }
  });

  it('Idempotency-Key whose first request never created its job (add and release both failed) is taken over by the retry', async () => {
    const idem = await Stack.start({ comfyui: 1, worker: false });
    try {
      const key = `stuck-${Date.now()}`;
      const body = small({ prompt: 'stuck key', seed: 9 });
      const first = await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body).expect(202);
      // Make the claim name a job that was never added, as a request cut off by a Redis outage leaves it.
      const [claimKey] = await idem.redis.keys(`${idem.env.QUEUE_PREFIX}:idem:*`);
      const claim = JSON.parse((await idem.redis.get(claimKey)) as string) as { fp: string; job_id: string };
      expect(claim.job_id).toBe(first.body.id);
      const ghost = '00000000-0000-4000-8000-000000000000';
      await idem.redis.set(claimKey, JSON.stringify({ ...claim, job_id: ghost }), 'KEEPTTL');
      const retry = await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body).expect(202);
      expect(retry.body.id).not.toBe(ghost);
      expect(retry.headers['idempotent-replayed']).toBeUndefined();
      expect(JSON.parse((await idem.redis.get(claimKey)) as string).job_id).toBe(retry.body.id);
      // From now on the key answers that job.
      const again = await request(idem.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body).expect(202);
      expect(again.body.id).toBe(retry.body.id);
      expect(again.headers['idempotent-replayed']).toBe('true');
    } finally {
      await idem.close();
    }
  });

  it('after RESULT_TTL_SECONDS a finished job answers 410 job_expired', async () => {
    const short = await Stack.start({ comfyui: 1, sim: { stepMs: 5 }, env: { RESULT_TTL_SECONDS: '2' } });
    try {
      const id = await submit(short.url, small({ model: 'smoke-test' }));
      await until(short.url, id, (j) => j.status === 'succeeded');
      const gone = await waitFor(async () => {
        const r = await request(short.url).get(`/api/v1/images/jobs/${id}`);
        return r.status === 410 ? r.body : undefined;
      }, 10_000, '410');
      expect(gone.error.code).toBe('job_expired');
      await request(short.url).get(`/api/v1/images/jobs/${id}/images/0`).expect(410);
    } finally {
      await short.close();
    }
  });
});
