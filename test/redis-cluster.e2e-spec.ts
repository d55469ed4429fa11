import type { LookupAddress } from 'node:dns';
import request from 'supertest';
import { EnvValidationError, loadEnv } from '@app/config';
import { WEBHOOK_DNS_LOOKUP, WEBHOOK_HOST_RESOLVER, type HostResolver, type LookupFunction } from '@app/webhooks';
import { startReceiver, type LocalReceiver } from '@app/webhooks/testing/local-receiver';
import { readSse } from './support/sse';
import { TestCluster } from './support/redis-server';
import { Stack, waitFor } from './support/stack';

// The main flows of the service on a three-master Redis Cluster (REDIS_CLUSTER_NODES): every client
// is a Cluster client, every key of the deployment shares the prefix's {hash tag}.

const SECRET = `whsec_${Buffer.from('fictures-cluster-webhook-signing!').toString('base64')}`;
const RECEIVER_HOST = 'receiver.test';
const small = (extra: object = {}) => ({ prompt: 'a lighthouse on a cluster', width: 256, height: 256, ...extra });

type Job = { id: string; status: string; images: { url: string }[]; error: { code: string } | null };

/** receiver.test is 127.0.0.1, for the API's check and the worker's connect alike. */
const resolver: HostResolver = async (host) => {
  if (host === RECEIVER_HOST) return ['127.0.0.1'];
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
};
const lookup: LookupFunction = (hostname, options, callback) => {
  setImmediate(() => {
    if (hostname !== RECEIVER_HOST) return callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), options.all ? [] : '', undefined);
    const all: LookupAddress[] = [{ address: '127.0.0.1', family: 4 }];
    if (options.all) callback(null, all);
    else callback(null, all[0].address, all[0].family);
  });
};

