import { Writable } from 'node:stream';
import { Logger as PinoLogger } from 'nestjs-pino';
import request from 'supertest';
import { LogDestination } from '../apps/api/src/logging/logging.module';
import { ApiMetricsServer } from '../apps/api/src/metrics/api-metrics-server';
import { recordWebhookDelivery } from '../apps/worker/src/metrics/webhook-metrics';
import { WorkerMetricsServer } from '../apps/worker/src/metrics/worker-metrics-server';
import { Stack, waitFor } from './support/stack';

const ADMIN_TOKEN = 'ops-dashboard-token-0123456789';

/** One sample of Prometheus text: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|[Nn][Aa][Nn]|[+-]?[Ii]nf)(?: -?[0-9]+)?$`);
const HELP = new RegExp(`^# HELP (${NAME}) .*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);

/**
 * A strict reader of the Prometheus text format 0.0.4: every line must parse, every sample belong to a
 * declared family. Values as Go's ParseFloat reads them (prom-client writes NaN as `Nan`).
 */
function parseProm(text: string): Sample[] {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = TYPE.exec(line);
    if (t) {
      types.set(t[1], t[2]);
      continue;
    }
    if (HELP.test(line)) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const family = [...types.keys()].find((f) => m[1] === f || (['histogram', 'summary'].includes(types.get(f)!) && /^(_bucket|_sum|_count)$/.test(m[1].slice(f.length)) && m[1].startsWith(f)));
    if (!family) throw new Error(`sample without a # TYPE: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: /nan/i.test(m[3]) ? NaN : Number(m[3].replace(/inf/i, 'Infinity')) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

describe('observability: /metrics, JSON logs with request ids, queue dashboard', () => {
  let stack: Stack;
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const capture = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });

  const apiMetrics = async () => {
    const res = await request(stack.url).get('/metrics').expect(200);
    expect(res.headers['content-type']).toContain('text/plain');
    return { samples: parseProm(res.text), text: res.text };
  };
  const workerMetrics = async () => {
    const port = stack.worker!.get(WorkerMetricsServer).server.port;
    const res = await request(`http://127.0.0.1:${port}`).get('/metrics').expect(200);
    return parseProm(res.text);
  };
  const jobDone = (id: string) =>
    waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
      return ['succeeded', 'failed', 'canceled'].includes(r.body.status) ? (r.body as { status: string }) : undefined;
    }, 15_000, 'job to end');

  beforeAll(async () => {
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 60 },
      env: { LOG_LEVEL: 'info', ADMIN_TOKEN, WORKER_METRICS_PORT: '0', WORKER_HEARTBEAT_INTERVAL_MS: '300' },
      overrides: { api: [{ provide: LogDestination, useValue: new LogDestination(capture) }] },
    });
    // As main.ts does: Nest's Logger → pino (here into the captured stream).
    stack.api.useLogger(stack.api.get(PinoLogger));
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('echoes the request id and puts it on every line of that request; credentials redacted, prompts by length', async () => {
    const prompt = 'a very private lighthouse at dusk';
    const res = await request(stack.url)
      .post('/api/v1/images/jobs')
      .set('X-Request-Id', 'obs-req-0001')
      .set('X-Api-Key', 'k_should_never_be_logged')
      .send({ prompt, width: 256, height: 256 });
    expect(res.headers['x-request-id']).toBe('obs-req-0001');
    const mine = await waitFor(async () => {
      const l = lines.filter((x) => x.request_id === 'obs-req-0001');
      return l.some((x) => x.msg === 'request completed') ? l : undefined;
    }, 5_000, 'the request lines');
    const done = mine.find((x) => x.msg === 'request completed')!;
    expect(done).toMatchObject({ level: 'info', service: 'api', req: { method: 'POST', url: '/api/v1/images/jobs' } });
    expect((done.req as { headers: Record<string, string> }).headers['x-api-key']).toBe('[redacted]');
    expect(res.status).toBe(202);
    // Logged by JobsService through Nest's Logger: the request id comes from the request's context.
    expect(mine.find((x) => x.msg === 'job queued')).toMatchObject({ context: 'JobsService', prompt_length: prompt.length });
    await jobDone(res.body.id);
    expect(raw).not.toContain('k_should_never_be_logged');
    expect(raw).not.toContain(prompt);

    const anon = await request(stack.url).get('/api/v1/models').set('Authorization', 'Bearer sk_never_in_logs_either');
    const made = anon.headers['x-request-id'];
    expect(made).toMatch(/^[0-9a-f-]{36}$/);
    const line = await waitFor(async () => lines.find((x) => x.request_id === made && x.msg === 'request completed'), 5_000, 'the line');
    expect((line.req as { headers: Record<string, string> }).headers.authorization).toBe('[redacted]');
    expect(raw).not.toContain('sk_never_in_logs_either');

    // A body refused while it is read (before any route) still has its line.
    await request(stack.url).post('/api/v1/images/jobs').set('X-Request-Id', 'obs-req-broken').set('Content-Type', 'application/json').send('{"prompt":').expect(400);
    const broken = await waitFor(async () => lines.find((x) => x.request_id === 'obs-req-broken' && x.msg === 'request completed'), 5_000, 'the refused body line');
    expect(broken).toMatchObject({ level: 'info', res: { status_code: 400 }, req: { method: 'POST', url: '/api/v1/images/jobs' } });
    await request(stack.url).post('/api/v1/models').set('X-Request-Id', 'obs-req-large').send({ pad: 'x'.repeat(100 * 1024) }).expect(413);
    const large = await waitFor(async () => lines.find((x) => x.request_id === 'obs-req-large' && x.msg === 'request completed'), 5_000, 'the too-large body line');
    expect(large).toMatchObject({ res: { status_code: 413 }, req: { method: 'POST', url: '/api/v1/models' } });
  });

  it('/metrics is Prometheus text; HTTP by route pattern, job counters and histograms move after a job', async () => {
    const before = (await apiMetrics()).samples;
    const wBefore = await workerMetrics();
    const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'count me', width: 256, height: 256 }).expect(202);
    const model = body.model as string;
    expect((await jobDone(body.id)).status).toBe('succeeded');
    await request(stack.url).get(`/api/v1/images/jobs/${body.id}`).expect(200);

    const { samples: after, text } = await apiMetrics();
    expect(value(after, 'fictures_jobs_total', { model, status: 'submitted' }) - value(before, 'fictures_jobs_total', { model, status: 'submitted' })).toBe(1);
    expect(value(after, 'fictures_http_requests_total', { method: 'POST', route: '/api/v1/images/jobs', status: '202' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'fictures_http_request_duration_seconds_count', { method: 'GET', route: '/api/v1/images/jobs/:id', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(text).not.toContain(body.id); // route patterns, never raw paths
    for (const state of ['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed']) {
      expect(after.some((s) => s.name === 'fictures_queue_jobs' && s.labels.queue === 'generation' && s.labels.state === state)).toBe(true);
      expect(after.some((s) => s.name === 'fictures_queue_jobs' && s.labels.queue === 'webhook' && s.labels.state === state)).toBe(true);
    }
    expect(value(after, 'fictures_queue_jobs', { queue: 'generation', state: 'completed' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'fictures_workers', { state: 'idle' }) + value(after, 'fictures_workers', { state: 'busy' })).toBe(1);
    expect(value(after, 'fictures_comfyui_up', { comfyui: stack.sims[0].url })).toBe(1);
    expect(value(after, 'fictures_gpu_vram_total_bytes', { comfyui: stack.sims[0].url, device: '0' })).toBe(80995 * 1024 * 1024);
    expect(value(after, 'fictures_gpu_vram_free_bytes', { comfyui: stack.sims[0].url, device: '0' })).toBeGreaterThan(0);
    expect(after.some((s) => s.name === 'fictures_gpu_busy_ratio' && s.labels.comfyui === stack.sims[0].url)).toBe(true);
    expect(after.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);

    const wAfter = await workerMetrics();
    const delta = (name: string, labels: Record<string, string> = {}) => value(wAfter, name, labels) - value(wBefore, name, labels);
    expect(delta('fictures_jobs_total', { model, status: 'succeeded' })).toBe(1);
    expect(delta('fictures_job_queue_wait_seconds_count', { model })).toBe(1);
    expect(delta('fictures_job_execution_seconds_count', { model })).toBe(1);
    expect(delta('fictures_job_total_seconds_count', { model })).toBe(1);
    expect(value(wAfter, 'fictures_job_total_seconds_bucket', { model, le: '+Inf' })).toBeGreaterThanOrEqual(1);
    expect(value(wAfter, 'fictures_gpu_busy_seconds_total', { comfyui: stack.sims[0].url })).toBeGreaterThan(0);
    recordWebhookDelivery('delivered');
    expect(value(await workerMetrics(), 'fictures_webhook_deliveries_total', { outcome: 'delivered' })).toBeGreaterThanOrEqual(1);
  });

  it('a job canceled while queued is counted as canceled by the API that removed it', async () => {
    const before = (await apiMetrics()).samples;
    const first = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'long one', width: 256, height: 256, num_inference_steps: 16 }).expect(202);
    // Pipelined dispatch: the worker takes the next job at once and holds it in ComfyUI's queue (its
    // cancel is the worker's); the one after that is still in BullMQ's queue, for the API to remove.
    const held = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'held next', width: 256, height: 256 }).expect(202);
    await waitFor(async () => ((await request(stack.url).get(`/api/v1/images/jobs/${held.body.id}`)).body.queue_position === 0 ? true : undefined), 5_000, 'the next job held');
    const second = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'never runs', width: 256, height: 256 }).expect(202);
    const model = second.body.model as string;
    const canceled = await request(stack.url).delete(`/api/v1/images/jobs/${second.body.id}`).expect(200);
    expect(canceled.body.status).toBe('canceled');
    await waitFor(async () => {
      const now = (await apiMetrics()).samples;
      return value(now, 'fictures_jobs_total', { model, status: 'canceled' }) - value(before, 'fictures_jobs_total', { model, status: 'canceled' }) === 1 ? true : undefined;
    }, 5_000, 'the canceled counter');
    await jobDone(first.body.id);
    await jobDone(held.body.id);
  });

  it('Bull Board at /admin/queues: 401 without the token, open with Bearer or basic auth, lists both queues', async () => {
    const denied = await request(stack.url).get('/admin/queues').expect(401);
    expect(denied.headers['www-authenticate']).toContain('Basic');
    await request(stack.url).get('/admin/queues').set('Authorization', 'Bearer wrong-token-wrong-token').expect(401);
    const page = await request(stack.url).get('/admin/queues').set('Authorization', `Bearer ${ADMIN_TOKEN}`).expect(200);
    expect(page.headers['content-type']).toContain('text/html');
    await request(stack.url).get('/admin/queues').auth('ops', ADMIN_TOKEN).expect(200);
    const api = await request(stack.url).get('/admin/queues/api/queues').set('Authorization', `Bearer ${ADMIN_TOKEN}`).expect(200);
    const names = (api.body.queues as Array<{ name: string }>).map((q) => q.name).sort();
    // One generation queue per model (the default model's is `generation`), and the webhook queue.
    expect(names).toEqual(['generation', 'generation-qwen-image-lightning-8step', 'generation-smoke-test', 'webhook']);
  });
});

describe('observability: METRICS_PORT moves /metrics off the public port', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { METRICS_PORT: '0' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('answers /metrics on its own port only', async () => {
    await request(stack.url).get('/metrics').expect(404);
    const port = stack.api.get(ApiMetricsServer).server.port;
    const res = await request(`http://127.0.0.1:${port}`).get('/metrics').expect(200);
    expect(parseProm(res.text).some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    await request(`http://127.0.0.1:${port}`).get('/other').expect(404);
  });
});
