import { EventEmitter } from 'node:events';
import { Logger } from '@nestjs/common';
import type { Queue } from 'bullmq';
import type Redis from 'ioredis';
import type { Env } from '@app/config';
import { type GenerationJob, type GenerationJobData, type GenerationResult, type JobEvent, RedisKeys } from '@app/queue';
import type { ResultStore } from '@app/storage';
import type { WebhookEnqueuer, WebhookEventInput, WebhookStateStore } from '@app/webhooks';
import type { JobEventBus } from './job-event-bus';
import { GenerationQueues } from './generation-queues';
import { JobLifecycle } from './job-lifecycle.service';
import type { JobTransition } from './job-transitions';
import { isTerminalRecord, type TerminalRecord } from './job-view';

/** Fakes of every port the owner has, recording what it did and in which order. */
function harness(opts: { replicasToAck?: number; replicasConfirming?: number } = {}) {
  const log: string[] = [];
  const records = new Map<string, Record<string, unknown>>();
  const flags = new Set<string>();
  const queueJobs = new Map<string, { state: string; data: GenerationJobData }>();
  const events: JobEvent[] = [];
  const cancels: string[] = [];
  const webhooks: WebhookEventInput[] = [];
  let recordReads = 0;
  /** Reads of a queued job's place (its score in the priority set): what the submission's own answer costs. */
  let placeReads = 0;
  const listeners = new Map<string, (e: JobEvent) => void>();
  const store = {
    putRecord: async (id: string, r: Record<string, unknown>) => void (records.set(id, r), log.push(`record:${String(r.status)}`)),
    getRecord: async (id: string) => (recordReads++, records.get(id)),
    wasExpired: async () => false,
  } as unknown as ResultStore;
  const bus = {
    publish: async (e: JobEvent) => void (events.push(e), log.push(`event:${e.type === 'status' ? e.status : 'progress'}`)),
    requestCancel: async (id: string) => void cancels.push(id),
    listen: (id: string, l: (e: JobEvent) => void) => (listeners.set(id, l), () => void listeners.delete(id)),
  } as unknown as JobEventBus;
  const enqueuer = { enqueue: async (e: WebhookEventInput) => (webhooks.push(e), log.push(`webhook:${e.event}`), 'msg') } as unknown as WebhookEnqueuer;
  const states = { read: async () => null } as unknown as WebhookStateStore;
  const values = new Map<string, { value: string; px?: number }>();
  /** Sorted sets (the owners' job indexes): key → member → score. */
  const zsets = new Map<string, Map<string, number>>();
  const zset = (k: string) => zsets.get(k) ?? zsets.set(k, new Map()).get(k)!;
  const redis = {
    zadd: async (k: string, score: number, member: string) => (zset(k).set(member, score), 1),
    zremrangebyscore: async (k: string, _min: string, max: number) => [...zset(k)].filter(([m, sc]) => sc <= max && zset(k).delete(m)).length,
    expire: async () => 1,
    zrevrangebyscore: async (k: string, max: string, _min: string, _w: string, _l: string, offset: number, count: number) => {
      // As Redis: max inclusive unless `(`; highest score first, equal scores in reverse lexicographic order.
      const top = max === '+inf' ? Infinity : Number(max.replace('(', ''));
      const within = (sc: number) => (max.startsWith('(') ? sc < top : sc <= top);
      return [...zset(k)].filter(([, sc]) => within(sc)).sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : 0))
        .slice(offset, offset + count).flatMap(([m, sc]) => [m, String(sc)]);
    },
    set: async (k: string, v: string, mode?: string, ttl?: number) => void (flags.add(k), values.set(k, { value: v, px: mode === 'PX' ? ttl : undefined })),
    get: async (k: string) => values.get(k)?.value ?? null,
    del: async (k: string) => (values.delete(k) ? 1 : 0),
    exists: async (k: string) => (flags.has(k) ? 1 : 0),
    llen: async (k: string) => (k.endsWith(':wait') ? [...queueJobs.values()].filter((j) => j.state === 'waiting').length : 0),
    lpos: async () => 0,
    zcard: async () => 0,
    zrank: async () => null,
    lrange: async () => [],
    zscore: async () => (placeReads++, null),
    hget: async () => null,
    wait: async () => (log.push('wait'), opts.replicasConfirming ?? 0),
  } as unknown as Redis;
  const queue = Object.assign(new EventEmitter(), {
    add: async (_n: string, data: GenerationJobData, o: { jobId: string }) => void queueJobs.set(o.jobId, { state: 'waiting', data }),
    remove: async (id: string) => (queueJobs.get(id)?.state === 'waiting' ? (queueJobs.delete(id), 1) : 0),
    getJobState: async (id: string) => queueJobs.get(id)?.state ?? 'unknown',
    getJobCounts: async () => ({ waiting: queueJobs.size }),
    getJob: async (id: string) => {
      const j = queueJobs.get(id);
      return j && { data: j.data, progress: 0, attemptsMade: 0, timestamp: j.data.submitted_at, returnvalue: null, processedOn: undefined, finishedOn: undefined };
    },
    toKey: (type: string) => `bull:generation:${type}`,
    getBackend: () => ({ client: Promise.resolve(redis) }),
  }) as unknown as Queue<GenerationJobData, GenerationResult>;
  const env = {
    JOB_ATTEMPTS: 3, JOB_BACKOFF_MS: 10, RESULT_TTL_SECONDS: 60, PUBLIC_BASE_URL: undefined, replicasToAck: opts.replicasToAck ?? 0, REDIS_REPLICA_ACK_TIMEOUT_MS: 5,
  } as unknown as Env;
  const lifecycle = new JobLifecycle(env, new RedisKeys('t'), store, bus, enqueuer, states, redis, new GenerationQueues('m', new Map([['m', queue]]), []));
  const transitions: JobTransition[] = [];
  lifecycle.onTransition((t) => transitions.push(t));
  /** An event as the bus would deliver it from another process. */
  const deliver = (e: JobEvent) => listeners.get(e.job_id)?.(e);
  return {
    lifecycle, log, records, flags, values, queueJobs, events, cancels, webhooks, transitions, deliver,
    recordReads: () => recordReads, placeReads: () => placeReads,
  };
}