describe('on a three-master Redis Cluster', () => {
  let cluster: TestCluster;
  let stack: Stack;
  let receiver: LocalReceiver;

  const job = async (id: string, url = stack.url) => (await request(url).get(`/api/v1/images/jobs/${id}`).expect(200)).body as Job;
  const until = (id: string, pred: (j: Job) => boolean, what: string) => waitFor(async () => {
    const j = await job(id);
    return pred(j) ? j : undefined;
  }, 30_000, what);
  const submit = async (body: object = small()) => (await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202)).body as Job;

  beforeAll(async () => {
    cluster = await TestCluster.start(3);
    receiver = await startReceiver();
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 150 },
      env: { ...cluster.env, WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOWED_HOSTS: RECEIVER_HOST, WEBHOOK_HTTPS_ONLY: 'false' },
      overrides: { api: [{ provide: WEBHOOK_HOST_RESOLVER, useValue: resolver }], worker: [{ provide: WEBHOOK_DNS_LOOKUP, useValue: lookup }] },
    });
  }, 90_000);
  afterAll(async () => {
    await stack?.close();
    await receiver?.close();
    await cluster?.destroy();
  });

  it('refuses a queue prefix without a {hash tag} on Cluster, in one line naming the fix', () => {
    let error: unknown;
    try {
      loadEnv({ ...cluster.env, QUEUE_PREFIX: 'fictures' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EnvValidationError);
    expect((error as Error).message).toMatch(/QUEUE_PREFIX="fictures" has no \{hash tag\}.*QUEUE_PREFIX=\{fictures\}/);
    expect((error as Error).message).not.toContain('\n');
    expect(() => loadEnv({ ...cluster.env, QUEUE_PREFIX: '{fictures}' })).not.toThrow();
  });

  it('is ready: the workers check lists the heartbeats from every master', async () => {
    const res = await request(stack.url).get('/health/ready').expect(200);
    expect(res.body.status).toBe('ok');
  });

  it('answers a synchronous generation with the image', async () => {
    const res = await request(stack.url).post('/api/v1/images/generate').send(small()).expect(200);
    expect(res.body.image_url).toMatch(/^data:image\/png;base64,/);
    expect(res.body.job_id).toEqual(expect.any(String));
  });

  it('runs an asynchronous job, streaming its events to another API instance over SSE, and serves its image', async () => {
    const other = await stack.addApi();
    const created = await submit(small({ num_inference_steps: 6 }));
    const { status, events } = await readSse(`${other.url}/api/v1/images/jobs/${created.id}/events`, 30_000);
    expect(status).toBe(200);
    const steps = events.filter((e) => e.event === 'progress').map((e) => (e.data as { step: number }).step);
    expect(steps.length).toBeGreaterThan(0);
    const last = events[events.length - 1];
    expect(last.event).toBe('job');
    expect((last.data as Job).status).toBe('succeeded');
    const done = await job(created.id, other.url);
    const image = await request(other.url).get(new URL(done.images[0].url).pathname).expect(200);
    expect(image.headers['content-type']).toBe('image/png');
  });

  it('cancels a queued job and a running one (the cancel reaches the worker over pub/sub)', async () => {
    const running = await submit(small({ num_inference_steps: 16 }));
    await until(running.id, (j) => j.status === 'running', 'the long job to run');
    const queued = await submit(small());
    expect((await request(stack.url).delete(`/api/v1/images/jobs/${queued.id}`).expect(200)).body.status).toBe('canceled');
    await request(stack.url).delete(`/api/v1/images/jobs/${running.id}`).expect(200);
    const ended = await until(running.id, (j) => j.status === 'canceled', 'the running job to be canceled');
    expect(ended.error?.code).toBe('canceled');
    expect((await job(queued.id)).status).toBe('canceled');
  });

  it('delivers a signed webhook for a finished job', async () => {
    const created = await submit(small({ webhook_url: `http://${RECEIVER_HOST}:${receiver.port}/hook` }));
    await waitFor(async () => (receiver.requests.some((r) => String(r.headers['webhook-id']) === `msg_${created.id}_succeeded`) ? true : undefined), 30_000, 'the delivery');
    const req = receiver.requests.find((r) => String(r.headers['webhook-id']) === `msg_${created.id}_succeeded`);
    expect(String(req?.headers['webhook-signature'])).toMatch(/^v1,/);
    expect(JSON.parse(String(req?.body)).data.status).toBe('succeeded');
  });

  it('Idempotency-Key: concurrent duplicates make one job; another body is 422', async () => {
    const key = `cluster-${Date.now()}`;
    const answers = await Promise.all(Array.from({ length: 6 }, () => request(stack.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(small())));
    expect(answers.map((r) => r.status)).toEqual(Array(6).fill(202));
    expect(new Set(answers.map((r) => r.body.id)).size).toBe(1);
    const other = await request(stack.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send(small({ prompt: 'something else' }));
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    await until(answers[0].body.id, (j) => j.status === 'succeeded', 'the idempotent job');
  });

  it('rate-limits submissions with the Redis counters shared by the API instances', async () => {
    const limited = await Stack.start({ comfyui: 0, worker: false, env: { ...cluster.env, RATE_LIMIT_SUBMIT_PER_MINUTE: '2' } });
    try {
      const second = await limited.addApi();
      const post = (url: string) => request(url).post('/api/v1/images/jobs').send(small({ model: 'nope' }));
      // Validation comes after the rate limit: unknown model = 400 and no job, but the request counts.
      expect((await post(limited.url)).status).toBe(400);
      expect((await post(second.url)).status).toBe(400);
      const third = await post(limited.url);
      expect(third.status).toBe(429);
      expect(third.body.error.code).toBe('rate_limited');
      expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await limited.close();
    }
  });

  it('keeps every key of the deployment on one master (the {hash tag} slot)', async () => {
    const client = cluster.client();
    try {
      await client.ping(); // connected: the masters are known
      const holders: number[] = [];
      for (const node of client.nodes('master')) {
        await node.ping();
        const [, keys] = await node.scan('0', 'MATCH', `${stack.env.QUEUE_PREFIX}:*`, 'COUNT', 10_000);
        if (keys.length) holders.push(node.options.port as number);
      }
      expect(holders).toHaveLength(1);
    } finally {
      client.disconnect();
    }
  });
});
