import type { LookupAddress } from 'node:dns';
import { Queue } from 'bullmq';
import { Webhook } from 'standardwebhooks';
import request from 'supertest';
import { QueueName, type JobResource, type WebhookEventState } from '@app/queue';
import {
  INVALID_WEBHOOK_URL_MESSAGE, WEBHOOK_DNS_LOOKUP, WEBHOOK_HOST_RESOLVER, type HostResolver, type LookupFunction, type WebhookPayload,
} from '@app/webhooks';
import { startReceiver, type LocalReceiver, type ReceivedRequest, type ReceiverHandler } from '@app/webhooks/testing/local-receiver';
import { REFUSED_WEBHOOK_URLS } from '@app/webhooks/testing/ssrf-cases';
import { Stack, waitFor } from './support/stack';

const SECRET = `whsec_${Buffer.from('fictures-e2e-webhook-signing-key!').toString('base64')}`;
const PUBLIC_V4 = '93.184.216.34';
/** Allowlisted, and resolved to 127.0.0.1 by the stub: how the tests reach their local receivers. */
const RECEIVER_HOST = 'receiver.test';

/**
 * Stub DNS shared by the API (registration check) and the worker (connect-time lookup). It never
 * lets the worker connect to a non-loopback address: a public answer can only go to the API.
 */
class StubDns {
  readonly apiCalls: string[] = [];
  readonly workerCalls: { host: string; answer: string[] }[] = [];
  readonly violations: string[] = [];
  private rebindAnswers = 0;

  private answer(host: string): string[] | undefined {
    switch (host) {
      case RECEIVER_HOST:
        return ['127.0.0.1'];
      // DNS rebinding: a public address the first time (at submission), loopback afterwards.
      case 'rebind.test':
        return this.rebindAnswers++ === 0 ? [PUBLIC_V4] : ['127.0.0.1'];
      case 'private.test':
        return ['10.0.0.7'];
      case 'multi.test':
        return [PUBLIC_V4, '127.0.0.1'];
      case 'public.test':
        return [PUBLIC_V4];
      default:
        return undefined;
    }
  }

  readonly resolver: HostResolver = async (host) => {
    this.apiCalls.push(host);
    const list = this.answer(host);
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return list;
  };

  readonly lookup: LookupFunction = (hostname, options, callback) => {
    let list = this.answer(hostname);
    if (list) this.workerCalls.push({ host: hostname, answer: list });
    if (list && !list.every((a) => a === '127.0.0.1')) {
      this.violations.push(`${hostname} → ${list.join(',')}`);
      list = undefined;
    }
    setImmediate(() => {
      if (!list) {
        const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
        callback(err, options.all ? [] : '', undefined);
        return;
      }
      const all: LookupAddress[] = list.map((address) => ({ address, family: 4 }));
      if (options.all) callback(null, all);
      else callback(null, all[0].address, all[0].family);
    });
  };
}

const header = (r: ReceivedRequest, name: string) => String(r.headers[name] ?? '');

/** Verifies one delivery exactly as a receiver would, and returns its payload. */
function verified(r: ReceivedRequest): WebhookPayload {
  const headers = { 'webhook-id': header(r, 'webhook-id'), 'webhook-timestamp': header(r, 'webhook-timestamp'), 'webhook-signature': header(r, 'webhook-signature') };
  return new Webhook(SECRET).verify(r.body.toString('utf8'), headers) as WebhookPayload;
}

const hookUrl = (r: LocalReceiver, path = '/hook') => `http://${RECEIVER_HOST}:${r.port}${path}`;

async function submit(stack: Stack, extra: Record<string, unknown>, expectStatus = 202): Promise<request.Response> {
  return request(stack.url)
    .post('/api/v1/images/jobs')
    .send({ prompt: 'a lighthouse at dusk', width: 256, height: 256, ...extra })
    .expect(expectStatus);
}

async function job(stack: Stack, id: string): Promise<JobResource> {
  return (await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200)).body as JobResource;
}

/** Waits until the job's delivery state for `event` satisfies `ok`. */
async function delivery(stack: Stack, id: string, event: string, ok: (s: WebhookEventState) => boolean, what: string): Promise<WebhookEventState> {
  return waitFor(
    async () => {
      const s = (await job(stack, id)).webhook?.deliveries[event];
      return s && ok(s) ? s : undefined;
    },
    15_000,
    what,
  );
}

