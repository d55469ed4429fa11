import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import { serializeWebhookPayload, webhookHeaders } from '@app/webhooks';
import { createClient, FicturesError, type FicturesClient, type JobProgress, type JobResource, verifyWebhook } from '../libs/client/src';
import { jobCount, TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const SECRET = `whsec_${Buffer.from('fictures-client-e2e-signing-key!').toString('base64')}`;
const small = { prompt: 'a lighthouse at dusk', model: 'smoke-test', width: 256, height: 256 } as const;
/** The default (Qwen) model at its smallest size: it samples num_inference_steps steps (the smoke test always 1). */
const stepped = { prompt: 'a lighthouse at dusk', width: 256, height: 256 } as const;

/** A real PNG of the given size (an input for img2img). */
const png = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 40, g: 90, b: 160 } } }).png().toBuffer();

describe('@fictures/client against the running stack', () => {
  let stack: Stack;
  let keys: TestKeys;
  let a: { key: string };
  let b: { key: string };
  let client: FicturesClient;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 200 } });
    keys = TestKeys.of(stack);
    a = await keys.create('client-a');
    b = await keys.create('client-b');
    client = createClient({ baseUrl: stack.url, apiKey: a.key });
  });
  afterAll(async () => {
    await keys?.close();
    await stack?.close();
  });

  it('generate(): submits, follows the events (queued → step i/N → downloading), downloads real images of the asked size', async () => {
    const seen: JobProgress[] = [];
    const { job, images } = await client.generate({ ...stepped, num_images: 2, num_inference_steps: 4, output_format: 'webp' }, { onProgress: (p) => seen.push(p) });
    expect(job.status).toBe('succeeded');
    expect(images).toHaveLength(2);
    for (const img of images) {
      expect(img.contentType).toBe('image/webp');
      const meta = await sharp(Buffer.from(img.bytes)).metadata();
      expect({ format: meta.format, width: meta.width, height: meta.height }).toEqual({ format: 'webp', width: 256, height: 256 });
    }
    const steps = seen.filter((p): p is Extract<JobProgress, { stage: 'running' }> => p.stage === 'running');
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((s) => s.total_steps === 4 && s.step <= 4)).toBe(true);
    // Steps only move forward, and downloading comes last.
    expect(steps.map((s) => s.step)).toEqual([...steps.map((s) => s.step)].sort((x, y) => x - y));
    expect(seen.slice(-2)).toEqual([{ stage: 'downloading', index: 0, count: 2 }, { stage: 'downloading', index: 1, count: 2 }]);
  });

  it('wait() by long-polling only gives the same ended job as the stream', async () => {
    const job = await client.submit({ ...stepped, num_inference_steps: 2 });
    expect(['queued', 'running']).toContain(job.status);
    const ended = await client.wait(job.id, { via: 'poll' });
    expect(ended.status).toBe('succeeded');
    expect(ended.images[0]).toMatchObject({ width: 256, height: 256, content_type: 'image/png' });
    expect(await client.wait(job)).toEqual(await client.getJob(job.id));
  });

  it('errors are typed: the stable code, the status, and nothing is created by bad input', async () => {
    const before = await jobCount(stack);
    const bad = await client.submit({ ...small, width: 100 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(FicturesError);
    expect(bad).toMatchObject({ code: 'validation_failed', status: 400 });
    expect((bad as FicturesError).requestId).toEqual(expect.any(String));
    expect(await jobCount(stack)).toBe(before);

    await expect(client.getJob(randomUUID())).rejects.toMatchObject({ code: 'job_not_found', status: 404 });
    const stranger = createClient({ baseUrl: stack.url, apiKey: 'fk_not_a_key' });
    await expect(stranger.models()).rejects.toMatchObject({ code: 'unauthorized', status: 401 });
    const nowhere = createClient({ baseUrl: 'http://127.0.0.1:9', apiKey: a.key, retries: 1, retryBaseMs: 10 });
    await expect(nowhere.models()).rejects.toMatchObject({ code: 'network_error', status: 0 });
  });

  it('retries a submission whose answer was lost with the SAME Idempotency-Key: one job, not two', async () => {
    const sent: string[] = [];
    let dropped = false;
    // The network, not our service: the first answer is dropped after the server has acted on it.
    const lossyFetch: typeof fetch = async (input, init) => {
      const req = new Request(input, init);
      if (req.method === 'POST') sent.push(req.headers.get('idempotency-key') ?? '');
      const res = await fetch(req);
      if (req.method === 'POST' && !dropped) {
        dropped = true;
        await res.body?.cancel();
        throw new TypeError('fetch failed: socket hang up');
      }
      return res;
    };
    const lossy = createClient({ baseUrl: stack.url, apiKey: a.key, fetch: lossyFetch, retryBaseMs: 10 });
    const before = await jobCount(stack);
    const job = await lossy.submit({ ...small });
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]).toBe(sent[0]);
    expect(await jobCount(stack)).toBe(before + 1);
    expect((await client.wait(job)).status).toBe('succeeded');
  });

  it('retries 503 and 429 after Retry-After, with the same key, and gives the error once retries are spent', async () => {
    const keysSent: string[] = [];
    let refusals = 2;
    const busyFetch: typeof fetch = async (input, init) => {
      const req = new Request(input, init);
      keysSent.push(req.headers.get('idempotency-key') ?? '');
      if (refusals-- > 0) {
        const status = refusals === 1 ? 503 : 429;
        return new Response(JSON.stringify({ error: { code: status === 503 ? 'queue_full' : 'rate_limited', message: 'busy' }, request_id: 'r' }), { status, headers: { 'content-type': 'application/json', 'retry-after': '0' } });
      }
      return fetch(req);
    };
    const job = await createClient({ baseUrl: stack.url, apiKey: a.key, fetch: busyFetch }).submit({ ...small });
    expect(job.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(keysSent).toHaveLength(3);
    expect(new Set(keysSent).size).toBe(1);

    const alwaysBusy: typeof fetch = async () => new Response(JSON.stringify({ error: { code: 'no_capacity', message: 'no GPU' }, request_id: 'r' }), { status: 503, headers: { 'content-type': 'application/json', 'retry-after': '0' } });
    const e = await createClient({ baseUrl: stack.url, fetch: alwaysBusy, retries: 2 }).models().catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'no_capacity', status: 503, retryAfter: 0 });
  });

  it('cancel(): a running job ends canceled, and generate() of a canceled job throws code canceled', async () => {
    const job = await client.submit({ ...stepped, num_inference_steps: 16 });
    await waitFor(async () => ((await client.getJob(job.id)).status === 'running' ? true : undefined), 20_000, 'the job to run');
    const waiting = client.wait(job.id);
    const canceled = await client.cancel(job.id);
    expect(['canceled', 'running']).toContain(canceled.status);
    expect((await waiting).status).toBe('canceled');
    await expect(client.cancel(job.id)).rejects.toMatchObject({ code: 'job_finished', status: 409 });

    const generating = client.generate({ ...stepped, num_inference_steps: 16 }, {
      onSubmitted: (j) => void waitFor(async () => ((await client.getJob(j.id)).status === 'running' ? true : undefined), 20_000).then(() => client.cancel(j.id)),
    });
    const err = await generating.catch((x: unknown) => x);
    expect(err).toBeInstanceOf(FicturesError);
    expect(err).toMatchObject({ code: 'canceled' });
    expect((err as FicturesError).job?.status).toBe('canceled');
  });

  it('listJobs(): newest first, a page at a time, only the key’s own jobs', async () => {
    const mine = createClient({ baseUrl: stack.url, apiKey: (await keys.create('client-list')).key });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await mine.submit({ ...small })).id);
    const first = await mine.listJobs({ limit: 2 });
    expect(first.data.map((j) => j.id)).toEqual([ids[2], ids[1]]);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await mine.listJobs({ limit: 2, cursor: first.next_cursor as string });
    expect(second.data.map((j) => j.id)).toEqual([ids[0]]);
    expect(second.next_cursor).toBeNull();
    const theirs = await createClient({ baseUrl: stack.url, apiKey: b.key }).listJobs();
    expect(theirs.data.map((j) => j.id)).not.toEqual(expect.arrayContaining([ids[0]]));
    await expect(mine.listJobs({ limit: 0 })).rejects.toMatchObject({ code: 'validation_failed', status: 400 });
    await expect(mine.listJobs({ cursor: 'yesterday' })).rejects.toMatchObject({ code: 'validation_failed', status: 400 });
  });

  it('models() and upload(): an uploaded image drives an img2img job of its size', async () => {
    const models = await client.models();
    expect(models.find((m) => m.default)).toBeDefined();
    expect(models.map((m) => m.id)).toContain('smoke-test');
    const up = await client.upload(await png(320, 256));
    expect(up).toMatchObject({ content_type: 'image/png', width: 320, height: 256 });
    const { job, images } = await client.generate({ prompt: 'the same, at night', model: 'smoke-test', image: up.id, strength: 0.5 });
    expect(job.params.mode).toBe('img2img');
    const meta = await sharp(Buffer.from(images[0].bytes)).metadata();
    expect({ width: meta.width, height: meta.height }).toEqual({ width: 320, height: 256 });
    await expect(client.upload(Buffer.from('not an image'))).rejects.toMatchObject({ code: 'invalid_image', status: 400 });
  });

  it('verifyWebhook(): accepts a delivery signed as the service signs it, refuses a tampered one', async () => {
    const job: JobResource = await client.getJob((await client.listJobs({ limit: 1 })).data[0].id);
    const body = serializeWebhookPayload('succeeded', Date.now(), job as never);
    const headers = webhookHeaders(SECRET, `msg_${randomUUID()}`, Math.floor(Date.now() / 1000), body);
    const payload = verifyWebhook(body, headers as unknown as Record<string, string>, SECRET);
    expect(payload.type).toBe('image.job.succeeded');
    expect(payload.data.id).toBe(job.id);
    expect(verifyWebhook(Buffer.from(body), new Headers(headers as unknown as Record<string, string>), SECRET).data.id).toBe(job.id);
    expect(() => verifyWebhook(body.replace('succeeded', 'failed'), headers as unknown as Record<string, string>, SECRET)).toThrow(FicturesError);
    const old = webhookHeaders(SECRET, 'msg_old', Math.floor(Date.now() / 1000) - 3600, body);
    expect(() => verifyWebhook(body, old as unknown as Record<string, string>, SECRET)).toThrow(/verified/);
  });
});
