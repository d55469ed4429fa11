import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import axios from 'axios';
import sharp from 'sharp';
import request from 'supertest';
import { jobCount } from './support/security';
import { Stack, waitFor } from './support/stack';

const QWEN_FILES = {
  diffusion_models: ['qwen_image_fp8_e4m3fn_scaled.safetensors'],
  text_encoders: ['qwen_2.5_vl_7b_fp8_scaled.safetensors'],
  vae: ['qwen_image_vae.safetensors'],
  loras: ['Qwen-Image-Lightning-4steps-V2.0.safetensors'],
};

/** Types of a PNG's chunks, read by hand so the check does not share code with what it checks. */
function pngChunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let at = 8; at + 8 <= png.length; at += 12 + png.readUInt32BE(at)) types.push(png.toString('latin1', at + 4, at + 8));
  return types;
}

/** The bytes ComfyUI (the simulator) wrote for the prompt whose graph contains `text`, via its own /history and /view. */
async function comfyOutput(simUrl: string, text: string): Promise<Buffer> {
  const history = (await axios.get<Record<string, { prompt: unknown[]; outputs: Record<string, { images?: Array<Record<string, string>> }> }>>(`${simUrl}/history`)).data;
  const entry = Object.values(history).find((e) => JSON.stringify(e.prompt[2]).includes(text));
  const image = Object.values(entry?.outputs ?? {}).flatMap((o) => o.images ?? [])[0];
  if (!image) throw new Error(`no output in the simulator's history for ${text}`);
  return Buffer.from((await axios.get<ArrayBuffer>(`${simUrl}/view`, { params: image, responseType: 'arraybuffer' })).data);
}

