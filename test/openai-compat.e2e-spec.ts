import { randomUUID } from 'node:crypto';
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import { signImageClaim } from '@app/jobs';
import { meanDiff } from './support/pixels';
import { jobCount, TestKeys } from './support/security';
import { Stack } from './support/stack';

/** Known to the test, so it can make a link that is validly signed but expired. */
const SECRET = 'openai-compat-spec-secret-0123456789abcdef';
const W = 320;
const H = 256;
/** The part of the picture an OpenAI-style mask makes transparent (= edit there). */
const HOLE = { left: 96, top: 64, width: 128, height: 128 };

async function inputPng(): Promise<Buffer> {
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      raw[i] = Math.round((x / W) * 255);
      raw[i + 1] = Math.round((y / H) * 255);
      raw[i + 2] = x > W / 3 && x < W / 2 ? 230 : 40;
    }
  }
  return sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

/** OpenAI's convention: opaque = keep, transparent = edit. */
async function openAiMask(): Promise<Buffer> {
  const raw = Buffer.alloc(W * H * 4);
  for (let p = 0; p < W * H; p++) {
    raw[p * 4 + 3] = inHole(p) ? 0 : 255;
  }
  return sharp(raw, { raw: { width: W, height: H, channels: 4 } }).png().toBuffer();
}

function inHole(p: number): boolean {
  const x = p % W;
  const y = Math.floor(p / W);
  return x >= HOLE.left && x < HOLE.left + HOLE.width && y >= HOLE.top && y < HOLE.top + HOLE.height;
}

async function rgb(png: Buffer): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

const decode = (b64: string | undefined) => Buffer.from(b64 ?? '', 'base64');
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

