import { createHash } from 'node:crypto';
import sharp from 'sharp';
import request from 'supertest';
import { jobCount, TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Magic bytes read by hand, so the check does not share code with what it checks. */
function magic(b: Buffer): string {
  if (b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  return 'unknown';
}

const binary = (res: request.Response, cb: (err: Error | null, body: Buffer) => void) => {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => cb(null, Buffer.concat(chunks)));
};

describe('image features: aspect ratios, several images, output formats, result cache, models', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 2 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const executed = () => stack.sims[0].stats().executed;

  /** Submits an async job and waits for its end; returns the final resource. */
  async function runJob(body: Record<string, unknown>): Promise<Record<string, any>> {
    const created = await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);
    return waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}`).expect(200);
      return ['succeeded', 'failed', 'canceled'].includes(r.body.status) ? r.body : undefined;
    }, 20_000, `job ${created.body.id} to end`);
  }

  async function download(url: string): Promise<{ bytes: Buffer; type: string; etag: string; length: number }> {
    const path = /^https?:/.test(url) ? new URL(url).pathname : url;
    const res = await request(stack.url).get(path).buffer(true).parse(binary).expect(200);
    return { bytes: res.body as Buffer, type: String(res.headers['content-type']), etag: String(res.headers.etag), length: Number(res.headers['content-length']) };
  }

  it('16:9 on the Qwen model renders 1664×928, and the job reports the ratio it was asked for', async () => {
    const job = await runJob({ prompt: 'a cover, wide', aspect_ratio: '16:9' });
    expect(job.status).toBe('succeeded');
    expect(job.params).toMatchObject({ model: 'qwen-image-lightning-4step', width: 1664, height: 928, aspect_ratio: '16:9' });
    expect(job.images).toHaveLength(1);
    expect(job.images[0]).toMatchObject({ width: 1664, height: 928, content_type: 'image/png' });
    const img = await download(job.images[0].url);
    expect(await sharp(img.bytes).metadata()).toMatchObject({ format: 'png', width: 1664, height: 928 });
  });

  it('num_images 3 gives three distinct stored images from one ComfyUI run', async () => {
    const before = executed();
    const job = await runJob({ prompt: 'three variants of a fox', width: 256, height: 256, num_images: 3, seed: 11 });
    expect(job.status).toBe('succeeded');
    expect(executed()).toBe(before + 1);
    expect(job.images.map((i: { index: number }) => i.index)).toEqual([0, 1, 2]);
    const downloads = await Promise.all(job.images.map((i: { url: string }) => download(i.url)));
    for (const [k, d] of downloads.entries()) {
      expect(sha256(d.bytes)).toBe(job.images[k].sha256);
      expect(d.bytes.length).toBe(job.images[k].bytes);
      expect(await sharp(d.bytes).metadata()).toMatchObject({ width: 256, height: 256 });
    }
    expect(new Set(downloads.map((d) => sha256(d.bytes))).size).toBe(3);
    // The simulator saved them as ComfyUI names a batch: one SaveImage run, consecutive counters.
    const history = (await request(stack.sims[0].url).get('/history').expect(200)).body as Record<string, { prompt: unknown[]; outputs: Record<string, { images: Array<{ filename: string }> }> }>;
    const entry = Object.values(history).find((e) => JSON.stringify(e.prompt[2]).includes('three variants of a fox'));
    const files = Object.values(entry!.outputs).flatMap((o) => o.images.map((i) => i.filename));
    expect(files).toHaveLength(3);
    expect(files.map((f) => /_(\d{5})_\.png$/.exec(f)?.[1])).toEqual(['00001', '00002', '00003']);
  });

  it('the synchronous route keeps image_url (the first) and lists every image', async () => {
    const res = await request(stack.url).post('/api/v1/images/generate').send({ prompt: 'two portraits', aspect_ratio: '2:3', num_images: 2, model: 'smoke-test' }).expect(200);
    expect(res.body).toMatchObject({ width: 416, height: 624, cached: false });
    expect(res.body.images).toHaveLength(2);
    expect(res.body.image_url).toBe(res.body.images[0].image_url);
    const [a, b] = res.body.images.map((i: { image_url: string }) => Buffer.from(i.image_url.split(',')[1], 'base64'));
    expect(sha256(a)).toBe(res.body.images[0].sha256);
    expect(sha256(a)).not.toBe(sha256(b));
    expect(res.body.images[1]).toMatchObject({ content_type: 'image/png', width: 416, height: 624, bytes: b.length });
  });

  it.each([
    ['webp', 'image/webp'],
    ['jpeg', 'image/jpeg'],
  ])('output_format %s comes back with its magic bytes, Content-Type, ETag and size', async (format, type) => {
    const job = await runJob({ prompt: `a ${format} lighthouse`, width: 320, height: 256, output_format: format, output_quality: 70 });
    expect(job.status).toBe('succeeded');
    expect(job.params).toMatchObject({ output_format: format, output_quality: 70 });
    const img = await download(job.images[0].url);
    expect(magic(img.bytes)).toBe(format);
    expect(img.type).toBe(type);
    expect(img.length).toBe(img.bytes.length);
    expect(img.etag).toBe(`"${sha256(img.bytes)}"`);
    expect(job.images[0]).toMatchObject({ content_type: type, bytes: img.bytes.length, sha256: sha256(img.bytes), width: 320, height: 256 });
    expect(await sharp(img.bytes).metadata()).toMatchObject({ format, width: 320, height: 256 });
  });

  it('a second identical seeded request is answered from the cache: new job, cached, the same bytes, no GPU run', async () => {
    const body = { prompt: 'the same scene again', width: 256, height: 256, seed: 4242, output_format: 'webp', num_images: 2 };
    const first = await runJob(body);
    expect(first).toMatchObject({ status: 'succeeded', cached: false });
    const before = executed();
    const created = await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);
    // Succeeded at once: the 202 already says so.
    expect(created.body).toMatchObject({ status: 'succeeded', cached: true });
    expect(created.body.id).not.toBe(first.id);
    expect(created.body.images.map((i: { sha256: string }) => i.sha256)).toEqual(first.images.map((i: { sha256: string }) => i.sha256));
    expect(created.body.images[1].url).toContain(`/jobs/${created.body.id}/images/1`);
    const [mine, original] = [await download(created.body.images[1].url), await download(first.images[1].url)];
    expect(mine.bytes.equals(original.bytes)).toBe(true);
    expect(mine.type).toBe('image/webp');
    // The sync route is answered from it too.
    const sync = await request(stack.url).post('/api/v1/images/generate').send(body).expect(200);
    expect(sync.body).toMatchObject({ cached: true });
    expect(sync.body.images.map((i: { sha256: string }) => i.sha256)).toEqual(first.images.map((i: { sha256: string }) => i.sha256));
    expect(executed()).toBe(before);
    const metrics = (await request(stack.url).get('/metrics').expect(200)).text;
    expect(metrics).toMatch(/^fictures_result_cache_hits_total\{model="qwen-image-lightning-4step"\} 2$/m);

    // "cache": false renders anyway; another format or seed is another request; no seed is never cached.
    for (const other of [{ ...body, cache: false }, { ...body, output_format: 'jpeg' }, { ...body, seed: 4243 }]) {
      const n = executed();
      const job = await runJob(other);
      expect(job).toMatchObject({ status: 'succeeded', cached: false });
      expect(executed()).toBe(n + 1);
    }
    const { seed: _seed, ...unseeded } = body;
    for (let i = 0; i < 2; i++) {
      const n = executed();
      expect(await runJob(unseeded)).toMatchObject({ status: 'succeeded', cached: false });
      expect(executed()).toBe(n + 1);
    }
  });

  it('GET /api/v1/models lists modes, aspect ratios, limits and which files each ComfyUI has', async () => {
    const res = await request(stack.url).get('/api/v1/models').expect(200);
    const byId = Object.fromEntries(res.body.data.map((m: { id: string }) => [m.id, m]));
    expect(Object.keys(byId).sort()).toEqual(['qwen-image-lightning-4step', 'qwen-image-lightning-8step', 'smoke-test']);
    const qwen = byId['qwen-image-lightning-4step'];
    expect(qwen.modes).toEqual(['text-to-image', 'img2img', 'inpaint']);
    expect(qwen.aspect_ratios['16:9']).toEqual({ width: 1664, height: 928 });
    expect(Object.keys(qwen.aspect_ratios)).toEqual(['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3']);
    expect(qwen.limits).toMatchObject({ num_images: { min: 1, max: 4 }, output_formats: ['png', 'webp', 'jpeg'], output_quality: { min: 1, max: 100 } });
    const sim = stack.sims[0].url;
    const eight = byId['qwen-image-lightning-8step'];
    expect(eight.defaults.num_inference_steps).toBe(8);
    // The simulator has every file the shipped manifests need (SIM_MODEL_FILES narrows it; see the routing spec).
    expect(eight.available[sim]).toBe(true);
    expect(eight.files[sim]).toMatchObject({ 'loras/Qwen-Image-Lightning-8steps-V1.0.safetensors': true, 'vae/qwen_image_vae.safetensors': true });
    expect(qwen.available[sim]).toBe(true);
  });

  describe('bad input is refused with 400 and enqueues nothing', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['aspect_ratio with width', { aspect_ratio: '16:9', width: 512 }, 'aspect_ratio'],
      ['aspect_ratio with height', { aspect_ratio: '16:9', height: 512 }, 'aspect_ratio'],
      ['an aspect ratio no one offers', { aspect_ratio: '5:4' }, 'aspect_ratio'],
      ['num_images 5', { num_images: 5 }, 'num_images'],
      ['num_images 0', { num_images: 0 }, 'num_images'],
      ['num_images 9 (past every manifest)', { num_images: 9 }, 'num_images'],
      ['num_images 1.5', { num_images: 1.5 }, 'num_images'],
      ['num_images null', { num_images: null }, 'num_images'],
      ['output_quality with png', { output_format: 'png', output_quality: 80 }, 'output_quality'],
      ['output_quality without a format', { output_quality: 80 }, 'output_quality'],
      ['output_quality 0', { output_format: 'jpeg', output_quality: 0 }, 'output_quality'],
      ['output_quality 101', { output_format: 'webp', output_quality: 101 }, 'output_quality'],
      ['output_format gif', { output_format: 'gif' }, 'output_format'],
      ['output_format null', { output_format: null }, 'output_format'],
      ['cache "no"', { cache: 'no' }, 'cache'],
    ];
    it.each(cases)('%s', async (_name, extra, field) => {
      const before = await jobCount(stack);
      const ran = executed();
      for (const path of ['/api/v1/images/jobs', '/api/v1/images/generate']) {
        const res = await request(stack.url).post(path).send({ prompt: 'p', seed: 1, ...extra });
        expect({ path, status: res.status, code: res.body.error?.code }).toEqual({ path, status: 400, code: 'validation_failed' });
        const fields = (res.body.error.details as Array<{ field: string; message: string }>).map((d) => d.field);
        expect(fields).toEqual([field]);
      }
      expect(await jobCount(stack)).toBe(before);
      expect(executed()).toBe(ran);
    });
  });
});

describe('the result cache is per API key unless RESULT_CACHE=global', () => {
  const body = { prompt: 'a shared scene', model: 'smoke-test', seed: 99 };

  async function finished(stack: Stack, auth: Record<string, string>, extra: Record<string, unknown> = {}): Promise<Record<string, any>> {
    const created = await request(stack.url).post('/api/v1/images/jobs').set(auth).send({ ...body, ...extra }).expect(202);
    return waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}`).set(auth).expect(200);
      return r.body.status === 'succeeded' ? r.body : undefined;
    }, 20_000, 'the job to succeed');
  }

  it.each([
    ['owner', false],
    ['global', true],
  ])('RESULT_CACHE=%s: another key shares the result: %s', async (mode, shared) => {
    const stack = await Stack.start({ comfyui: 1, sim: { stepMs: 2 }, env: { RESULT_CACHE: mode } });
    const keys = TestKeys.of(stack);
    try {
      const a = await keys.create('tenant-a');
      const b = await keys.create('tenant-b');
      const first = await finished(stack, a.auth);
      expect(first.cached).toBe(false);
      const ran = stack.sims[0].stats().executed;
      const again = await finished(stack, a.auth);
      expect(again.cached).toBe(true);
      const other = await finished(stack, b.auth);
      expect(other.cached).toBe(shared);
      expect(stack.sims[0].stats().executed).toBe(ran + (shared ? 0 : 1));
      // Whoever is answered from whose images, each job is its owner's only.
      await request(stack.url).get(`/api/v1/images/jobs/${other.id}/images/0`).set(a.auth).expect(404);
      const bytes = await request(stack.url).get(`/api/v1/images/jobs/${other.id}/images/0`).set(b.auth).expect(200);
      expect(bytes.headers.etag).toBe(`"${other.images[0].sha256}"`);
    } finally {
      keys.close();
      await stack.close();
    }
  });
});