describe('images end to end (API → Redis → worker → ComfyUI simulator)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 40 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('POST /api/v1/images/generate returns a PNG data URL of the requested size', async () => {
    const res = await request(stack.url)
      .post('/api/v1/images/generate')
      .send({ prompt: 'a lighthouse at dusk', width: 320, height: 256, seed: 42 })
      .expect(200);
    expect(res.body).toMatchObject({ model_id: 'qwen-image-lightning-4step', width: 320, height: 256, seed: 42 });
    expect(res.body.model).toBe('Qwen-Image Lightning (4 steps)');
    expect(res.body.job_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.body.timings.total_ms).toBeGreaterThan(0);
    // The body is built as bytes (no JSON pass over the base64): still exactly JSON of the answer, with the headers
    // Express's res.json gives (type and charset, length), without the ETag a POST's answer never needs (hashing megabytes).
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.text).toBe(JSON.stringify(res.body));
    expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
    expect(res.headers.etag).toBeUndefined();
    expect(res.body.images).toHaveLength(1);
    expect(res.body.images[0]).toMatchObject({ image_url: res.body.image_url, content_type: 'image/png', width: 320, height: 256 });
    const m = /^data:image\/png;base64,(.+)$/.exec(res.body.image_url);
    expect(m).not.toBeNull();
    const served = Buffer.from(m![1], 'base64');
    expect(res.body.images[0].bytes).toBe(served.length);
    expect(res.body.images[0].sha256).toBe(createHash('sha256').update(served).digest('hex'));
    const meta = await sharp(served).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 320, height: 256 });

    // ComfyUI wrote its graph into the file; what the service hands out has no text chunk (KEEP_IMAGE_METADATA=false)
    // and the same pixels (nothing re-encoded).
    const original = await comfyOutput(stack.sims[0].url, 'a lighthouse at dusk');
    expect(pngChunkTypes(original)).toContain('tEXt');
    expect((await sharp(original).metadata()).comments?.map((c) => c.keyword)).toContain('prompt');
    expect(pngChunkTypes(served).filter((t) => ['tEXt', 'iTXt', 'zTXt'].includes(t))).toEqual([]);
    expect(pngChunkTypes(served)).toEqual(pngChunkTypes(original).filter((t) => t !== 'tEXt'));
    expect(meta.comments ?? []).toEqual([]);
    expect(await sharp(served).raw().toBuffer()).toEqual(await sharp(original).raw().toBuffer());
  });

  it('an async job goes queued → running (with progress) → succeeded, and its image downloads', async () => {
    const created = await request(stack.url)
      .post('/api/v1/images/jobs')
      .send({ prompt: 'a red fox in snow', width: 256, height: 256, num_inference_steps: 12, metadata: { story: 's1' } })
      .expect(202);
    expect(created.headers.location).toBe(`${stack.url}/api/v1/images/jobs/${created.body.id}`);
    // A free GPU may take the job before the 202 is written: queued or already running.
    expect(['queued', 'running']).toContain(created.body.status);
    expect(created.body).toMatchObject({ images: [], error: null, metadata: { story: 's1' } });
    const id = created.body.id as string;
    const seen = new Set<string>();
    const running = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
      seen.add(r.body.status);
      return r.body.status === 'running' && r.body.progress?.step > 0 ? r.body : undefined;
    }, 15_000, 'running with progress');
    expect(running.progress.total_steps).toBe(12);
    expect(running.progress.fraction).toBeGreaterThan(0);
    expect(running.started_at).not.toBeNull();
    const done = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
      return r.body.status === 'succeeded' ? r.body : undefined;
    });
    expect(done.progress).toEqual({ step: 12, total_steps: 12, fraction: 1 });
    expect(done.images).toHaveLength(1);
    expect(done.finished_at).not.toBeNull();
    expect(done.timings.execution_ms).toBeGreaterThan(0);
    // The job's JSON keeps Express's weak ETag (only answers of over 1 MiB, images in base64, go without): a poll can revalidate.
    const polled = await request(stack.url).get(`/api/v1/images/jobs/${id}`).expect(200);
    const sha1 = createHash('sha1').update(polled.text, 'utf8').digest('base64').slice(0, 27);
    expect(polled.headers.etag).toBe(`W/"${Buffer.byteLength(polled.text).toString(16)}-${sha1}"`);
    await request(stack.url).get(`/api/v1/images/jobs/${id}`).set('If-None-Match', polled.headers.etag).expect(304);
    const img = await request(stack.url).get(`/api/v1/images/jobs/${id}/images/0`).buffer(true).expect(200);
    expect(img.headers['content-type']).toBe('image/png');
    expect(img.headers.etag).toBe(`"${done.images[0].sha256}"`);
    expect(img.headers['cache-control']).toContain('immutable');
    expect((img.body as Buffer).subarray(1, 4).toString()).toBe('PNG');
    expect(pngChunkTypes(img.body as Buffer).filter((t) => ['tEXt', 'iTXt', 'zTXt'].includes(t))).toEqual([]);
    expect(await sharp(img.body as Buffer).metadata()).toMatchObject({ width: 256, height: 256 });
    for (const inm of [img.headers.etag, `W/${img.headers.etag}`, `"other", ${img.headers.etag}`, '*']) {
      await request(stack.url).get(`/api/v1/images/jobs/${id}/images/0`).set('If-None-Match', inm).expect(304);
    }
    await request(stack.url).get(`/api/v1/images/jobs/${id}/images/0`).set('If-None-Match', '"other"').expect(200);
    await request(stack.url).get(`/api/v1/images/jobs/${id}/images/1`).expect(404);
  });

  const bad: Array<[string, string | object, number, string]> = [
    ['missing prompt', { width: 512 }, 400, 'validation_failed'],
    ['empty prompt', { prompt: '' }, 400, 'validation_failed'],
    ['blank prompt', { prompt: '   ' }, 400, 'validation_failed'],
    ['over-long prompt', { prompt: 'x'.repeat(1001) }, 400, 'validation_failed'],
    ['width 4000', { prompt: 'p', width: 4000 }, 400, 'validation_failed'],
    ['width 1000 (not a multiple of 16)', { prompt: 'p', width: 1000 }, 400, 'validation_failed'],
    ['width as a string', { prompt: 'p', width: '512' }, 400, 'validation_failed'],
    ['negative seed', { prompt: 'p', seed: -1 }, 400, 'validation_failed'],
    ['seed above 2^53-1', { prompt: 'p', seed: 2 ** 53 }, 400, 'validation_failed'],
    ['steps above the model limit', { prompt: 'p', num_inference_steps: 50 }, 400, 'validation_failed'],
    ['unknown model', { prompt: 'p', model: 'sdxl-turbo' }, 400, 'unknown_model'],
    ['unknown field', { prompt: 'p', workflow: { '1': {} } }, 400, 'validation_failed'],
    ['a JSON array', '[1,2]', 400, 'validation_failed'],
    ['malformed JSON', '{"prompt": "x",', 400, 'invalid_json'],
    ['a form-encoded body', 'prompt=x', 415, 'unsupported_media_type'],
    ['oversized body', JSON.stringify({ prompt: 'p', metadata: { a: 'x'.repeat(200_000) } }), 413, 'payload_too_large'],
  ];
  it.each(bad.map(([name, body, status, code]) => [`${name} → ${status} ${code}`, body, status, code] as const))('%s, nothing enqueued', async (_name, body, status, code) => {
    const before = await jobCount(stack);
    for (const path of ['/api/v1/images/jobs', '/api/v1/images/generate']) {
      const contentType = code === 'unsupported_media_type' ? 'application/x-www-form-urlencoded' : 'application/json';
      const res = await request(stack.url).post(path).set('Content-Type', contentType).send(typeof body === 'string' ? body : JSON.stringify(body)).expect(status);
      expect(res.body.error.code).toBe(code);
      expect(typeof res.body.error.message).toBe('string');
      expect(res.body.request_id).toBeTruthy();
    }
    expect(await jobCount(stack)).toBe(before);
  });

  it('unknown and malformed job ids are 404 job_not_found', async () => {
    const a = await request(stack.url).get('/api/v1/images/jobs/7d3c9a8e-2f71-4c55-9a61-0d1e2f3a4b5c').expect(404);
    expect(a.body.error.code).toBe('job_not_found');
    const b = await request(stack.url).get('/api/v1/images/jobs/..%2F..%2Fetc').expect(404);
    expect(b.body.error.code).toMatch(/not_found/);
  });

  it('lists the models with limits and whether the GPU has their files', async () => {
    for (const path of ['/api/v1/models', '/api/v1/images/models']) {
      const res = await request(stack.url).get(path).expect(200);
      const qwen = res.body.data.find((m: { id: string }) => m.id === 'qwen-image-lightning-4step');
      expect(qwen).toMatchObject({ default: true, defaults: { width: 1328, height: 1328, num_inference_steps: 4 } });
      expect(qwen.limits.width).toEqual({ min: 256, max: 2048, multiple_of: 16 });
      expect(qwen.available).toEqual({ [stack.sims[0].url]: true });
      expect(res.body.data.find((m: { id: string }) => m.id === 'smoke-test').available).toEqual({ [stack.sims[0].url]: true });
    }
  });

  it('serves health and the OpenAPI documents', async () => {
    const h = await request(stack.url).get('/health').expect(200);
    expect(h.body.info.redis.status).toBe('up');
    expect(h.body.info.comfyui.status).toBe('up');
    const doc = await request(stack.url).get('/docs-json').expect(200);
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/api/v1/images/generate', '/api/v1/images/jobs', '/api/v1/images/jobs/{id}']));
    await request(stack.url).get('/docs').redirects(1).expect(200);
    const redoc = await request(stack.url).get('/redoc').expect(200);
    expect(redoc.text).toContain('/docs-json');
  });
});

