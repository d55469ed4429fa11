import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import request from 'supertest';
import { QueueName } from '@app/queue';
import { SentinelGroup } from './support/redis-server';
import { Stack } from './support/stack';

// REDIS_MIN_REPLICAS_ACK on a Sentinel group (primary + replica): a 202 is sent only once WAIT saw
// the job on the replica; a replica that cannot confirm turns the 202 into a 503 the client retries
// with its Idempotency-Key. Figures: the submit latency with and without the WAIT, side by side.
const body = { prompt: 'a replicated lighthouse', width: 256, height: 256 };
const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

describe('acknowledged means replicated (REDIS_MIN_REPLICAS_ACK)', () => {
  let group: SentinelGroup;
  let acked: Stack;
  let unacked: Stack;
  let replica: Redis;
  let replicaPid: number;

  beforeAll(async () => {
    group = await SentinelGroup.start();
    // No GPU needed: the jobs only have to be accepted (QUEUE_UNSERVED_MODELS queues them anyway).
    const env = { ...group.env, QUEUE_UNSERVED_MODELS: 'true', QUOTA_MAX_JOBS_PER_KEY: '100000', QUEUE_MAX_WAITING: '100000' };
    acked = await Stack.start({ comfyui: 0, worker: false, env: { ...env, REDIS_MIN_REPLICAS_ACK: '1' } });
    unacked = await Stack.start({ comfyui: 0, worker: false, env: { ...env, REDIS_MIN_REPLICAS_ACK: '0' } });
    const primary = await group.primary();
    const server = group.servers.find((s) => s !== primary);
    if (!server?.child?.pid) throw new Error('no replica running');
    replicaPid = server.child.pid;
    replica = new Redis(server.url, { maxRetriesPerRequest: 1 });
  }, 60_000);
  afterAll(async () => {
    replica?.disconnect();
    await acked?.close();
    await unacked?.close();
    await group?.destroy();
  });

  it('answers 202 only once the replica holds the job', async () => {
    for (let i = 0; i < 20; i++) {
      const res = await request(acked.url).post('/api/v1/images/jobs').send(body).expect(202);
      // Read from the replica itself, right after the 202: WAIT already saw it there.
      expect(await replica.exists(`${acked.env.QUEUE_PREFIX}:${QueueName.Generation}:${res.body.id}`)).toBe(1);
    }
  });

  it('a replica that cannot confirm: 503 replication_unconfirmed with Retry-After; the retry with the same Idempotency-Key answers the same job', async () => {
    const key = randomUUID();
    process.kill(replicaPid, 'SIGSTOP');
    let refused: request.Response;
    try {
      refused = await request(acked.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body);
    } finally {
      process.kill(replicaPid, 'SIGCONT');
    }
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('replication_unconfirmed');
    expect(refused.headers['retry-after']).toBe('1');
    const jobId = refused.body.error.details.job_id as string;
    expect(jobId).toEqual(expect.any(String));
    const retried = await request(acked.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body).expect(202);
    expect(retried.body.id).toBe(jobId);
    expect(retried.headers['idempotent-replayed']).toBe('true');
    // One job, not two: the refused submission was never duplicated.
    expect((await request(acked.url).get(`/api/v1/images/jobs/${jobId}`).expect(200)).body.status).toBe('queued');
  });

  it('a replay is confirmed on the replica too: while it still cannot confirm, the retry is 503 as well, then 202 with the same job', async () => {
    const key = randomUUID();
    process.kill(replicaPid, 'SIGSTOP');
    let first: request.Response;
    let replayed: request.Response;
    try {
      first = await request(acked.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body);
      // The job exists on the primary, but nothing says the replica has it: no 202 for it yet.
      replayed = await request(acked.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body);
    } finally {
      process.kill(replicaPid, 'SIGCONT');
    }
    expect(first.status).toBe(503);
    const jobId = first.body.error.details.job_id as string;
    expect({ status: replayed.status, code: replayed.body.error?.code, job_id: replayed.body.error?.details?.job_id, retryAfter: replayed.headers['retry-after'] })
      .toEqual({ status: 503, code: 'replication_unconfirmed', job_id: jobId, retryAfter: '1' });
    const later = await request(acked.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(body).expect(202);
    expect(later.body.id).toBe(jobId);
    expect(later.headers['idempotent-replayed']).toBe('true');
    expect(await replica.exists(`${acked.env.QUEUE_PREFIX}:${QueueName.Generation}:${jobId}`)).toBe(1);
  });

  it('prints the submit latency with and without the WAIT (same group, same moment)', async () => {
    const lat: Record<'ack1' | 'ack0', number[]> = { ack1: [], ack0: [] };
    for (let i = 0; i < 100; i++) {
      for (const [name, stack] of [['ack1', acked], ['ack0', unacked]] as const) {
        const t = process.hrtime.bigint();
        await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);
        lat[name].push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }
    const line = (xs: number[]) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p95 ${percentile(xs, 95).toFixed(1)} ms`;
    process.stdout.write(`submit latency over 100 submissions each (loopback, shared 2-core machine): REDIS_MIN_REPLICAS_ACK=1 ${line(lat.ack1)}; =0 ${line(lat.ack0)}; ` +
      `added p50 ${(percentile(lat.ack1, 50) - percentile(lat.ack0, 50)).toFixed(1)} ms\n`);
    expect(lat.ack1).toHaveLength(100);
  });
});