describe('a cached answer needs no GPU', () => {
  it('POST /generate serves a cached request while no worker is up, and refuses the rest with no_capacity', async () => {
    const stack = await Stack.start({ comfyui: 1, sim: { stepMs: 2 }, env: { WORKER_HEARTBEAT_INTERVAL_MS: '1000' } });
    try {
      const body = { prompt: 'rendered once', model: 'smoke-test', seed: 5 };
      const first = await request(stack.url).post('/api/v1/images/generate').send(body).expect(200);
      expect(first.body.cached).toBe(false);
      await stack.worker!.close();
      stack.worker = undefined;
      // The API's view of the fleet, which /generate shares, says no worker can take a job.
      await waitFor(async () => {
        const res = await request(stack.url).get('/health');
        return res.body?.models?.image?.initialized === false ? true : undefined;
      }, 20_000, 'no worker seen by the API');
      expect((await request(stack.url).post('/api/v1/images/generate').send({ ...body, seed: 6 })).body.error.code).toBe('no_capacity');
      const again = await request(stack.url).post('/api/v1/images/generate').send(body).expect(200);
      expect(again.body).toMatchObject({ cached: true, image_url: first.body.image_url });
      const refused = await request(stack.url).post('/api/v1/images/generate').send({ ...body, cache: false });
      expect(refused.status).toBe(503);
    } finally {
      await stack.close();
    }
  });
});