describe('failures the GPU reports', () => {
  let stack: Stack;
  let workflowsDir: string;
  beforeAll(async () => {
    // This ComfyUI lacks the LoRA file and the manifest forgets to require it: routing sends the job
    // there (every declared file is present) and ComfyUI answers value_not_in_list.
    workflowsDir = mkdtempSync(join(tmpdir(), 'fictures-images-'));
    cpSync('workflows', workflowsDir, { recursive: true });
    const manifestPath = join(workflowsDir, 'qwen-image-lightning-4step', 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { required_models: Array<{ folder: string }> };
    manifest.required_models = manifest.required_models.filter((r) => r.folder !== 'loras');
    writeFileSync(manifestPath, JSON.stringify(manifest));
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 5, models: { ...QWEN_FILES, loras: [] } }, env: { WORKFLOWS_DIR: workflowsDir } });
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(workflowsDir, { recursive: true, force: true });
  });

  it('a prompt ComfyUI rejects ends failed with its reason, without a retry', async () => {
    const created = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'p', width: 256, height: 256 }).expect(202);
    const done = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}`).expect(200);
      return r.body.status === 'failed' ? r.body : undefined;
    });
    expect(done.error.code).toBe('comfyui_rejected');
    expect(done.error.message).toContain('Value not in list');
    expect(done.error.message).toContain('Qwen-Image-Lightning-4steps-V2.0.safetensors');
    expect(done.attempts).toBe(1);
    expect(stack.sims[0].stats().submitted).toBe(0);
    expect(stack.sims[0].stats().rejected).toBe(1);
    // Availability follows the manifest's required files, as routing does: they are all there.
    const models = await request(stack.url).get('/api/v1/models').expect(200);
    expect(models.body.data.find((m: { id: string }) => m.id === 'qwen-image-lightning-4step').available).toEqual({ [stack.sims[0].url]: true });
  });

  it('the synchronous call answers 502 with the job id when the job fails', async () => {
    const res = await request(stack.url).post('/api/v1/images/generate').send({ prompt: 'p', width: 256, height: 256 }).expect(502);
    expect(res.body.error.code).toBe('comfyui_rejected');
    expect(res.body.error.details.job_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('the synchronous call times out into 504 with the job id, and the job can be polled', async () => {
    const slow = await Stack.start({ comfyui: 1, sim: { stepMs: 5, faults: { hang: true } }, env: { SYNC_TIMEOUT_MS: '300' } });
    try {
      const res = await request(slow.url).post('/api/v1/images/generate').send({ prompt: 'p', model: 'smoke-test', width: 256, height: 256 }).expect(504);
      expect(res.body.error.code).toBe('sync_timeout');
      const id = res.body.error.details.job_id as string;
      expect(res.headers.location).toContain(id);
      const job = await request(slow.url).get(`/api/v1/images/jobs/${id}`).expect(200);
      expect(['queued', 'running']).toContain(job.body.status);
    } finally {
      await slow.close();
    }
  });
});

describe('two GPUs', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 2, sim: { stepMs: 15 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('two workers share a burst of jobs and neither ComfyUI ever runs two prompts at once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: `burst ${i}`, width: 256, height: 256, num_inference_steps: 4 }).expect(202);
      ids.push(r.body.id);
    }
    const finals = await waitFor(async () => {
      const all = await Promise.all(ids.map(async (id) => (await request(stack.url).get(`/api/v1/images/jobs/${id}`)).body));
      return all.every((j) => j.status === 'succeeded') ? all : undefined;
    }, 30_000, 'all jobs succeeded');
    expect(finals).toHaveLength(12);
    const [a, b] = stack.sims.map((s) => s.stats());
    expect(a.maxConcurrent).toBe(1);
    expect(b.maxConcurrent).toBe(1);
    expect(a.executed).toBeGreaterThan(0);
    expect(b.executed).toBeGreaterThan(0);
    expect(a.executed + b.executed).toBe(12);
  });
});
