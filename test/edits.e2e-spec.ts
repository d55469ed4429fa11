import { createHash } from 'node:crypto';
import sharp from 'sharp';
import request from 'supertest';
import { ComfyUiClientFactory, ComfyUiHttpClient, type UploadImageOptions } from '@app/comfyui';
import { startReceiver, type LocalReceiver } from '@app/webhooks/testing/local-receiver';
import { meanDiff } from './support/pixels';
import { jobCount, TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const W = 320;
const H = 256;
/** The mask's white rectangle (repaint); everything else is kept. */
const HOLE = { left: 96, top: 64, width: 128, height: 128 };

/** A picture with structure (gradients and a bar), so "derives from the input" can be measured. */
async function inputPng(width = W, height = H): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = Math.round((x / width) * 255);
      raw[i + 1] = Math.round((y / height) * 255);
      raw[i + 2] = x > width / 3 && x < width / 2 ? 230 : 40;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

async function maskPng(width = W, height = H): Promise<Buffer> {
  const hole = await sharp({ create: { width: HOLE.width, height: HOLE.height, channels: 3, background: '#ffffff' } }).png().toBuffer();
  return sharp({ create: { width, height, channels: 3, background: '#000000' } })
    .composite([{ input: hole, left: HOLE.left, top: HOLE.top }])
    .png()
    .toBuffer();
}

const dataUrl = (png: Buffer, type = 'image/png') => `data:${type};base64,${png.toString('base64')}`;

async function rgb(png: Buffer): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

function inHole(p: number, width = W): boolean {
  const x = p % width;
  const y = Math.floor(p / width);
  return x >= HOLE.left && x < HOLE.left + HOLE.width && y >= HOLE.top && y < HOLE.top + HOLE.height;
}

/** One ComfyUI restart (its input folder wiped) right after the next upload: between upload and submit. */
const restartAfterUpload = { armed: false, fired: 0, uploads: 0 };

describe('edits: img2img and inpainting (API → Redis → worker → ComfyUI simulator)', () => {
  let stack: Stack;
  let keys: TestKeys;
  let a: { id: string; auth: { Authorization: string } };
  let b: { id: string; auth: { Authorization: string } };
  let receiver: LocalReceiver;
  let input: Buffer;
  let mask: Buffer;

  beforeAll(async () => {
    input = await inputPng();
    mask = await maskPng();
    receiver = await startReceiver((req, res) => {
      if (req.url === '/in.png') {
        res.writeHead(200, { 'Content-Type': 'image/png' });
        res.end(input);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    const factory = {
      create: (url: string) => {
        const client = new ComfyUiHttpClient(url, { requestTimeoutMs: 10_000, pollIntervalMs: 500 });
        const upload = client.uploadImage.bind(client);
        client.uploadImage = async (bytes: Buffer, opts: UploadImageOptions) => {
          const name = await upload(bytes, opts);
          restartAfterUpload.uploads++;
          if (restartAfterUpload.armed) {
            restartAfterUpload.armed = false;
            restartAfterUpload.fired++;
            await stack.sims[0].restart({ wipeInput: true });
          }
          return name;
        };
        return client;
      },
    };
    stack = await Stack.start({
      comfyui: 1,
      sim: { stepMs: 5 },
      env: { INPUT_URL_ALLOWED_HOSTS: '127.0.0.1' },
      overrides: { worker: [{ provide: ComfyUiClientFactory, useValue: factory }] },
    });
    keys = TestKeys.of(stack);
    a = await keys.create('editor-a');
    b = await keys.create('editor-b');
  });
  afterAll(async () => {
    keys?.close();
    await stack?.close();
    await receiver?.close();
  });

  async function run(body: Record<string, unknown>, auth = a.auth): Promise<{ id: string; png: Buffer; resource: Record<string, unknown> }> {
    const res = await request(stack.url).post('/api/v1/images/jobs').set(auth).send(body);
    expect({ status: res.status, body: res.status === 202 ? undefined : res.body }).toEqual({ status: 202, body: undefined });
    const id = res.body.id as string;
    const resource = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(auth);
      return ['succeeded', 'failed', 'canceled'].includes(r.body.status) ? (r.body as Record<string, unknown>) : undefined;
    }, 20_000, `job ${id}`);
    expect({ status: resource.status, error: resource.error ?? null }).toEqual({ status: 'succeeded', error: null });
    const png = (await request(stack.url).get(`/api/v1/images/jobs/${id}/images/0`).set(auth).buffer(true).parse((r, cb) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => cb(null, Buffer.concat(chunks)));
    }).expect(200)).body as Buffer;
    return { id, png, resource };
  }

  function upload(bytes: Buffer, auth = a.auth, contentType = 'image/png') {
    return request(stack.url).post('/api/v1/uploads').set(auth).set('Content-Type', contentType).send(bytes);
  }

  it('POST /uploads answers id, size, content type and sha256 (raw body and multipart)', async () => {
    const raw = await upload(input).expect(201);
    expect(raw.body).toMatchObject({ width: W, height: H, content_type: 'image/png', bytes: input.length, sha256: createHash('sha256').update(input).digest('hex') });
    expect(raw.body.id).toMatch(/^upl_[0-9a-f]{32}$/);
    const multi = await request(stack.url).post('/api/v1/uploads').set(a.auth).attach('image', mask, { filename: 'mask.png', contentType: 'image/png' }).expect(201);
    expect(multi.body).toMatchObject({ width: W, height: H, sha256: createHash('sha256').update(mask).digest('hex') });
  });

  it('GET /models lists each model\'s modes', async () => {
    const res = await request(stack.url).get('/api/v1/models').set(a.auth).expect(200);
    const modes = Object.fromEntries((res.body.data ?? res.body).map((m: { id: string; modes: string[] }) => [m.id, m.modes]));
    expect(modes['smoke-test']).toEqual(['text-to-image', 'img2img', 'inpaint']);
    expect(modes['qwen-image-lightning-4step']).toEqual(['text-to-image', 'img2img', 'inpaint']);
  });

  it('img2img from a data: URL keeps the input\'s size and visibly derives from it', async () => {
    const { png, resource } = await run({ prompt: 'p', model: 'smoke-test', image: dataUrl(input), strength: 0.3, seed: 7 });
    expect((resource.params as Record<string, unknown>)).toMatchObject({ mode: 'img2img', strength: 0.3, width: W, height: H });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
    // Seen from a distance (blurred), noise averages out and the input's picture remains.
    const soft = async (p: Buffer) => sharp(p).removeAlpha().blur(4).raw().toBuffer();
    const out = await soft(png);
    const src = await soft(input);
    const other = await soft(await sharp(input).flop().png().toBuffer());
    expect(meanDiff(await rgb(png), await rgb(input))).toBeGreaterThan(1);
    expect(meanDiff(out, src)).toBeLessThan(meanDiff(out, other) / 3);
  });

  it('img2img from an upload id on the Qwen graph (VAEEncode → KSampler denoise), output size from width/height', async () => {
    const up = await upload(input).expect(201);
    const { png, resource } = await run({ prompt: 'a lighthouse', image: up.body.id, strength: 0.25, width: 256, height: 256, seed: 3 });
    expect((resource.params as Record<string, unknown>)).toMatchObject({ model: 'qwen-image-lightning-4step', mode: 'img2img', width: 256, height: 256 });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([256, 256]);
    const scaled = await rgb(await sharp(input).resize(256, 256, { fit: 'fill' }).png().toBuffer());
    const out = await rgb(png);
    // strength 0.25: three quarters of every pixel is the (scaled) input.
    expect(meanDiff(out, scaled)).toBeLessThan(40);
  });

  it('the synchronous route takes the same edit fields and answers the edited image', async () => {
    const res = await request(stack.url).post('/api/v1/images/generate').set(a.auth)
      .send({ prompt: 'p', model: 'smoke-test', image: dataUrl(input), strength: 0.2, seed: 9 });
    expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 200, code: undefined });
    expect([res.body.width, res.body.height]).toEqual([W, H]);
  });

  it('img2img from an https URL fetched by the worker (a loopback receiver allowed for tests)', async () => {
    const { png } = await run({ prompt: 'p', model: 'smoke-test', image: receiver.url("/in.png"), seed: 5 });
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
    expect(receiver.requests.some((r) => r.url === '/in.png')).toBe(true);
  });

  it('a URL to a private address is refused before a job exists', async () => {
    const before = await jobCount(stack);
    for (const url of ['https://10.1.2.3/in.png', 'https://192.168.0.10/x.png', 'https://localhost/x.png', 'http://example.com/x.png', 'https://[::1]/x.png']) {
      const res = await request(stack.url).post('/api/v1/images/jobs').set(a.auth).send({ prompt: 'p', model: 'smoke-test', image: url });
      expect({ url, status: res.status, code: res.body.error?.code }).toEqual({ url, status: 422, code: 'invalid_image_url' });
    }
    expect(await jobCount(stack)).toBe(before);
  });

  it('inpainting changes only the masked area', async () => {
    const { png, resource } = await run({ prompt: 'p', model: 'smoke-test', image: dataUrl(input), mask: dataUrl(mask), seed: 11 });
    expect((resource.params as Record<string, unknown>)).toMatchObject({ mode: 'inpaint' });
    const out = await rgb(png);
    const src = await rgb(input);
    expect(meanDiff(out, src, (p) => !inHole(p))).toBeLessThan(0.5);
    expect(meanDiff(out, src, inHole)).toBeGreaterThan(20);
  });

  it('inpainting on the Qwen graph keeps every pixel outside the mask', async () => {
    const up = await upload(mask).expect(201);
    const { png } = await run({ prompt: 'a red door', image: dataUrl(input), mask: up.body.id, seed: 12 });
    const out = await rgb(png);
    const src = await rgb(input);
    expect(meanDiff(out, src, (p) => !inHole(p))).toBeLessThan(0.5);
    expect(meanDiff(out, src, inHole)).toBeGreaterThan(5);
  });

  it('every bad input gets its code and enqueues nothing', async () => {
    const truncated = input.subarray(0, Math.floor(input.length / 2));
    const wide = await sharp({ create: { width: 4097, height: 16, channels: 3, background: '#808080' } }).png().toBuffer();
    const huge = Buffer.concat([input, Buffer.alloc(20 * 1024 * 1024)]);
    const smallMask = await maskPng(160, 128);
    const ofA = (await upload(input).expect(201)).body.id as string;
    const cases: Array<[string, Record<string, unknown>, number, string]> = [
      ['not an image', { image: dataUrl(Buffer.from('hello, world')) }, 400, 'invalid_image'],
      ['a GIF', { image: dataUrl(Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), 'image/png') }, 400, 'invalid_image'],
      ['not a data URL', { image: 'data:text/plain,hello' }, 400, 'invalid_image'],
      ['truncated', { image: dataUrl(truncated) }, 400, 'invalid_image'],
      ['too large (bytes)', { image: dataUrl(huge) }, 413, 'image_too_large'],
      ['too many pixels a side', { image: dataUrl(wide) }, 413, 'image_too_large'],
      ['mask size mismatch', { image: dataUrl(input), mask: dataUrl(smallMask) }, 422, 'mask_size_mismatch'],
      ['strength above 1', { image: dataUrl(input), strength: 1.5 }, 400, 'validation_failed'],
      ['strength without image', { strength: 0.5 }, 400, 'validation_failed'],
      ['mask without image', { mask: dataUrl(mask) }, 400, 'validation_failed'],
      ['unknown upload id', { image: `upl_${'0'.repeat(32)}` }, 400, 'invalid_image'],
    ];
    const before = await jobCount(stack);
    for (const [name, extra, status, code] of cases) {
      const res = await request(stack.url).post('/api/v1/images/jobs').set(a.auth).send({ prompt: 'p', model: 'smoke-test', ...extra });
      expect({ name, status: res.status, code: res.body.error?.code }).toEqual({ name, status, code });
    }
    // Another key's upload answers like one that never was.
    const foreign = await request(stack.url).post('/api/v1/images/jobs').set(b.auth).send({ prompt: 'p', model: 'smoke-test', image: ofA });
    expect({ status: foreign.status, code: foreign.body.error?.code }).toEqual({ status: 400, code: 'invalid_image' });
    // The synchronous route checks the same way.
    const sync = await request(stack.url).post('/api/v1/images/generate').set(a.auth).send({ prompt: 'p', model: 'smoke-test', image: dataUrl(truncated) });
    expect({ status: sync.status, code: sync.body.error?.code }).toEqual({ status: 400, code: 'invalid_image' });
    expect(await jobCount(stack)).toBe(before);
    // Uploads are checked the same way.
    expect((await upload(Buffer.from('hello'), a.auth, 'image/png').expect(400)).body.error.code).toBe('invalid_image');
    expect((await upload(truncated).expect(400)).body.error.code).toBe('invalid_image');
    expect((await upload(wide).expect(413)).body.error.code).toBe('image_too_large');
  });

  it('a seeded edit is answered from the cache only for the same input bytes', async () => {
    const body = { prompt: 'cache me', model: 'smoke-test', image: dataUrl(input), strength: 0.4, seed: 77 };
    const first = await run(body);
    expect(first.resource.cached ?? false).toBe(false);
    const again = await run(body);
    expect(again.resource.cached).toBe(true);
    const other = await run({ ...body, image: dataUrl(await sharp(input).flop().png().toBuffer()) });
    expect(other.resource.cached ?? false).toBe(false);
    const res = await request(stack.url).post('/api/v1/images/jobs').set(a.auth).send({ ...body, num_images: 2 });
    expect({ status: res.status, field: res.body.error?.details?.[0]?.field }).toEqual({ status: 400, field: 'num_images' });
  });

  it('the rest of a submission keeps BODY_LIMIT_BYTES even where an image may be large', async () => {
    const res = await request(stack.url).post('/api/v1/images/jobs').set(a.auth)
      .send({ prompt: 'p', model: 'smoke-test', image: dataUrl(input), negative_prompt: 'x'.repeat(stack.env.BODY_LIMIT_BYTES) });
    expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 413, code: 'payload_too_large' });
  });

  it('a ComfyUI restarted between upload and submit gets the input again and the job succeeds', async () => {
    const up = await upload(input).expect(201);
    const uploadsBefore = restartAfterUpload.uploads;
    restartAfterUpload.armed = true;
    const { png } = await run({ prompt: 'p', model: 'smoke-test', image: up.body.id, seed: 21 });
    expect(restartAfterUpload.fired).toBe(1);
    // The first upload was lost with the restart; the "Invalid image file" answer made the worker upload again.
    expect(restartAfterUpload.uploads - uploadsBefore).toBe(2);
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([W, H]);
  });
});