const data = (o: Partial<GenerationJobData> = {}): GenerationJobData => ({
  params: { model: 'm', prompt: 'p', negative_prompt: '', width: 256, height: 256, num_inference_steps: 8, guidance_scale: 1, seed: 1 },
  submitted_at: Date.now() - 50,
  base_url: 'http://api.example',
  webhook: { url: 'https://hooks.example/x', events: ['running', 'succeeded', 'failed', 'canceled'] },
  ...o,
});

/** A BullMQ job as a worker holds it: progress updates land on the object, as BullMQ's do. */
function heldJob(id: string, d: GenerationJobData, attemptsMade = 0): GenerationJob {
  const job = {
    id, data: d, attemptsMade, opts: { attempts: 3 }, processedOn: Date.now(), progress: 0 as unknown,
    updateProgress: async (p: unknown) => void (job.progress = p),
  };
  return job as unknown as GenerationJob;
}

describe('JobLifecycle', () => {
  describe('acknowledged means replicated (REDIS_MIN_REPLICAS_ACK)', () => {
    it('a new job whose WAIT is short of replicas: replication_unconfirmed naming it, and the job stays queued', async () => {
      const h = harness({ replicasToAck: 1, replicasConfirming: 0 });
      await expect(h.lifecycle.enqueue('j1', data())).rejects.toMatchObject({ code: 'replication_unconfirmed', details: { job_id: 'j1', replicas_wanted: 1, replicas_confirmed: 0 } });
      expect(h.queueJobs.get('j1')?.state).toBe('waiting');
      const ok = harness({ replicasToAck: 1, replicasConfirming: 1 });
      await ok.lifecycle.enqueue('j2', data());
      expect(ok.log).toEqual(['wait']);
      const off = harness();
      await off.lifecycle.enqueue('j3', data());
      expect(off.log).toEqual([]);
    });

    it('a worker reports success only after the replicas have the record: no event, no webhook while unconfirmed', async () => {
      const h = harness({ replicasToAck: 1, replicasConfirming: 0 });
      const job = heldJob('j1', data());
      await expect(h.lifecycle.succeeded(job, 'http://c', { images: [] } as unknown as GenerationResult)).rejects.toMatchObject({ code: 'replication_unconfirmed' });
      expect(h.log.filter((l) => l === 'wait').length).toBeGreaterThan(1); // the worker tries again before giving up
      expect(h.log.some((l) => l.startsWith('event:') || l.startsWith('webhook:'))).toBe(false);
      const ok = harness({ replicasToAck: 1, replicasConfirming: 1 });
      await ok.lifecycle.succeeded(heldJob('j2', data()), 'http://c', { images: [] } as unknown as GenerationResult);
      expect(ok.log.slice(0, 3)).toEqual(['record:succeeded', 'wait', 'event:succeeded']);
    });
  });

  beforeAll(() => Logger.overrideLogger(false));

  it('a waiter wakes on the terminal event without reading again, and the job\'s queued snapshot is dropped', async () => {
    const h = harness();
    await h.lifecycle.enqueue('j1', data());
    const ended = h.lifecycle.waitForEnd('j1', 10_000);
    await new Promise((r) => setImmediate(r)); // the first look: not ended yet
    const reads = h.recordReads();
    const job = heldJob('j1', data());
    await h.lifecycle.succeeded(job, 'http://c', { images: [], seed: 1, model: 'm', prompt_id: 'p', comfyui: 'http://c', timings: { queue_ms: 1, execution_ms: 2, total_ms: 3 } });
    h.deliver(h.events[h.events.length - 1]); // the worker's end, as another process publishes it
    await expect(ended).resolves.toBe(true);
    expect(h.recordReads()).toBe(reads);
    // The snapshot kept for the submission's own answer would cost a look at the queue first: the record answers at once.
    const placeReadsBefore = h.placeReads();
    const read = await h.lifecycle.read('j1');
    expect(read).toMatchObject({ found: true, view: { status: 'succeeded' } });
    expect(h.placeReads()).toBe(placeReadsBefore);
  });

  it('enqueue puts the job on the queue and tells the process it is queued', async () => {
    const h = harness();
    await h.lifecycle.enqueue('j1', data());
    expect(h.queueJobs.get('j1')?.state).toBe('waiting');
    expect(h.transitions).toEqual([expect.objectContaining({ kind: 'queued', jobId: 'j1', model: 'm' })]);
    expect(await h.lifecycle.waitingCount()).toBe(1);
  });

  it('lists an owner’s jobs newest first, a page at a time, and no one else’s', async () => {
    const h = harness();
    const t = Date.now();
    // As JobsService.submit does: the add, and the owner's list beside it.
    const submit = async (id: string, owner: string, submitted_at: number) => {
      const d = { ...data(), owner, submitted_at };
      await Promise.all([h.lifecycle.enqueue(id, d), h.lifecycle.addToOwnerList(id, d)]);
    };
    // Older than the retention (60 s here): trimmed from the list by the next write.
    await submit('a0', 'key-a', t - 120_000);
    await submit('a1', 'key-a', t - 3_000);
    await submit('b1', 'key-b', t - 2_500);
    await submit('a2', 'key-a', t - 2_000);
    await submit('a3', 'key-a', t - 1_000);
    // An entry whose job never made it into the queue (the add failed) is left out.
    await h.lifecycle.addToOwnerList('ghost', { ...data(), owner: 'key-a', submitted_at: t - 500 });
    const first = await h.lifecycle.listForOwner('key-a', 2);
    // The ghost is skipped and the page filled from below it.
    expect(first.views.map((v) => v.id)).toEqual(['a3', 'a2']);
    expect(first.next).toEqual({ at: t - 2_000, id: 'a2' });
    const second = await h.lifecycle.listForOwner('key-a', 2, first.next ?? undefined);
    expect(second).toMatchObject({ views: [expect.objectContaining({ id: 'a1' })], next: null });
    // Jobs of one millisecond: a page boundary between them skips none and repeats none.
    for (const id of ['m1', 'm2', 'm3']) await submit(id, 'key-m', t - 100);
    const p1 = await h.lifecycle.listForOwner('key-m', 2);
    const p2 = await h.lifecycle.listForOwner('key-m', 2, p1.next ?? undefined);
    expect([...p1.views, ...p2.views].map((v) => v.id)).toEqual(['m3', 'm2', 'm1']);
    expect(p2.next).toBeNull();
    expect((await h.lifecycle.listForOwner('key-b', 10)).views.map((v) => v.id)).toEqual(['b1']);
    expect((await h.lifecycle.listForOwner(undefined, 10)).views).toEqual([]);
  });

  it('cancel of a queued job removes it, then writes its record, then the event, then the webhook — no worker is asked', async () => {
    const h = harness();
    await h.lifecycle.enqueue('j1', data());
    const read = await h.lifecycle.read('j1');
    if (!read.found) throw new Error('not found');
    expect(read.view).toMatchObject({ status: 'queued', queue_position: 0, started_at: null });
    expect(await h.lifecycle.cancel(read.view)).toBe(true);
    expect(h.queueJobs.has('j1')).toBe(false);
    expect(h.log).toEqual(['record:canceled', 'event:canceled', 'webhook:canceled']);
    const rec = h.records.get('j1') as unknown as TerminalRecord;
    expect(isTerminalRecord(rec)).toBe(true);
    expect(rec).toMatchObject({ status: 'canceled', started_at: null, progress: null, error: { code: 'canceled' } });
    expect(h.cancels).toEqual([]);
    expect(h.transitions.at(-1)).toMatchObject({ kind: 'ended', status: 'canceled', comfyui: undefined });
    const after = await h.lifecycle.read('j1');
    expect(after.found && after.view).toMatchObject({ status: 'canceled', finished_at: rec.finished_at });
    // The webhook payload is the rendered resource with absolute links from the submission's origin.
    expect(h.webhooks[0].resource.links.self).toBe('http://api.example/api/v1/images/jobs/j1');
  });

  it('cancel of a running job flags it and asks its worker; nothing is recorded by the API', async () => {
    const h = harness();
    h.queueJobs.set('j2', { state: 'active', data: data() });
    const view = { id: 'j2', status: 'running' as const, data: data(), attempts: 1 } as Parameters<JobLifecycle['cancel']>[0];
    expect(await h.lifecycle.cancel(view)).toBe(false);
    expect(h.flags.has('t:canceled:j2')).toBe(true);
    expect(h.cancels).toEqual(['j2']);
    expect(h.records.size).toBe(0);
    expect(await h.lifecycle.isCancelRequested('j2')).toBe(true);
  });

  it('a worker’s run: prompt on record (held), running at ComfyUI’s start (start time, event, webhook), steps, then succeeded with the record before the event', async () => {
    const h = harness();
    const job = heldJob('j3', data());
    expect(h.lifecycle.previousAttempt(job)).toBeUndefined();
    await h.lifecycle.promptSubmitting(job, 'p-1', 'http://gpu0', { held: true });
    // Submitted, not started: no start time, and nothing said yet (the job is still queued).
    expect(job.progress).toMatchObject({ step: 0, prompt_id: 'p-1', held: true });
    expect((job.progress as { started_at?: number }).started_at).toBeUndefined();
    expect(h.log).toEqual([]);
    await h.lifecycle.started(job, 'http://gpu0');
    expect(job.progress).toMatchObject({ prompt_id: 'p-1', started_at: expect.any(Number) });
    expect((job.progress as { held?: boolean }).held).toBeUndefined();
    h.lifecycle.stepped(job, 'http://gpu0', 3, 8);
    await new Promise((r) => setImmediate(r));
    expect(job.progress).toMatchObject({ step: 3, total_steps: 8, prompt_id: 'p-1', comfyui: 'http://gpu0' });
    const result = { images: [], seed: 1, model: 'm', prompt_id: 'p-1', comfyui: 'http://gpu0', timings: { queue_ms: 1, execution_ms: 2, total_ms: 3 } };
    await h.lifecycle.succeeded(job, 'http://gpu0', result);
    expect(h.log).toEqual(['event:running', 'webhook:running', 'event:progress', 'record:succeeded', 'event:succeeded', 'webhook:succeeded']);
    expect(h.records.get('j3')).toMatchObject({ status: 'succeeded', attempts: 1, progress: { step: 8, total_steps: 8 }, result });
    expect(h.transitions.map((t) => t.kind)).toEqual(['running', 'progress', 'ended']);
  });

  it('a retry re-attaches: previousAttempt() gives the prompt the earlier attempt recorded; a running one keeps its start', async () => {
    const h = harness();
    const job = heldJob('j4', data(), 1);
    (job as unknown as { progress: unknown }).progress = { step: 5, total_steps: 8, fraction: 0.6, prompt_id: 'p-old', comfyui: 'http://gpu0', started_at: 1 };
    expect(h.lifecycle.previousAttempt(job)).toMatchObject({ prompt_id: 'p-old', comfyui: 'http://gpu0' });
    await h.lifecycle.promptSubmitting(job, 'p-old', 'http://gpu0', { running: true });
    expect(job.progress).toMatchObject({ step: 5, prompt_id: 'p-old', started_at: 1 });
    await h.lifecycle.promptSubmitting(job, 'p-new', 'http://gpu0', { held: true });
    expect(job.progress).toMatchObject({ step: 0, prompt_id: 'p-new', held: true });
  });

  it('a held job canceled before its prompt started ends canceled with no start time', async () => {
    const h = harness();
    const job = heldJob('j4b', data());
    await h.lifecycle.promptSubmitting(job, 'p-1', 'http://gpu0', { held: true });
    await h.lifecycle.canceled(job, 'http://gpu0', { started: false });
    expect(h.records.get('j4b')).toMatchObject({ status: 'canceled', started_at: null, progress: null, error: { code: 'canceled' } });
    expect(h.transitions.map((t) => t.kind)).toEqual(['ended']);
  });

  it('a canceled running job keeps the step it reached; forgetting the prompt keeps it too', async () => {
    const h = harness();
    const job = heldJob('j5', data());
    await h.lifecycle.promptSubmitting(job, 'p-1', 'http://gpu0', { held: true });
    await h.lifecycle.started(job, 'http://gpu0');
    h.lifecycle.stepped(job, 'http://gpu0', 2, 8);
    await h.lifecycle.forgetPrompt(job);
    expect(job.progress).toMatchObject({ step: 2, prompt_id: undefined });
    await h.lifecycle.canceled(job, 'http://gpu0');
    expect(h.records.get('j5')).toMatchObject({ status: 'canceled', progress: { step: 2, total_steps: 8 }, error: { code: 'canceled' } });
  });

  it('a job BullMQ gave up on gets one failed record; one a processor ended is left alone', async () => {
    const h = harness();
    const stalled = Object.assign(heldJob('j6', data(), 2), { failedReason: 'job stalled more than allowable limit' });
    await h.lifecycle.failedByQueue(stalled, 'http://gpu0');
    expect(h.records.get('j6')).toMatchObject({ status: 'failed', error: { code: 'job_stalled' }, attempts: 2 });
    const ended = heldJob('j7', data());
    await h.lifecycle.failed(ended, 'http://gpu0', { code: 'comfyui_rejected', message: 'bad graph' });
    h.log.length = 0;
    await h.lifecycle.failedByQueue(Object.assign(ended, { failedReason: '[comfyui_rejected] bad graph' }), 'http://gpu0');
    expect(h.log).toEqual([]);
  });

  it('handBack moves the held job back (wait for a shutdown, delayed while ComfyUI is down) and tells watchers', async () => {
    const h = harness();
    const moves: string[] = [];
    const job = Object.assign(heldJob('j9', data()), {
      moveToWait: async (token: string) => void moves.push(`wait:${token}`),
      moveToDelayed: async (at: number, token: string) => void moves.push(`delayed:${token}:${at > Date.now() ? 'later' : 'now'}`),
    });
    await h.lifecycle.handBack(job, 'tok', 'http://gpu0', 'shutdown');
    await h.lifecycle.handBack(job, 'tok', 'http://gpu0', 'comfyui_down', 2_000);
    expect(moves).toEqual(['wait:tok', 'delayed:tok:later']);
    expect(h.transitions.map((t) => t.kind === 'requeued' && t.reason)).toEqual(['shutdown', 'comfyui_down']);
    expect(h.records.size).toBe(0);
  });

  it('requeued tells watchers the job is queued again', async () => {
    const h = harness();
    await h.lifecycle.requeued(heldJob('j8', data()), 'http://gpu0', 'retry', 'prompt_lost');
    expect(h.events).toEqual([expect.objectContaining({ type: 'status', status: 'queued', job_id: 'j8' })]);
    expect(h.transitions).toEqual([expect.objectContaining({ kind: 'requeued', reason: 'retry', code: 'prompt_lost' })]);
  });

  describe('result cache', () => {
    const result: GenerationResult = {
      images: [{ index: 0, key: 'src/0', content_type: 'image/webp', bytes: 10, sha256: 'ab', width: 256, height: 256 }],
      seed: 1, model: 'm', prompt_id: 'p-1', comfyui: 'http://gpu0', timings: { queue_ms: 5, execution_ms: 900, total_ms: 950 },
    };

    it('indexes a succeeded job under its cache key until its images may be gone', async () => {
      const h = harness();
      const job = heldJob('src', data({ cache_key: 'k1' }));
      await h.lifecycle.started(job, 'http://gpu0');
      const startedAt = (job.progress as { started_at: number }).started_at;
      await h.lifecycle.succeeded(job, 'http://gpu0', result);
      const entry = h.values.get('t:rcache:k1')!;
      expect(JSON.parse(entry.value)).toEqual({ job_id: 'src', expires_at: startedAt + 60_000 });
      expect(entry.px).toBeLessThanOrEqual(60_000);
      // Without a key (no seed, or the cache off) nothing is indexed.
      await h.lifecycle.succeeded(heldJob('plain', data()), 'http://gpu0', result);
      expect([...h.values.keys()]).toEqual(['t:rcache:k1']);
    });

    it('answers a new job from the indexed one: succeeded at once, cached, the same images, expiring with them', async () => {
      const h = harness();
      const src = heldJob('src', data({ cache_key: 'k1', webhook: undefined }));
      await h.lifecycle.started(src, 'http://gpu0');
      await h.lifecycle.succeeded(src, 'http://gpu0', result);
      const source = await h.lifecycle.cachedResult('k1');
      expect(source).toMatchObject({ id: 'src', status: 'succeeded' });
      h.log.length = 0;
      h.transitions.length = 0;
      await h.lifecycle.completeFromCache('copy', data({ cache_key: 'k1' }), source!);
      expect(h.log).toEqual(['record:succeeded', 'event:succeeded', 'webhook:succeeded']);
      expect(h.transitions.map((t) => t.kind)).toEqual(['queued', 'ended']);
      const record = h.records.get('copy') as unknown as TerminalRecord;
      expect(record).toMatchObject({ status: 'succeeded', cached: true, attempts: 0, result: { images: result.images, source_job_id: 'src' } });
      expect(record.expires_at).toBe(JSON.parse(h.values.get('t:rcache:k1')!.value).expires_at);
      const read = await h.lifecycle.read('copy');
      expect(read).toMatchObject({ found: true, view: { status: 'succeeded', cached: true } });
      // Past the images' life the cached job is expired, whatever the store still holds.
      const spy = jest.spyOn(Date, 'now').mockReturnValue(record.expires_at! + 1);
      try {
        expect(await h.lifecycle.read('copy')).toEqual({ found: false, expired: true });
        expect(await h.lifecycle.cachedResult('k1')).toBeUndefined();
      } finally {
        spy.mockRestore();
      }
      expect(h.values.has('t:rcache:k1')).toBe(false);
    });

    it('a cache entry whose job is gone or did not succeed is dropped', async () => {
      const h = harness();
      h.values.set('t:rcache:k2', { value: JSON.stringify({ job_id: 'gone', expires_at: Date.now() + 60_000 }) });
      expect(await h.lifecycle.cachedResult('k2')).toBeUndefined();
      expect(h.values.has('t:rcache:k2')).toBe(false);
      await h.lifecycle.failed(heldJob('bad', data()), 'http://gpu0', { code: 'comfyui_rejected', message: 'x' });
      h.values.set('t:rcache:k3', { value: JSON.stringify({ job_id: 'bad', expires_at: Date.now() + 60_000 }) });
      expect(await h.lifecycle.cachedResult('k3')).toBeUndefined();
      h.values.set('t:rcache:k4', { value: 'not json' });
      expect(await h.lifecycle.cachedResult('k4')).toBeUndefined();
    });
  });
});
