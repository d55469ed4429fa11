import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import request from 'supertest';
import { launchOfflineBrowser, type OfflineBrowser } from './support/browser';
import { TestKeys } from './support/security';
import { Stack } from './support/stack';

/** Screenshots of a run (git-ignored); docs/playground.png is one of them, committed by hand. */
const ARTIFACTS = path.join(__dirname, 'artifacts');
const QWEN = 'qwen-image-lightning-4step';
const WAIT = 60_000;

function directives(csp: string): Map<string, string[]> {
  return new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...values]) => [name, values]));
}

describe('playground: the page in a real browser (Chromium), offline, keys required', () => {
  let stack: Stack;
  let keys: TestKeys;
  let auth: { Authorization: string };
  let key: string;
  let browser: OfflineBrowser;
  let tmp: string;
  const pages: Page[] = [];

  beforeAll(async () => {
    // Sampling steps slow enough that a browser sees the progress bar move and can cancel mid-run.
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 500 } });
    keys = TestKeys.of(stack);
    ({ key, auth } = await keys.create('playground'));
    tmp = await mkdtemp(path.join(os.tmpdir(), 'playground-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await launchOfflineBrowser();
  }, 120_000);

  afterEach(async () => {
    const violations: string[] = [];
    if (!browser) return; // beforeAll failed: nothing was opened
    for (const p of pages.splice(0)) {
      violations.push(...(await browser.cspViolations(p).catch(() => [])));
      await p.close().catch(() => undefined);
    }
    // Every test: no request left 127.0.0.1 and no page broke its CSP.
    expect({ blocked: browser.blocked.splice(0), csp: violations }).toEqual({ blocked: [], csp: [] });
  });

  afterAll(async () => {
    await browser?.close();
    await keys?.close();
    await stack?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }, 60_000);

  /** A new tab on /playground with the key typed in (or not), once the models are listed. */
  async function openPlayground(width = 1440, withKey = true): Promise<Page> {
    const page = await browser.newPage(width);
    pages.push(page);
    await page.goto(`${stack.url}/playground`);
    if (withKey) {
      await page.getByLabel('API key', { exact: true }).fill(key);
      await page.getByLabel('API key', { exact: true }).press('Tab');
      await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, null, { timeout: WAIT });
    }
    return page;
  }

  async function prompt(page: Page, text: string): Promise<void> {
    await page.getByLabel('Prompt', { exact: true }).fill(text);
  }

  /** The result images once every one has loaded: natural size and alt text. */
  async function resultImages(page: Page, count: number): Promise<Array<{ w: number; h: number; alt: string }>> {
    await page.waitForFunction(
      (n) => {
        const imgs = Array.from(document.querySelectorAll<HTMLImageElement>('#results img'));
        return imgs.length === n && imgs.every((i) => i.complete && i.naturalWidth > 0);
      },
      count,
      { timeout: WAIT },
    );
    return page.$$eval('#results img', (imgs) => imgs.map((i) => ({ w: (i as HTMLImageElement).naturalWidth, h: (i as HTMLImageElement).naturalHeight, alt: (i as HTMLImageElement).alt })));
  }

  async function shownJobId(page: Page): Promise<string> {
    return (await page.locator('#run-id').textContent())?.trim() ?? '';
  }

  async function status(page: Page, wanted: string): Promise<void> {
    await page.waitForFunction((s) => document.getElementById('run-status')?.textContent === s, wanted, { timeout: WAIT });
  }

  async function apiJob(id: string): Promise<{ status: string; params: Record<string, unknown>; images: unknown[] }> {
    return (await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(auth).expect(200)).body;
  }

  it('serves the page and its assets same-origin under a strict CSP; / points browsers to it', async () => {
    const page = await request(stack.url).get('/playground').expect(200);
    expect(page.headers['content-type']).toContain('text/html');
    const d = directives(page.headers['content-security-policy'] as string);
    expect(Object.fromEntries(d)).toEqual({
      'default-src': ["'none'"],
      'script-src': ["'self'"],
      'style-src': ["'self'"],
      'img-src': ["'self'", 'data:', 'blob:'],
      'connect-src': ["'self'"],
      'base-uri': ["'none'"],
      'form-action': ["'none'"],
      'frame-ancestors': ["'none'"],
    });
    // Every script and style the page loads is a file of this origin; no inline script, no style attribute.
    const refs = [...page.text.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(refs).toEqual(expect.arrayContaining(['/playground/assets/playground.css', '/playground/assets/main.js']));
    const scripts = [...page.text.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts.length).toBeGreaterThan(0);
    for (const tag of scripts) expect(tag).toMatch(/\bsrc="\/playground\/assets\/[a-z-]+\.js"/);
    expect(page.text).not.toMatch(/\sstyle=|\son[a-z]+=|<style/i);
    for (const ref of refs.filter((r) => r.startsWith('/playground/'))) await request(stack.url).get(ref).expect(200);
    const js = await request(stack.url).get('/playground/assets/main.js').expect(200).expect('Content-Type', /javascript/);
    expect(js.headers['content-security-policy']).toBe(page.headers['content-security-policy']);
    expect(js.headers['x-content-type-options']).toBe('nosniff');
    // The JSON API keeps its own CSP, which allows nothing.
    expect((await request(stack.url).get('/health/live')).headers['content-security-policy']).toMatch(/^default-src 'none'/);
    expect((await request(stack.url).get('/health/live')).headers['content-security-policy']).not.toContain('script-src');
    await request(stack.url).get('/playground/assets/main.js').set('If-None-Match', js.headers.etag as string).expect(304);
    await request(stack.url).get('/playground/assets/nope.js').expect(404).expect((r) => expect(r.body.error.code).toBe('not_found'));
    await request(stack.url).get('/playground/assets/..%2Fplayground.controller.ts').expect(404);
    // Public although keys are required: the page holds nothing; its API calls carry the key.
    await request(stack.url).get('/').set('Accept', 'text/html,application/xhtml+xml,*/*;q=0.8').expect(302).expect('Location', '/playground');
    for (const accept of ['application/json', '*/*']) {
      const root = await request(stack.url).get('/').set('Accept', accept).expect(200);
      expect(root.body).toMatchObject({ playground: '/playground', docs: '/docs', redoc: '/redoc' });
    }
    await request(stack.url).get('/api/v1/models').expect(401);
  });

  it('the guards of these tests work: a request off 127.0.0.1 is blocked and recorded, a CSP violation is reported', async () => {
    const page = await openPlayground(1440, false);
    // An inline style attribute and a fetch to another origin: the CSP refuses both and the page hears of it.
    await page.evaluate(async () => {
      document.body.setAttribute('style', 'color: red');
      await fetch('http://127.0.0.2:9/x').catch(() => undefined);
    });
    await page.waitForFunction(() => (window as unknown as { __csp: string[] }).__csp.length >= 2, null, { timeout: WAIT });
    const seen = await browser.cspViolations(page);
    expect(seen).toEqual(expect.arrayContaining([expect.stringMatching(/^style-src/), expect.stringMatching(/^connect-src http:\/\/127\.0\.0\.2:9/)]));
    // Nothing reached the network for those; a navigation elsewhere is stopped by the route instead.
    expect(browser.blocked).toEqual([]);
    await expect(page.goto('http://example.invalid/')).rejects.toThrow();
    expect(browser.blocked.splice(0)).toEqual(['http://example.invalid/']);
    pages.splice(pages.indexOf(page), 1);
    await page.close();
  }, 90_000);

  it('asks for the API key on a 401, keeps it in the tab (sessionStorage) across a reload, and is keyboard-usable', async () => {
    const page = await openPlayground(1440, false);
    const keyError = page.locator('#error-api_key');
    await keyError.waitFor({ state: 'visible', timeout: WAIT });
    const api401 = await request(stack.url).get('/api/v1/models').expect(401);
    expect(await keyError.textContent()).toContain(api401.body.error.message);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('api_key');

    // Keyboard only: type the key, Tab on to the prompt, then the negative prompt, then the model.
    await page.keyboard.type(key);
    await page.keyboard.press('Tab');
    await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, null, { timeout: WAIT });
    expect(await keyError.isHidden()).toBe(true);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('prompt');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('negative_prompt');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('model');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, null, { timeout: WAIT });
    expect(await page.getByLabel('API key', { exact: true }).inputValue()).toBe(key);
    // Every control has a label, and every button is a <button>.
    const unlabeled = await page.$$eval('input:not([type=radio]):not([type=hidden]), select, textarea', (els) => els.filter((e) => !(e as HTMLInputElement).labels?.length).map((e) => e.id));
    expect(unlabeled).toEqual([]);
    expect(await page.locator('[role=button]:not(button)').count()).toBe(0);
  }, 90_000);

  it('prompt → Generate: the progress bar moves step by step, an image of the asked size appears', async () => {
    const page = await openPlayground(1440);
    // The page's weight as the browser loaded it (uncompressed: the API sends it as is).
    const weight = await page.evaluate(() => {
      const kb = (pred: (e: PerformanceResourceTiming) => boolean) =>
        Math.round((performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter(pred).reduce((n, e) => n + e.decodedBodySize, 0) / 102.4) / 10;
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      return { js: kb((e) => e.name.endsWith('.js')), css: kb((e) => e.name.endsWith('.css')), html: Math.round(nav.decodedBodySize / 102.4) / 10 };
    });
    console.log(`playground page weight: ${weight.js} KB JS, ${weight.css} KB CSS, ${weight.html} KB HTML (uncompressed)`);
    // A budget, not a timing: a framework or a bundle slipping in would show here.
    expect(weight.js).toBeGreaterThan(0);
    expect(weight.js + weight.css).toBeLessThan(150);
    await page.evaluate(() => {
      const w = window as unknown as { __progress: number[] };
      w.__progress = [];
      const bar = document.getElementById('run-progress') as HTMLProgressElement;
      new MutationObserver(() => w.__progress.push(bar.value)).observe(bar, { attributes: true, attributeFilter: ['value'] });
    });
    await page.getByLabel('Model', { exact: true }).selectOption(QWEN);
    await page.getByLabel('By width and height', { exact: true }).check();
    await page.getByLabel('Width', { exact: true }).fill('640');
    await page.getByLabel('Height', { exact: true }).fill('384');
    await page.getByLabel('Steps', { exact: true }).fill('6');
    await prompt(page, 'a lighthouse at dusk');
    await page.getByRole('button', { name: 'Generate' }).click();
    const images = await resultImages(page, 1);
    expect(images).toEqual([{ w: 640, h: 384, alt: expect.stringContaining('a lighthouse at dusk') }]);
    await status(page, 'succeeded');
    const seen = await page.evaluate(() => (window as unknown as { __progress: number[] }).__progress);
    // 6 sampling steps: the bar passed through values strictly between empty and full, in order, then full.
    const partial = seen.filter((v) => v > 0 && v < 1);
    expect(new Set(partial).size).toBeGreaterThanOrEqual(2);
    expect([...partial].sort((a, b) => a - b)).toEqual(partial);
    expect(seen[seen.length - 1]).toBe(1);
    expect(await page.locator('#run-steps').textContent()).toBe('step 6 of 6');
    const id = await shownJobId(page);
    const job = await apiJob(id);
    expect(job).toMatchObject({ status: 'succeeded', params: { model: QWEN, width: 640, height: 384, num_inference_steps: 6, prompt: 'a lighthouse at dusk' } });
    const meta = await page.locator('#run-meta').textContent();
    expect(meta).toContain(`${job.params.seed}`);
    expect(meta).toContain('640 × 384');
    expect(meta).toMatch(/total \d+ ms/);
    const download = page.getByRole('link', { name: 'Download' });
    expect(await download.getAttribute('download')).toBe(`${id}-0.png`);
    expect(await download.getAttribute('href')).toMatch(/^blob:/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-1440.png'), fullPage: true });
  }, 120_000);

  it('three variants in one job: three images; Reuse seed, then the same seeded request says cached, unless the cache is unticked; keyboard submits', async () => {
    const page = await openPlayground(375);
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await page.getByLabel('Aspect ratio', { exact: true }).selectOption('16:9');
    await page.getByLabel('Number of images', { exact: true }).fill('3');
    await prompt(page, 'three red foxes');
    await page.getByRole('button', { name: 'Generate' }).focus();
    await page.keyboard.press('Enter');
    const images = await resultImages(page, 3);
    expect(images).toEqual([1, 2, 3].map((i) => ({ w: 768, h: 432, alt: `three red foxes (image ${i} of 3)` })));
    const first = await shownJobId(page);
    expect((await apiJob(first)).images).toHaveLength(3);

    expect(await page.locator('#run-meta').textContent()).not.toContain('cached');

    // Reuse seed: that seed, asked for explicitly, renders the same images; asked again, the cache answers.
    await page.getByRole('button', { name: 'Reuse seed' }).click();
    const seed = (await apiJob(first)).params.seed;
    expect(await page.getByLabel('Seed value', { exact: true }).inputValue()).toBe(String(seed));
    let previous = first;
    for (const cached of [false, true]) {
      await page.getByRole('button', { name: 'Generate' }).click();
      await page.waitForFunction((id) => document.getElementById('run-id')?.textContent !== id, previous, { timeout: WAIT });
      await resultImages(page, 3);
      previous = await shownJobId(page);
      expect(await apiJob(previous)).toMatchObject({ status: 'succeeded', cached, params: { seed } });
      expect({ cached, meta: await page.locator('#run-meta').textContent() }).toEqual({ cached, meta: cached ? expect.stringContaining('cached') : expect.not.stringContaining('cached') });
    }
    expect(await page.locator('#results figcaption').first().textContent()).toContain('cached');
    // Unticked, the same request renders again.
    await page.getByLabel('Answer from the result cache when this exact seeded request was made before', { exact: true }).uncheck();
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction((id) => document.getElementById('run-id')?.textContent !== id, previous, { timeout: WAIT });
    await resultImages(page, 3);
    expect(await apiJob(await shownJobId(page))).toMatchObject({ status: 'succeeded', cached: false, params: { seed } });
    expect(await page.locator('#run-meta').textContent()).not.toContain('cached');
    // 375 px: nothing wider than the screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-375.png'), fullPage: true });
  }, 120_000);

  it('a width the model refuses, set in the form: the API\'s own message next to the width field, and no job', async () => {
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption(QWEN);
    await page.getByLabel('By width and height', { exact: true }).check();
    await page.getByLabel('Width', { exact: true }).fill('1000');
    await prompt(page, 'a bad width');
    await page.getByRole('button', { name: 'Generate' }).click();
    const widthError = page.locator('#error-width');
    await widthError.waitFor({ state: 'visible', timeout: WAIT });
    const api = await request(stack.url).post('/api/v1/images/jobs').set(auth).send({ prompt: 'a bad width', model: QWEN, width: 1000, height: 1328, output_format: 'png', num_images: 1 }).expect(400);
    const message = (api.body.error.details as Array<{ field: string; message: string }>).find((d) => d.field === 'width')?.message;
    expect(message).toBeTruthy();
    expect(await widthError.textContent()).toBe(message);
    expect(await page.getByLabel('Width', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#run').isHidden()).toBe(true);
    expect(await page.evaluate(() => localStorage.getItem('fictures.playground.history') ?? '')).not.toContain('a bad width');
  }, 90_000);

  it('a job behind others shows its queue position, then runs once they are gone', async () => {
    // Three slow jobs of the same key fill the one GPU (one running, one held in ComfyUI, one waiting).
    const slow = { prompt: 'ahead in the queue', model: QWEN, width: 256, height: 256, num_inference_steps: 16 };
    const ahead: string[] = [];
    for (let i = 0; i < 3; i++) ahead.push((await request(stack.url).post('/api/v1/images/jobs').set(auth).send(slow).expect(202)).body.id);
    try {
      const page = await openPlayground(1440);
      await page.getByLabel('Model', { exact: true }).selectOption(QWEN);
      await page.getByLabel('By width and height', { exact: true }).check();
      await page.getByLabel('Width', { exact: true }).fill('256');
      await page.getByLabel('Height', { exact: true }).fill('256');
      await prompt(page, 'waiting my turn');
      await page.getByRole('button', { name: 'Generate' }).click();
      const queue = page.locator('#run-queue');
      await queue.waitFor({ state: 'visible', timeout: WAIT });
      const id = await shownJobId(page);
      const shown = await queue.textContent();
      const job = (await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(auth).expect(200)).body as { status: string; queue_position: number };
      expect(job.status).toBe('queued');
      expect(shown).toBe(job.queue_position === 0 ? 'Next in the queue' : `In the queue: ${job.queue_position} job${job.queue_position === 1 ? '' : 's'} ahead`);
      expect(await page.locator('#run-status').textContent()).toBe('queued');
      for (const a of ahead) await request(stack.url).delete(`/api/v1/images/jobs/${a}`).set(auth);
      await resultImages(page, 1);
      await status(page, 'succeeded');
      expect(await queue.isHidden()).toBe(true);
    } finally {
      for (const a of ahead) await request(stack.url).delete(`/api/v1/images/jobs/${a}`).set(auth);
    }
  }, 120_000);

  it('a job that fails on the GPU shows its status and ComfyUI\'s reason', async () => {
    stack.sims[0].faults.set({ executionError: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
    try {
      const page = await openPlayground(1440);
      await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
      await prompt(page, 'too big for the GPU');
      await page.getByRole('button', { name: 'Generate' }).click();
      await status(page, 'failed');
      const job = (await request(stack.url).get(`/api/v1/images/jobs/${await shownJobId(page)}`).set(auth).expect(200)).body as { status: string; attempts: number; error: { code: string; message: string } };
      expect(job.status).toBe('failed');
      expect(await page.locator('#run-error').textContent()).toBe(`${job.error.message} (${job.error.code})`);
      expect(job.error.message).toContain('out of memory');
      expect(await page.locator('#run-meta').textContent()).toContain(`Attempts${job.attempts}`);
      expect(await page.locator('#results img').count()).toBe(0);
      expect(await page.locator('#cancel').isHidden()).toBe(true);
    } finally {
      stack.sims[0].faults.set({ executionError: null });
    }
  }, 120_000);

  it('Cancel ends a running job as canceled', async () => {
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption(QWEN);
    await page.getByLabel('By width and height', { exact: true }).check();
    await page.getByLabel('Width', { exact: true }).fill('256');
    await page.getByLabel('Height', { exact: true }).fill('256');
    await page.getByLabel('Steps', { exact: true }).fill('16');
    await prompt(page, 'a slow one');
    await page.getByRole('button', { name: 'Generate' }).click();
    await status(page, 'running');
    await page.waitForFunction(() => (document.getElementById('run-progress') as HTMLProgressElement).value > 0, null, { timeout: WAIT });
    await page.getByRole('button', { name: 'Cancel' }).click();
    await status(page, 'canceled');
    const id = await shownJobId(page);
    expect((await apiJob(id)).status).toBe('canceled');
    expect(await page.locator('#cancel').isHidden()).toBe(true);
    expect(await page.locator('#results img').count()).toBe(0);
  }, 120_000);

  it('img2img from an uploaded file, then inpainting with a mask painted by the brush', async () => {
    const file = path.join(tmp, 'sketch.png');
    writeFileSync(file, await sharp({ create: { width: 384, height: 256, channels: 3, background: { r: 200, g: 60, b: 40 } } }).png().toBuffer());
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await page.getByLabel('Input image', { exact: true }).setInputFiles(file);
    await page.locator('#input-info').filter({ hasText: '384 × 256' }).waitFor({ timeout: WAIT });
    await page.getByLabel('Edit', { exact: true }).selectOption('img2img');
    await prompt(page, 'the sketch, repainted');
    await page.getByRole('button', { name: 'Generate' }).click();
    expect(await resultImages(page, 1)).toEqual([{ w: 384, h: 256, alt: expect.stringContaining('the sketch, repainted') }]);
    const img2img = await apiJob(await shownJobId(page));
    expect(img2img).toMatchObject({ status: 'succeeded', params: { mode: 'img2img', width: 384, height: 256 } });

    // Inpaint: a stroke across the image's middle with the brush.
    await page.getByLabel('Edit', { exact: true }).selectOption('inpaint');
    const box = (await page.locator('#mask-canvas').boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.5);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.8, box.y + box.height * 0.5, { steps: 8 });
    await page.mouse.up();
    const painted = await page.evaluate(() => {
      const c = document.getElementById('mask-canvas') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return { n, w: c.width, h: c.height };
    });
    expect(painted.w).toBe(384);
    expect(painted.h).toBe(256);
    expect(painted.n).toBeGreaterThan(0);
    expect(painted.n).toBeLessThan(384 * 256);
    const before = await shownJobId(page);
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction((id) => document.getElementById('run-id')?.textContent !== id, before, { timeout: WAIT });
    expect(await resultImages(page, 1)).toEqual([{ w: 384, h: 256, alt: expect.stringContaining('the sketch, repainted') }]);
    const inpainted = await shownJobId(page);
    expect(await apiJob(inpainted)).toMatchObject({ status: 'succeeded', params: { mode: 'inpaint' } });
    // The painted stroke is what changed: a corner keeps the input's colour, the stroke's middle does not.
    const png = await request(stack.url).get(`/api/v1/images/jobs/${inpainted}/images/0`).set(auth).buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    }).expect(200);
    const { data, info } = await sharp(png.body as Buffer).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
    expect(px(5, 5)).toEqual([200, 60, 40]);
    expect(px(info.width - 5, info.height - 5)).toEqual([200, 60, 40]);
    const stroke = [0.3, 0.4, 0.5, 0.6, 0.7].map((f) => px(Math.round(info.width * f), Math.round(info.height * 0.5)));
    expect(stroke.filter((p) => p.join() !== '200,60,40').length).toBeGreaterThanOrEqual(4);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-inpaint.png'), fullPage: true });
  }, 120_000);

  it('an input image the API refuses (over 4096 px a side): the API\'s message next to the image field', async () => {
    const file = path.join(tmp, 'too-wide.png');
    writeFileSync(file, await sharp({ create: { width: 4112, height: 16, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer());
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await page.getByLabel('Input image', { exact: true }).setInputFiles(file);
    await page.locator('#input-info').filter({ hasText: '4112 × 16' }).waitFor({ timeout: WAIT });
    await prompt(page, 'too wide');
    await page.getByRole('button', { name: 'Generate' }).click();
    const imageError = page.locator('#error-image');
    await imageError.waitFor({ state: 'visible', timeout: WAIT });
    const api = await request(stack.url).post('/api/v1/uploads').set(auth).set('Content-Type', 'image/png').send(readFileSync(file));
    expect(api.status).toBe(413);
    expect(await imageError.textContent()).toBe(api.body.error.message);
    expect(await page.locator('#run').isHidden()).toBe(true);
  }, 90_000);

  it('"Use as input" turns a result into the next job\'s input image, at its size or scaled to a chosen ratio', async () => {
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await page.getByLabel('Aspect ratio', { exact: true }).selectOption('4:3');
    await prompt(page, 'a first draft');
    await page.getByRole('button', { name: 'Generate' }).click();
    await resultImages(page, 1);
    await page.getByRole('button', { name: 'Use as input' }).click();
    await page.locator('#input-info').filter({ hasText: '576 × 432' }).waitFor({ timeout: WAIT });
    const first = await shownJobId(page);
    await prompt(page, 'the second draft');
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction((id) => document.getElementById('run-id')?.textContent !== id, first, { timeout: WAIT });
    expect(await resultImages(page, 1)).toEqual([{ w: 576, h: 432, alt: expect.stringContaining('the second draft') }]);
    expect((await apiJob(await shownJobId(page))).params).toMatchObject({ mode: 'img2img', prompt: 'the second draft' });
    // The input's size is the default with an input; a ratio chosen instead scales it.
    expect(await page.getByLabel("The input image's size", { exact: true }).isChecked()).toBe(true);
    await page.getByLabel('By aspect ratio', { exact: true }).check();
    await page.getByLabel('Aspect ratio', { exact: true }).selectOption('1:1');
    const second = await shownJobId(page);
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction((id) => document.getElementById('run-id')?.textContent !== id, second, { timeout: WAIT });
    expect(await resultImages(page, 1)).toEqual([{ w: 512, h: 512, alt: expect.stringContaining('the second draft') }]);
    expect((await apiJob(await shownJobId(page))).params).toMatchObject({ mode: 'img2img', aspect_ratio: '1:1' });
    // Without the input, the choice goes and the ratio stays.
    await page.getByRole('button', { name: 'Remove input image' }).click();
    expect(await page.getByLabel("The input image's size", { exact: true }).isVisible()).toBe(false);
    expect(await page.getByLabel('By aspect ratio', { exact: true }).isChecked()).toBe(true);
  }, 120_000);

  it('with the event stream cut (a proxy that buffers or drops SSE), the page follows the job by long-poll', async () => {
    const page = await openPlayground(1440);
    const cut: string[] = [];
    const polls: string[] = [];
    await page.route(/\/events$/, (route) => {
      cut.push(route.request().url());
      return route.abort('connectionreset');
    });
    page.on('request', (r) => {
      if (/\/api\/v1\/images\/jobs\/[0-9a-f-]{36}\?wait=\d+$/.test(r.url())) polls.push(r.url());
    });
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await prompt(page, 'no stream here');
    await page.getByRole('button', { name: 'Generate' }).click();
    expect(await resultImages(page, 1)).toEqual([{ w: 512, h: 512, alt: expect.stringContaining('no stream here') }]);
    await status(page, 'succeeded');
    const id = await shownJobId(page);
    expect(cut).toEqual([`${stack.url}/api/v1/images/jobs/${id}/events`]);
    expect(polls.length).toBeGreaterThanOrEqual(1);
    expect(polls[0]).toBe(`${stack.url}/api/v1/images/jobs/${id}?wait=25`);
  }, 120_000);

  it('the history survives a reload and re-opens a job by id', async () => {
    const page = await openPlayground(1440);
    await page.getByLabel('Model', { exact: true }).selectOption('smoke-test');
    await prompt(page, 'remember me');
    await page.getByRole('button', { name: 'Generate' }).click();
    await resultImages(page, 1);
    const id = await shownJobId(page);
    // A reload keeps the job on screen: the address names it (#job=<id>).
    expect(new URL(page.url()).hash).toBe(`#job=${id}`);
    await page.reload();
    expect(await resultImages(page, 1)).toEqual([{ w: 512, h: 512, alt: expect.stringContaining('remember me') }]);
    expect(await shownJobId(page)).toBe(id);
    // The page without an address: nothing on screen, the history lists the job and re-opens it.
    await page.goto(`${stack.url}/playground`);
    await page.waitForFunction(() => document.querySelectorAll('#model option').length > 0, null, { timeout: WAIT });
    expect(await page.locator('#results img').count()).toBe(0);
    const entry = page.locator(`#history li[data-job-id="${id}"]`);
    expect(await entry.textContent()).toContain('succeeded');
    await entry.getByRole('button', { name: 'remember me' }).click();
    expect(await resultImages(page, 1)).toEqual([{ w: 512, h: 512, alt: expect.stringContaining('remember me') }]);
    expect(await shownJobId(page)).toBe(id);

    // By id, in a new tab (the history is per browser, the key per tab).
    const other = await openPlayground(1440);
    expect(await other.locator(`#history li[data-job-id="${id}"]`).count()).toBe(1);
    await other.getByLabel('Job id', { exact: true }).fill('not-an-id');
    await other.getByRole('button', { name: 'Open', exact: true }).click();
    await other.locator('#error-open_id').waitFor({ state: 'visible' });
    await other.getByLabel('Job id', { exact: true }).fill(id);
    await other.getByRole('button', { name: 'Open', exact: true }).click();
    expect(await resultImages(other, 1)).toHaveLength(1);
    expect(await shownJobId(other)).toBe(id);
  }, 120_000);

  it('/redoc and /docs render their titles with no network', async () => {
    const redoc = await browser.newPage(1440);
    pages.push(redoc);
    await redoc.goto(`${stack.url}/redoc`);
    expect(await redoc.title()).toBe('Fictures AI Server API');
    // ReDoc has fetched the spec and drawn it: the API's own title as its heading.
    await redoc.locator('h1', { hasText: 'Fictures AI Server' }).first().waitFor({ timeout: WAIT });
    // The docs link to the playground (the API description), and the playground to the docs.
    await redoc.locator('a[href="/playground"]').first().waitFor({ timeout: WAIT });
    await redoc.goto(`${stack.url}/playground`);
    expect(await redoc.getByRole('link', { name: 'API docs' }).getAttribute('href')).toBe('/docs');
    for (const p of ['/docs', '/docs/']) {
      const docs = await browser.newPage(1440);
      pages.push(docs);
      await docs.goto(`${stack.url}${p}`);
      expect(await docs.title()).toBe('Fictures AI Server API');
      await docs.locator('.swagger-ui .title', { hasText: 'Fictures AI Server' }).waitFor({ timeout: WAIT });
      await docs.locator('.swagger-ui a[href="/playground"]').first().waitFor({ timeout: WAIT });
    }
  }, 120_000);
});