describe('OpenAI-compatible images API (the official openai SDK against API → Redis → worker → simulator)', () => {
  let stack: Stack;
  let keys: TestKeys;
  let key: { id: string; key: string; auth: { Authorization: string } };
  let client: OpenAI;
  let input: Buffer;

  beforeAll(async () => {
    stack = await Stack.start({ env: { SIGNED_URL_SECRET: SECRET } });
    keys = TestKeys.of(stack);
    key = await keys.create('openai-sdk');
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: key.key, maxRetries: 0 });
    input = await inputPng();
  });

  afterAll(async () => {
    await keys?.close();
    await stack?.close();
  });

  it('generates with b64_json by default: a real PNG of the asked size, in OpenAI\'s response shape', async () => {
    const { data: res, response } = await client.images.generate({ prompt: 'a lighthouse at dusk (b64)', model: 'smoke-test', size: '512x384' }).withResponse();
    // The native job behind the answer, for its params and timings.
    const job = (await (await fetch(`${stack.url}/api/v1/images/jobs/${response.headers.get('x-job-id')}`, { headers: key.auth })).json()) as { status: string; params: Record<string, unknown> };
    expect(job).toMatchObject({ status: 'succeeded', params: { model: 'smoke-test', width: 512, height: 384, num_images: 1 } });
    expect(res).toMatchObject({ size: '512x384', output_format: 'png', quality: 'medium', background: 'opaque' });
    expect(typeof res.created).toBe('number');
    expect(res.data).toHaveLength(1);
    expect(res.data![0].revised_prompt).toBeNull();
    expect(res.data![0].url).toBeUndefined();
    const png = decode(res.data![0].b64_json);
    expect(png.subarray(0, 4).equals(PNG_MAGIC)).toBe(true);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);
  });

  it('url results are signed links a browser loads without a key; tampered or expired ones are 403; the job records the user', async () => {
    const res = await client.images.generate({ prompt: 'a harbour (url)', model: 'smoke-test', size: '256x256', response_format: 'url', user: 'end-user-7' });
    const url = res.data![0].url!;
    expect(res.data![0].b64_json).toBeUndefined();
    expect(url.startsWith(`${stack.url}/api/v1/images/signed/`)).toBe(true);

    const got = await fetch(url);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-type')).toBe('image/png');
    // Loadable by an <img> on the web app's own origin, not only on this API's site.
    expect(got.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    const meta = await sharp(Buffer.from(await got.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([256, 256]);

    const u = new URL(url);
    const signature = u.searchParams.get('signature')!;
    const tampered = new URL(url);
    tampered.searchParams.set('signature', `${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`);
    const bad = await fetch(tampered);
    expect(bad.status).toBe(403);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('signed_url_invalid');
    const later = new URL(url);
    later.searchParams.set('expires', String(Number(u.searchParams.get('expires')) + 3600));
    expect((await fetch(later)).status).toBe(403);

    // Validly signed, with an expiry in the past.
    const [jobId, index] = u.pathname.split('/').slice(-2);
    const past = Math.floor(Date.now() / 1000) - 5;
    const sig = signImageClaim(Buffer.from(SECRET), { jobId, index: Number(index), expires: past });
    const expired = await fetch(`${stack.url}/api/v1/images/signed/${jobId}/${index}?expires=${past}&signature=${sig}`);
    expect(expired.status).toBe(403);
    expect(((await expired.json()) as { error: { code: string } }).error.code).toBe('signed_url_expired');

    // The native job resource offers the same kind of link, and keeps its keyed url.
    const job = (await (await fetch(`${stack.url}/api/v1/images/jobs/${jobId}`, { headers: key.auth })).json()) as {
      metadata: Record<string, string>;
      images: Array<{ url: string; signed_url: string }>;
    };
    expect(job.metadata.openai_user).toBe('end-user-7');
    expect(job.images[0].url).toBe(`${stack.url}/api/v1/images/jobs/${jobId}/images/0`);
    const viaNative = await fetch(job.images[0].signed_url);
    expect(viaNative.status).toBe(200);
    expect((await fetch(job.images[0].url)).status).toBe(401);
  });

  it('n: 2 gives two distinct images from one job', async () => {
    const before = await jobCount(stack);
    const res = await client.images.generate({ prompt: 'two variants', model: 'smoke-test', size: '256x256', n: 2 });
    expect(res.data).toHaveLength(2);
    const [a, b] = res.data!.map((d) => decode(d.b64_json));
    expect(a.equals(b)).toBe(false);
    for (const png of [a, b]) expect((await sharp(png).metadata()).width).toBe(256);
    expect(await jobCount(stack)).toBe(before + 1);
  });

  it('a wide size on the default model: 1664x928', async () => {
    const res = await client.images.generate({ prompt: 'a book cover, wide', size: '1664x928' });
    expect(res.size).toBe('1664x928');
    const meta = await sharp(decode(res.data![0].b64_json)).metadata();
    expect([meta.width, meta.height]).toEqual([1664, 928]);
  });

  it('an unsupported size is a BadRequestError whose message lists the supported sizes; nothing is queued; x-should-retry: false', async () => {
    const before = await jobCount(stack);
    const err = await client.images.generate({ prompt: 'odd size', size: '1000x1000' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const e = err as InstanceType<typeof OpenAI.BadRequestError>;
    expect(e.status).toBe(400);
    expect(e.message).toContain('size 1000x1000 is not supported');
    expect(e.message).toContain('1328x1328');
    expect(e.message).toContain('1664x928');
    expect(e.param).toBe('size');
    expect(e.type).toBe('invalid_request_error');
    expect(e.headers?.get('x-should-retry')).toBe('false');
    expect(await jobCount(stack)).toBe(before);
  });

  it('other refusals: unknown model (NotFoundError), transparent background, stream, unknown fields, several images, variations', async () => {
    const unknown = await client.images.generate({ prompt: 'x', model: 'gpt-image-1' }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    expect((unknown as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('model');

    const transparent = await client.images.generate({ prompt: 'x', model: 'smoke-test', background: 'transparent' }).catch((e: unknown) => e);
    expect(transparent).toBeInstanceOf(OpenAI.BadRequestError);
    expect((transparent as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('background');

    const raw = await fetch(`${stack.url}/v1/images/generations`, {
      method: 'POST',
      headers: { ...key.auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', partial_images: 2 }),
    });
    expect(raw.status).toBe(400);
    expect(raw.headers.get('x-should-retry')).toBe('false');
    expect(await raw.json()).toEqual({ error: { message: 'partial_images is not a known field', type: 'invalid_request_error', param: 'partial_images', code: 'validation_failed' } });

    const badJson = await fetch(`${stack.url}/v1/images/generations`, { method: 'POST', headers: { ...key.auth, 'Content-Type': 'application/json' }, body: '{"prompt":' });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { code: string } }).error.code).toBe('invalid_json');

    const tooMany = await client.images.edit({ prompt: 'x', model: 'smoke-test', image: [await toFile(input, 'a.png', { type: 'image/png' }), await toFile(input, 'b.png', { type: 'image/png' })] }).catch((e: unknown) => e);
    expect(tooMany).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooMany as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('not_supported');

    const variation = await client.images.createVariation({ image: await toFile(input, 'a.png', { type: 'image/png' }) }).catch((e: unknown) => e);
    expect(variation).toBeInstanceOf(OpenAI.BadRequestError);
    expect((variation as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('not_supported');

    // An unknown /v1 path speaks OpenAI's shape too; the native API keeps its own.
    const nowhere = await fetch(`${stack.url}/v1/nowhere`, { headers: key.auth });
    expect(nowhere.status).toBe(404);
    expect(((await nowhere.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    const native = (await (await fetch(`${stack.url}/api/v1/nowhere`, { headers: key.auth })).json()) as { error: { code: string }; request_id: string };
    expect(native.error.code).toBe('not_found');
    expect(native.request_id).toBeDefined();
  });

  it('an edit with toFile is img2img: the result keeps the input\'s size and derives from it', async () => {
    const res = await client.images.edit({ prompt: 'the same at night', model: 'smoke-test', image: await toFile(input, 'scene.png', { type: 'image/png' }) });
    const out = decode(res.data![0].b64_json);
    const meta = await sharp(out).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', W, H]);
    expect(res.size).toBe(`${W}x${H}`);
    // Seen from a distance (blurred), the noise smoke-test's img2img adds averages out and the input remains.
    const soft = async (p: Buffer) => sharp(p).removeAlpha().blur(4).raw().toBuffer();
    const all = () => true;
    expect(meanDiff(await rgb(out), await rgb(input), all)).toBeGreaterThan(1);
    const other = await soft(await sharp(input).flop().png().toBuffer());
    expect(meanDiff(await soft(out), await soft(input), all)).toBeLessThan(meanDiff(await soft(out), other, all) / 2);

    // One file as image[] is the same request: within the window it attaches to the same job.
    const before = await jobCount(stack);
    const again = await client.images.edit({ prompt: 'the same at night', model: 'smoke-test', image: [await toFile(input, 'scene.png', { type: 'image/png' })] });
    expect(again.data![0].b64_json).toBe(res.data![0].b64_json);
    expect(await jobCount(stack)).toBe(before);
  });

  it('an edit with an OpenAI-style mask (transparent = edit) repaints only there; a bad image is invalid_image', async () => {
    const res = await client.images.edit({
      prompt: 'a red door',
      model: 'smoke-test',
      image: await toFile(input, 'scene.png', { type: 'image/png' }),
      mask: await toFile(await openAiMask(), 'mask.png', { type: 'image/png' }),
    });
    const out = await rgb(decode(res.data![0].b64_json));
    const src = await rgb(input);
    expect(meanDiff(out, src, (p) => !inHole(p))).toBe(0);
    expect(meanDiff(out, src, inHole)).toBeGreaterThan(1);

    const before = await jobCount(stack);
    const bad = await client.images.edit({ prompt: 'x', model: 'smoke-test', image: await toFile(Buffer.from('not an image at all'), 'x.png', { type: 'image/png' }) }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('invalid_image');
    expect(await jobCount(stack)).toBe(before);
  });

  it('output_format jpeg and webp come back as those bytes', async () => {
    const jpeg = await client.images.generate({ prompt: 'jpeg please', model: 'smoke-test', size: '256x256', output_format: 'jpeg', output_compression: 70 });
    expect(jpeg.output_format).toBe('jpeg');
    expect(decode(jpeg.data![0].b64_json).subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))).toBe(true);
    const webp = await client.images.generate({ prompt: 'webp please', model: 'smoke-test', size: '256x256', output_format: 'webp' });
    const bytes = decode(webp.data![0].b64_json);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('RIFF');
    expect(bytes.subarray(8, 12).toString('latin1')).toBe('WEBP');
  });

  it('quality low/high map to half/twice the model\'s default steps (Qwen: 2 and 8); medium keeps 4', async () => {
    const stepsOf = async (quality: 'low' | 'medium' | 'high') => {
      const res = await client.images.generate({ prompt: `steps for ${quality}`, size: '512x512', quality, response_format: 'url' });
      expect(res.quality).toBe(quality);
      const jobId = new URL(res.data![0].url!).pathname.split('/').slice(-2)[0];
      const job = (await (await fetch(`${stack.url}/api/v1/images/jobs/${jobId}`, { headers: key.auth })).json()) as { params: { num_inference_steps: number } };
      return job.params.num_inference_steps;
    };
    expect(await stepsOf('low')).toBe(2);
    expect(await stepsOf('medium')).toBe(4);
    expect(await stepsOf('high')).toBe(8);
  });

  it('without Idempotency-Key, the same key and body at once (a client retry) share one job', async () => {
    const before = await jobCount(stack);
    const send = () =>
      fetch(`${stack.url}/v1/images/generations`, {
        method: 'POST',
        headers: { ...key.auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'the window dedupe', model: 'smoke-test', size: '256x256' }),
      });
    const answers = await Promise.all([send(), send(), send()]);
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as Array<{ data: Array<{ b64_json: string }> }>;
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(new Set(bodies.map((b) => b.data[0].b64_json)).size).toBe(1);
    expect(await jobCount(stack)).toBe(before + 1);
  });

  it('past the key\'s rate limit: RateLimitError (429 rate_limit_exceeded) with retry-after', async () => {
    const slow = await keys.create('openai-rpm-1', { rpm: 1 });
    const limited = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: slow.key, maxRetries: 0 });
    await limited.images.generate({ prompt: 'first of the minute', model: 'smoke-test', size: '256x256' });
    const err = await limited.images.generate({ prompt: 'second of the minute', model: 'smoke-test', size: '256x256' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect([e.status, e.code, e.type]).toEqual([429, 'rate_limit_exceeded', 'rate_limit_error']);
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);
    expect(e.headers?.get('x-should-retry')).toBeNull();
  });

  it('lists and retrieves models in OpenAI\'s shape', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      expect(m).toMatchObject({ object: 'model', owned_by: 'fictures' });
      expect(typeof m.created).toBe('number');
      ids.push(m.id);
    }
    expect(ids).toEqual(expect.arrayContaining(['qwen-image-lightning-4step', 'qwen-image-lightning-8step', 'smoke-test']));
    expect(await client.models.retrieve('smoke-test')).toMatchObject({ id: 'smoke-test', object: 'model' });
    await expect(client.models.retrieve('no-such-model')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('/docs-json describes every /v1 route, tagged openai, with a 2xx schema and the error schema', async () => {
    const doc = (await (await fetch(`${stack.url}/docs-json`)).json()) as {
      paths: Record<string, Record<string, { tags?: string[]; responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>;
    };
    const routes = Object.entries(doc.paths).filter(([path]) => path.startsWith('/v1/'));
    const names = routes.flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    expect(names).toEqual(['GET /v1/models', 'GET /v1/models/{model}', 'POST /v1/images/edits', 'POST /v1/images/generations', 'POST /v1/images/variations']);
    for (const [, ops] of routes) {
      for (const op of Object.values(ops)) {
        expect(op.tags).toEqual(['openai']);
        expect(op.responses['200']?.content?.['application/json']?.schema).toBeDefined();
        expect(op.responses['401']?.content?.['application/json']?.schema).toEqual({ $ref: '#/components/schemas/OpenAiErrorDto' });
      }
    }
    expect(doc.paths['/v1/images/edits'].post).toHaveProperty(['requestBody', 'content', 'multipart/form-data']);
    // The signed download needs no key: no security requirement, unlike the document's default.
    expect(doc.paths['/api/v1/images/signed/{job_id}/{index}'].get).toHaveProperty('security', []);
  });

  it('a wrong key is an AuthenticationError (invalid_api_key), not retried', async () => {
    const stranger = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'fk_not-a-key', maxRetries: 0 });
    const err = await stranger.images.generate({ prompt: 'x', model: 'smoke-test' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    const e = err as InstanceType<typeof OpenAI.AuthenticationError>;
    expect([e.code, e.type]).toEqual(['invalid_api_key', 'authentication_error']);
    expect(e.headers?.get('x-should-retry')).toBe('false');
    await expect(stranger.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('the same Idempotency-Key twice is one job and the same images', async () => {
    const before = await jobCount(stack);
    const idem = `retry-${randomUUID()}`;
    const body = { prompt: 'idempotent lighthouse', model: 'smoke-test', size: '256x256' } as const;
    const [first, second] = await Promise.all([
      client.images.generate(body, { headers: { 'Idempotency-Key': idem } }),
      client.images.generate(body, { headers: { 'Idempotency-Key': idem } }),
    ]);
    const third = await client.images.generate(body, { headers: { 'Idempotency-Key': idem } });
    expect(await jobCount(stack)).toBe(before + 1);
    expect(second.data![0].b64_json).toBe(first.data![0].b64_json);
    expect(third.data![0].b64_json).toBe(first.data![0].b64_json);
    // The same key with another body is refused, not silently answered with the first job.
    const other = await client.images.generate({ ...body, prompt: 'another prompt' }, { headers: { 'Idempotency-Key': idem } }).catch((e: unknown) => e);
    expect(other).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((other as InstanceType<typeof OpenAI.UnprocessableEntityError>).code).toBe('idempotency_key_reused');
  });

  it('an SDK retry after a client timeout attaches to the running job: one GPU run, and the retry gets its images', async () => {
    const sim = stack.sims[0];
    const executedBefore = sim.stats().executed;
    const before = await jobCount(stack);
    // The image takes longer than the SDK waits: the first attempt times out, the retries find the same job.
    sim.faults.set({ viewDelayMs: 2_500 });
    try {
      const retrying = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: key.key, maxRetries: 6, timeout: 1_500 });
      const res = await retrying.images.generate({ prompt: 'slow lighthouse (retried)', model: 'smoke-test', size: '256x256' });
      expect((await sharp(decode(res.data![0].b64_json)).metadata()).width).toBe(256);
    } finally {
      sim.faults.set({ viewDelayMs: 0 });
    }
    expect(await jobCount(stack)).toBe(before + 1);
    expect(sim.stats().executed - executedBefore).toBe(1);
  }, 60_000);
});
