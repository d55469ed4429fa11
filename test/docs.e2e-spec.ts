import { statSync } from 'node:fs';
import request from 'supertest';
import { REDOC_BUNDLE_PATH, redocBundleFile } from '../apps/api/src/docs/redoc';
import { Stack } from './support/stack';

/** Every URL a page's HTML makes the browser load: src, href and CSS url(); XML namespaces are not loads. */
function loads(html: string): string[] {
  return [...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)["']?\s*\)/g)].map((m) => m[1] ?? m[2]);
}

function directives(csp: string): Map<string, string[]> {
  return new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).filter((d) => d[0]).map(([name, ...values]) => [name, values]));
}

describe('docs pages work offline: ReDoc from the installed package, Swagger UI at /docs and /docs/', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** Fetches every load of a page (relative to the page's own URL): all same-origin and all there. */
  async function expectSelfContained(path: string): Promise<string[]> {
    const page = await request(stack.url).get(path).expect(200);
    expect(page.headers['content-type']).toContain('text/html');
    const refs = loads(page.text);
    expect(refs.length).toBeGreaterThan(0);
    const origin = new URL(stack.url).origin;
    const types: string[] = [];
    for (const ref of refs) {
      const url = new URL(ref, `${stack.url}${path}`);
      expect({ ref, origin: url.origin }).toEqual({ ref, origin });
      const res = await request(stack.url).get(url.pathname).expect(200);
      types.push(`${url.pathname} ${String(res.headers['content-type'])}`);
    }
    return types;
  }

  it('/redoc loads only the bundle this API serves, as JavaScript, with the spec from /docs-json', async () => {
    const page = await request(stack.url).get('/redoc').expect(200);
    expect(page.text).toContain('<title>Fictures AI Server API</title>');
    expect(page.text).toContain('spec-url="/docs-json"');
    expect(loads(page.text)).toEqual([REDOC_BUNDLE_PATH]);
    const types = await expectSelfContained('/redoc');
    expect(types).toEqual([expect.stringMatching(/^\/docs\/assets\/redoc\.standalone\.js application\/javascript/)]);

    const bundle = await request(stack.url).get(REDOC_BUNDLE_PATH).buffer(true).parse((res, done) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => done(null, n));
    });
    expect(bundle.status).toBe(200);
    expect(bundle.body).toBe(statSync(redocBundleFile()).size);
    expect(bundle.headers['cache-control']).toMatch(/max-age=\d+/);
    expect(bundle.headers['x-content-type-options']).toBe('nosniff');
  });

  it('the docs CSP allows exactly this origin: scripts from self only, no https: or CDN anywhere', async () => {
    for (const path of ['/redoc', '/docs', '/docs/', REDOC_BUNDLE_PATH]) {
      const csp = (await request(stack.url).get(path).expect(200)).headers['content-security-policy'] as string;
      const d = directives(csp);
      expect({ path, script: d.get('script-src') }).toEqual({ path, script: ["'self'"] });
      expect({ path, connect: d.get('connect-src') }).toEqual({ path, connect: ["'self'"] });
      expect({ path, worker: d.get('worker-src') }).toEqual({ path, worker: ["'self'", 'blob:'] });
      expect({ path, external: [...d.values()].flat().filter((v) => /^https?:|\./.test(v)) }).toEqual({ path, external: [] });
    }
  });

  it('/docs/ renders like /docs: the same title, every asset found on this origin', async () => {
    const plain = await request(stack.url).get('/docs').expect(200);
    const slash = await request(stack.url).get('/docs/').expect(200);
    for (const page of [plain, slash]) expect(page.text).toContain('<title>Fictures AI Server API</title>');
    const a = await expectSelfContained('/docs');
    const b = await expectSelfContained('/docs/');
    expect(b).toEqual(a);
    expect(a).toEqual(expect.arrayContaining([expect.stringMatching(/^\/docs\/swagger-ui-init\.js application\/javascript/)]));
  });
});