/** The state of the delivery job in BullMQ: failed/completed mean no attempt will follow. */
async function deliveryJob(stack: Stack, id: string, event: string) {
  const q = new Queue(QueueName.Webhook, { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX });
  try {
    // State first, then the job: fields read before a move to failed would be older than the state.
    const state = await q.getJobState(`wh-${id}-${event}`);
    const j = await q.getJob(`wh-${id}-${event}`);
    return j ? { state, attemptsMade: j.attemptsMade, attemptsStarted: j.attemptsStarted } : undefined;
  } finally {
    await q.close();
  }
}

const finalDeliveryJob = (stack: Stack, id: string, event: string, state: 'completed' | 'failed') =>
  waitFor(async () => {
    const j = await deliveryJob(stack, id, event);
    return j?.state === state ? j : undefined;
  }, 15_000, `delivery job ${state}`);

describe('webhooks end to end (worker → webhook queue → receiver)', () => {
  const dns = new StubDns();
  let stack: Stack;
  const receivers: LocalReceiver[] = [];
  const receiver = async (handler?: ReceiverHandler) => {
    const r = await startReceiver(handler);
    receivers.push(r);
    return r;
  };

  beforeAll(async () => {
    stack = await Stack.start({
      comfyui: 1,
      env: {
        WEBHOOK_SECRET: SECRET,
        WEBHOOK_ALLOWED_HOSTS: RECEIVER_HOST,
        // Plain http so the address rules themselves are what refuses the S1 list.
        WEBHOOK_HTTPS_ONLY: 'false',
        // Long enough for the retry test's receiver to hold an answer into the next second.
        WEBHOOK_TIMEOUT_MS: '1500',
        WEBHOOK_RETRY_SCHEDULE_MS: '100,200,300',
      },
      overrides: {
        api: [{ provide: WEBHOOK_HOST_RESOLVER, useValue: dns.resolver }],
        worker: [{ provide: WEBHOOK_DNS_LOOKUP, useValue: dns.lookup }],
      },
    });
  });
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await stack?.close();
  });
  afterEach(() => expect(dns.violations).toEqual([]));

  it('delivers a signed succeeded event: standardwebhooks verifies it; links are absolute; state is visible', async () => {
    const r = await receiver();
    const created = await submit(stack, { webhook_url: hookUrl(r, '/hook?token=s3cret&x=1') });
    const id = created.body.id as string;
    expect(created.body.webhook).toMatchObject({
      url: `http://${RECEIVER_HOST}:${r.port}/hook?token=REDACTED&x=REDACTED`,
      events: ['succeeded', 'failed', 'canceled'],
    });

    await waitFor(async () => (r.requests.length > 0 ? true : undefined), 15_000, 'the delivery');
    const [req] = r.requests;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hook?token=s3cret&x=1');
    expect(header(req, 'content-type')).toBe('application/json');
    expect(header(req, 'webhook-id')).toBe(`msg_${id}_succeeded`);
    expect(header(req, 'webhook-timestamp')).toMatch(/^\d{10}$/);
    expect(Math.abs(Number(header(req, 'webhook-timestamp')) - Date.now() / 1000)).toBeLessThan(60);
    expect(header(req, 'webhook-signature')).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);

    const payload = verified(req);
    expect(payload.type).toBe('image.job.succeeded');
    expect(payload.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(payload.timestamp).toBe(payload.data.finished_at);
    expect(payload.data).toMatchObject({ id, status: 'succeeded', error: null });
    expect(payload.data.images).toHaveLength(1);
    expect(payload.data.images[0].url).toBe(`${stack.url}/api/v1/images/jobs/${id}/images/0`);
    expect(req.body.length).toBeLessThan(20 * 1024);
    expect(req.body.toString()).not.toMatch(/base64|data:image/);
    const img = await request(payload.data.images[0].url).get('').buffer(true).expect(200);
    expect(img.headers['content-type']).toBe('image/png');

    // A receiver's verification fails on any change to the signed bytes.
    const tampered = { ...req, body: Buffer.from(req.body.toString().replace('succeeded', 'succeedeD')) };
    expect(() => verified(tampered)).toThrow();

    const state = await delivery(stack, id, 'succeeded', (s) => s.status === 'delivered', 'delivered state');
    expect(state).toMatchObject({ attempts: 1, last_status_code: 200, last_error: null });
    expect(Date.parse(state.delivered_at as string)).not.toBeNaN();
    await finalDeliveryJob(stack, id, 'succeeded', 'completed');
    expect(r.requests).toHaveLength(1);

    // After BullMQ prunes the generation job, the kept record still shows the delivery.
    const q = new Queue(QueueName.Generation, { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX });
    await q.remove(id);
    await q.close();
    const kept = await job(stack, id);
    expect(kept.status).toBe('succeeded');
    expect(kept.webhook?.deliveries.succeeded).toMatchObject({ status: 'delivered', attempts: 1, last_status_code: 200 });
    expect(kept.webhook?.url).toContain('token=REDACTED');
  });

  it('sends running when asked, each event with its own webhook-id', async () => {
    const r = await receiver();
    const id = (await submit(stack, { webhook_url: hookUrl(r), webhook_events: ['running', 'succeeded'] })).body.id as string;
    await waitFor(async () => (r.requests.length >= 2 ? true : undefined), 15_000, 'two deliveries');
    const payloads = r.requests.map(verified);
    const byType = new Map(payloads.map((p, i) => [p.type, { p, id: header(r.requests[i], 'webhook-id') }]));
    expect([...byType.keys()].sort()).toEqual(['image.job.running', 'image.job.succeeded']);
    expect(byType.get('image.job.running')).toMatchObject({ id: `msg_${id}_running`, p: { data: { id, status: 'running', images: [] } } });
    expect(byType.get('image.job.succeeded')?.id).toBe(`msg_${id}_succeeded`);
    const resource = await job(stack, id);
    expect(resource.webhook?.events).toEqual(['running', 'succeeded']);
    await delivery(stack, id, 'running', (s) => s.status === 'delivered', 'running delivered');
    await delivery(stack, id, 'succeeded', (s) => s.status === 'delivered', 'succeeded delivered');
  });

  it('retries a failing receiver on the schedule: the third attempt delivers, same webhook-id, fresh timestamp and signature', async () => {
    let n = 0;
    const r = await receiver((_req, res) => {
      n += 1;
      if (n > 2) return void res.end('ok');
      // Answer once the clock has entered the next second, so the next attempt's timestamp must differ.
      const second = Math.floor(Date.now() / 1000);
      const tick = setInterval(() => {
        if (Math.floor(Date.now() / 1000) === second) return;
        clearInterval(tick);
        res.statusCode = 500;
        res.end('try later');
      }, 10);
    });
    const id = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    const state = await delivery(stack, id, 'succeeded', (s) => s.status === 'delivered', 'delivered after retries');
    expect(state).toMatchObject({ attempts: 3, last_status_code: 200, last_error: null });
    expect(r.requests).toHaveLength(3);
    const ids = r.requests.map((q) => header(q, 'webhook-id'));
    expect(new Set(ids)).toEqual(new Set([`msg_${id}_succeeded`]));
    const stamps = r.requests.map((q) => Number(header(q, 'webhook-timestamp')));
    expect(stamps[1]).toBeGreaterThan(stamps[0]);
    expect(stamps[2]).toBeGreaterThan(stamps[1]);
    expect(new Set(r.requests.map((q) => header(q, 'webhook-signature'))).size).toBe(3);
    // Same body every time, and each attempt verifies on its own.
    expect(new Set(r.requests.map((q) => q.body.toString())).size).toBe(1);
    for (const q of r.requests) expect(verified(q).type).toBe('image.job.succeeded');
  });

  it('cuts off a hanging receiver at WEBHOOK_TIMEOUT_MS and schedules a retry', async () => {
    const arrivals: number[] = [];
    const cutoffs: number[] = [];
    const r = await receiver((req) => {
      const at = Date.now();
      arrivals.push(at);
      req.socket.once('close', () => cutoffs.push(Date.now() - at)); // never answers
    });
    const id = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    await waitFor(async () => (cutoffs.length > 0 ? true : undefined), 15_000, 'the sender to give up on the hanging request');
    // The 1.5 s deadline covers the whole attempt; the request arrived a little after it started.
    expect(cutoffs[0]).toBeGreaterThanOrEqual(1_000);
    expect(cutoffs[0]).toBeLessThan(5_000);
    const state = await delivery(stack, id, 'succeeded', (s) => s.last_error === 'timeout', 'timeout recorded');
    expect(state.last_status_code).toBeNull();
    expect(['pending', 'gave_up']).toContain(state.status);
    await r.close();
  });

  it('treats a 302 as a failure and never follows it', async () => {
    const target = await receiver();
    const r = await receiver((_req, res) => {
      res.writeHead(302, { Location: hookUrl(target, '/stolen') });
      res.end();
    });
    const id = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    const state = await delivery(stack, id, 'succeeded', (s) => s.status === 'gave_up', 'gave up after the schedule');
    expect(state).toMatchObject({ attempts: 4, last_status_code: 302, last_error: 'redirect', delivered_at: null });
    await finalDeliveryJob(stack, id, 'succeeded', 'failed');
    expect(r.requests).toHaveLength(4);
    expect(target.connections).toBe(0);
  });

  it('stops at once on 410 Gone, and sends nothing more to that URL', async () => {
    const r = await receiver((_req, res) => {
      res.statusCode = 410;
      res.end('gone');
    });
    const id = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    const j = await finalDeliveryJob(stack, id, 'succeeded', 'failed');
    expect(j.attemptsMade).toBe(1);
    expect(r.requests).toHaveLength(1);
    expect((await job(stack, id)).webhook?.deliveries.succeeded).toMatchObject({ status: 'failed', attempts: 1, last_status_code: 410, last_error: 'http_410' });

    const again = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    await finalDeliveryJob(stack, again, 'succeeded', 'failed');
    expect(r.requests).toHaveLength(1);
    expect((await job(stack, again)).webhook?.deliveries.succeeded).toMatchObject({ status: 'failed', attempts: 0, last_error: 'endpoint_gone' });
  });

  it('honours Retry-After on 429 without using up an attempt', async () => {
    const arrivals: number[] = [];
    const r = await receiver((_req, res) => {
      arrivals.push(Date.now());
      if (arrivals.length === 1) {
        res.writeHead(429, { 'Retry-After': '1' });
        return void res.end();
      }
      res.end('ok');
    });
    const id = (await submit(stack, { webhook_url: hookUrl(r) })).body.id as string;
    const state = await delivery(stack, id, 'succeeded', (s) => s.status === 'delivered', 'delivered after Retry-After');
    expect(state).toMatchObject({ attempts: 2, last_status_code: 200 });
    expect(arrivals[1] - arrivals[0]).toBeGreaterThanOrEqual(950);
    // One counted attempt (the delivery): the postponement did not use one.
    expect(await finalDeliveryJob(stack, id, 'succeeded', 'completed')).toMatchObject({ attemptsMade: 1, attemptsStarted: 2 });
  });

  it('refuses every S1 address form (and names resolving to them) at submission with 422 and one message', async () => {
    const counts = async () => {
      const q = new Queue(QueueName.Generation, { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX });
      try {
        return await q.getJobCountByTypes('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed');
      } finally {
        await q.close();
      }
    };
    const before = await counts();
    const refused = [
      ...REFUSED_WEBHOOK_URLS,
      ...REFUSED_WEBHOOK_URLS.filter((u) => u.startsWith('http://')).map((u) => u.replace('http://', 'https://')),
      'http://private.test/hook', // resolves to 10.0.0.7
      'http://multi.test/hook', // one public and one loopback record
      'http://unknown.test/hook', // does not resolve
      `http://user:pw@${RECEIVER_HOST}:8080/hook`, // userinfo, even on an allowlisted host
    ];
    const answers: { url: string; status: number; error: unknown }[] = [];
    for (const url of refused) {
      const res = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'a lighthouse at dusk', width: 256, height: 256, webhook_url: url });
      answers.push({ url, status: res.status, error: res.body.error });
    }
    const expected = { status: 422, error: { code: 'invalid_webhook_url', message: INVALID_WEBHOOK_URL_MESSAGE } };
    expect(answers.filter((a) => a.status !== 422 || JSON.stringify(a.error) !== JSON.stringify(expected.error))).toEqual([]);
    expect(await counts()).toBe(before);
    await submit(stack, { webhook_events: ['succeeded'] }, 400);
  });

  it('blocks DNS rebinding at connect time: public at submission, 127.0.0.1 at delivery; never retried', async () => {
    const r = await receiver();
    const id = (await submit(stack, { webhook_url: `http://rebind.test:${r.port}/hook` })).body.id as string;
    expect(dns.apiCalls).toContain('rebind.test');
    const j = await finalDeliveryJob(stack, id, 'succeeded', 'failed');
    expect(j.attemptsMade).toBe(1);
    expect(dns.workerCalls.filter((c) => c.host === 'rebind.test').map((c) => c.answer)).toContainEqual(['127.0.0.1']);
    expect(r.connections).toBe(0);
    expect((await job(stack, id)).webhook?.deliveries.succeeded).toMatchObject({ status: 'failed', attempts: 1, last_status_code: null, last_error: 'blocked_destination' });
  });

  it('sends canceled for a job canceled while running (by its worker) and while still queued (by the API)', async () => {
    const r = await receiver();
    stack.sims[0].faults.set({ hang: true }); // job A holds the only GPU until it is canceled
    try {
      const a = (await submit(stack, { webhook_url: hookUrl(r, '/a'), webhook_events: ['canceled'] })).body.id as string;
      await waitFor(async () => ((await job(stack, a)).status === 'running' ? true : undefined), 10_000, 'job A running');
      const b = (await submit(stack, { webhook_url: hookUrl(r, '/b') })).body.id as string;
      expect((await job(stack, b)).status).toBe('queued');

      const canceledB = await request(stack.url).delete(`/api/v1/images/jobs/${b}`).expect(200);
      expect(canceledB.body).toMatchObject({ status: 'canceled', webhook: { events: ['succeeded', 'failed', 'canceled'] } });
      await request(stack.url).delete(`/api/v1/images/jobs/${a}`).expect(200);

      await waitFor(async () => (r.requests.length >= 2 ? true : undefined), 15_000, 'both canceled events');
      const byPath = new Map(r.requests.map((q) => [q.url, { id: header(q, 'webhook-id'), p: verified(q) }]));
      expect(byPath.get('/a')).toMatchObject({ id: `msg_${a}_canceled`, p: { type: 'image.job.canceled', data: { id: a, status: 'canceled', error: { code: 'canceled' } } } });
      expect(byPath.get('/b')).toMatchObject({ id: `msg_${b}_canceled`, p: { type: 'image.job.canceled', data: { id: b, status: 'canceled' } } });
      await delivery(stack, b, 'canceled', (s) => s.status === 'delivered', 'B canceled delivered');
      await delivery(stack, a, 'canceled', (s) => s.status === 'delivered', 'A canceled delivered');
    } finally {
      stack.sims[0].faults.reset();
      // The held prompt resumes (or ends as interrupted): let the GPU go idle before the stack closes.
      await waitFor(async () => {
        const st = stack.sims[0].stats();
        return st.running === null && st.pending === 0 ? true : undefined;
      }, 10_000, 'the simulator to go idle');
    }
  });
});

describe('webhooks never hold up a GPU', () => {
  let stack: Stack;
  let r: LocalReceiver;
  const dns = new StubDns();

  beforeAll(async () => {
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 20 },
      // The default attempt timeout (10 s) is far longer than a job on the simulator.
      env: { WEBHOOK_SECRET: SECRET, WEBHOOK_ALLOWED_HOSTS: RECEIVER_HOST },
      overrides: {
        api: [{ provide: WEBHOOK_HOST_RESOLVER, useValue: dns.resolver }],
        worker: [{ provide: WEBHOOK_DNS_LOOKUP, useValue: dns.lookup }],
      },
    });
  });
  afterAll(async () => {
    await r?.close();
    await stack?.close();
  });

  it('the next GPU job starts and ends while the previous job’s webhooks still hang', async () => {
    const open = new Set<string>();
    const cut: string[] = [];
    r = await startReceiver((req) => {
      const id = String(req.headers['webhook-id']);
      open.add(id);
      req.socket.once('close', () => cut.push(id)); // never answers
    });
    const first = (await submit(stack, { webhook_url: hookUrl(r), webhook_events: ['running', 'succeeded'] })).body.id as string;
    const second = (await submit(stack, {})).body.id as string;

    const done = await waitFor(async () => {
      const j = await job(stack, second);
      return j.status === 'succeeded' ? j : undefined;
    }, 20_000, 'the second job');
    await waitFor(async () => (open.has(`msg_${first}_succeeded`) ? true : undefined), 5_000, 'the first job’s succeeded webhook');
    const firstJob = await job(stack, first);
    expect(firstJob.status).toBe('succeeded');
    // One GPU: job 2 ran after job 1 (pipelined dispatch starts it as soon as job 1's prompt ends,
    // while job 1's outputs are still being stored, so before job 1's record) ...
    expect(Date.parse(done.started_at as string)).toBeGreaterThanOrEqual(Date.parse(firstJob.started_at as string));
    // ... and finished while both of job 1's webhook requests were still hanging, nowhere near their timeout.
    expect(cut).toEqual([]);
    expect(open).toEqual(new Set([`msg_${first}_running`, `msg_${first}_succeeded`]));
    expect((await job(stack, first)).webhook?.deliveries).toMatchObject({ running: { status: 'pending' }, succeeded: { status: 'pending' } });
  });

  it('refuses plain http for non-allowlisted hosts by default (WEBHOOK_HTTPS_ONLY)', async () => {
    const res = await submit(stack, { webhook_url: 'http://public.test/hook' }, 422);
    expect(res.body.error.code).toBe('invalid_webhook_url');
  });
});

describe('webhooks without a signing secret', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refuses webhook_url with 422 webhooks_disabled instead of accepting a webhook that can never be signed', async () => {
    const res = await submit(stack, { webhook_url: 'https://hooks.example.com/x' }, 422);
    expect(res.body.error.code).toBe('webhooks_disabled');
  });
});
