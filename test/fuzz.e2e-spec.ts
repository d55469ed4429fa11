import http from 'node:http';
import fc from 'fast-check';
import { TestKeys, jobCount } from './support/security';
import { Stack } from './support/stack';

/**
 * Property-based fuzzing of the HTTP surface (fixed seed, so a failure replays): random and
 * malformed bodies, headers and paths, with and without a valid key. Properties: never a 5xx,
 * never a crash, an error always in the API's shape, the key never echoed, a valid body with a
 * valid key always accepted, an invalid one never, and Redis holds exactly the jobs that were
 * acknowledged — no job from invalid input.
 */

const SEED = 20_260_601;
const CASES = Number(process.env.FUZZ_CASES ?? 3000);
/** Cases per property run, sent at once (the server sees concurrent traffic; the run goes faster). */
const BATCH = 4;

type Kind = 'valid' | 'invalid' | 'random-json' | 'malformed' | 'headers' | 'path';
type Auth = { mode: 'valid' } | { mode: 'none' } | { mode: 'garbage'; header: string; value: string };
type Body = Record<string, unknown>;

interface Case {
  kind: Kind;
  method: string;
  path: string;
  auth: Auth;
  headers: Record<string, string>;
  body?: string;
  /** Built to be refused (any 4xx), or to be accepted given a valid key. */
  expect: 'refused' | 'accepted' | 'anything';
}

const KNOWN_FIELDS = new Set(['prompt', 'negative_prompt', 'width', 'height', 'num_inference_steps', 'guidance_scale', 'seed', 'model', 'webhook_url', 'webhook_events', 'metadata', 'aspect_ratio', 'num_images', 'output_format', 'output_quality', 'cache']);
const PROTO = new Set(['__proto__', 'constructor']);
const printable = fc.string({ unit: 'grapheme-ascii', maxLength: 60 });
const anyJson = fc.jsonValue({ maxDepth: 3 });
const notAString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(printable, fc.integer(), { maxKeys: 3 }));
const notANumber = fc.oneof(fc.string({ maxLength: 8 }), fc.boolean(), fc.array(fc.integer(), { maxLength: 2 }), fc.dictionary(printable, fc.integer(), { maxKeys: 2 }));
const side = fc.integer({ min: 16, max: 128 }).map((n) => n * 16);
/** What the API calls visible text: something that shows, no controls but \n and \t, no lone surrogates. */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{Cs}\p{Cn}\p{Default_Ignorable_Code_Point}]/u;
const plainText = (s: string) => !/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.test(s) && !/[\ud800-\udfff]/u.test(s);
/** One character a text field must not carry. */
const unsafeChar = fc.constantFrom('\u0000', '\u0001', '\r', '\u001b', '\u007f', '\u0085', '\u009b', '\ud800', '\udfff');

const validBody: fc.Arbitrary<Body> = fc.record(
  {
    prompt: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 80 }).filter((s) => VISIBLE.test(s) && plainText(s) && s.length <= 1000),
    negative_prompt: fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => (s === '' || VISIBLE.test(s)) && plainText(s) && s.length <= 1000),
    width: side,
    height: side,
    num_inference_steps: fc.integer({ min: 1, max: 16 }),
    guidance_scale: fc.double({ min: 0, max: 10, noNaN: true, noDefaultInfinity: true }),
    seed: fc.maxSafeNat(),
    model: fc.constant('qwen-image-lightning-4step'),
    metadata: fc.dictionary(
      fc.string({ minLength: 1, maxLength: 64 }).filter((k) => !PROTO.has(k) && plainText(k)),
      fc.string({ maxLength: 100 }).filter(plainText),
      { maxKeys: 16 },
    ),
  },
  { requiredKeys: ['prompt'] },
);

/** One change that makes any valid body invalid. */
const breakIt: fc.Arbitrary<(b: Body) => Body> = fc.oneof(
  fc.tuple(fc.string({ minLength: 1, maxLength: 20 }).filter((k) => !KNOWN_FIELDS.has(k)), anyJson).map(([k, v]) => (b: Body) => ({ ...b, [k]: v })),
  fc.oneof(fc.constantFrom('', ' ', '\n\t ', '\u00a0'), fc.integer({ min: 1001, max: 1500 }).map((n) => 'x'.repeat(n)), notAString).map((p) => (b: Body) => ({ ...b, prompt: p })),
  fc.constant((b: Body) => {
    const { prompt: _p, ...rest } = b;
    return rest;
  }),
  fc
    .tuple(
      fc.constantFrom('width', 'height'),
      fc.oneof(fc.integer({ min: -5000, max: 255 }), fc.integer({ min: 2049, max: 1e9 }), fc.integer({ min: 256, max: 2048 }).filter((n) => n % 16 !== 0), fc.double({ min: 256.1, max: 2047.9, noNaN: true }).filter((n) => !Number.isInteger(n)), notANumber, fc.constant(null).map(() => '512')),
    )
    .map(([f, v]) => (b: Body) => ({ ...b, [f]: v })),
  fc.oneof(fc.integer({ min: -100, max: 0 }), fc.integer({ min: 17, max: 1e6 }), fc.constant(2.5), notANumber).map((v) => (b: Body) => ({ ...b, num_inference_steps: v })),
  fc.oneof(fc.double({ min: 10.001, max: 1e12, noNaN: true, noDefaultInfinity: true }), fc.double({ min: -1e6, max: -0.001, noNaN: true, noDefaultInfinity: true }), notANumber).map((v) => (b: Body) => ({ ...b, guidance_scale: v })),
  fc.oneof(fc.integer({ min: -1e9, max: -1 }), fc.double({ min: 2 ** 53, max: 1e300, noNaN: true, noDefaultInfinity: true }), fc.constant(0.5), notANumber).map((v) => (b: Body) => ({ ...b, seed: v })),
  fc.oneof(fc.string({ maxLength: 30 }).filter((m) => !['qwen-image-lightning-4step', 'smoke-test'].includes(m)), notAString.filter((v) => v !== null)).map((v) => (b: Body) => ({ ...b, model: v })),
  fc.integer({ min: 1001, max: 1300 }).map((n) => (b: Body) => ({ ...b, negative_prompt: 'n'.repeat(n) })),
  fc
    .oneof(
      fc.array(fc.string(), { minLength: 1, maxLength: 3 }),
      fc.string({ minLength: 1 }),
      fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !PROTO.has(k)), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), { minKeys: 1, maxKeys: 3 }),
      fc.integer({ min: 17, max: 30 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']))),
      fc.constant({ k: 'v'.repeat(513) }),
    )
    .map((m) => (b: Body) => ({ ...b, metadata: m })),
  fc.constantFrom('not a url', 'http://127.0.0.1:9/hook', 'file:///etc/passwd', 'javascript:alert(1)').map((u) => (b: Body) => ({ ...b, webhook_url: u })),
  fc.constantFrom({ '3': { class_type: 'KSampler', inputs: {} } }, ['6', 0]).map((g) => (b: Body) => ({ ...b, prompt: g })),
  // A control character or lone surrogate anywhere in a text field, and null for any field.
  fc
    .tuple(fc.constantFrom('prompt', 'negative_prompt', 'model'), unsafeChar, fc.nat({ max: 40 }))
    .map(([f, ch, at]) => (b: Body) => {
      const text = typeof b[f] === 'string' && b[f] !== '' ? (b[f] as string) : 'text';
      return { ...b, [f]: text.slice(0, at) + ch + text.slice(at) };
    }),
  fc.tuple(unsafeChar, fc.boolean()).map(([ch, inKey]) => (b: Body) => ({ ...b, metadata: inKey ? { [`k${ch}`]: 'v' } : { k: `v${ch}` } })),
  fc.constantFrom(...KNOWN_FIELDS).map((f) => (b: Body) => ({ ...b, [f]: null })),
);

const garbageAuth: fc.Arbitrary<Auth> = fc.tuple(fc.constantFrom('authorization', 'x-api-key'), fc.oneof(printable, printable.map((s) => `Bearer ${s}`), fc.constant('Bearer fk_' + 'A'.repeat(43)))).map(([header, value]) => ({ mode: 'garbage' as const, header, value }));
const auth: fc.Arbitrary<Auth> = fc.oneof({ weight: 7, arbitrary: fc.constant<Auth>({ mode: 'valid' }) }, { weight: 1, arbitrary: fc.constant<Auth>({ mode: 'none' }) }, { weight: 2, arbitrary: garbageAuth });
const submitPath = fc.constantFrom('/api/v1/images/jobs', '/api/v1/images/generate');
const json = { 'content-type': 'application/json' };

const pathSegment = fc.oneof(
  fc.uuid(),
  printable.map(encodeURIComponent),
  printable.filter((s) => !/[\s#?]/.test(s)),
  fc.constantFrom('%', '%zz', '%00', '%2e%2e', '..%2f..%2fetc%2fpasswd', '%E0%A4%A', '%ff%fe', '..', '.', '', '%252e', 'ﬀ'.normalize('NFKC'), 'null', '-1', '999999999999999999999', '0x10'),
);
const randomPath = fc.oneof(
  fc.tuple(pathSegment).map(([s]) => `/api/v1/images/jobs/${s}`),
  fc.tuple(fc.uuid(), pathSegment).map(([id, s]) => `/api/v1/images/jobs/${id}/images/${s}`),
  fc.tuple(pathSegment).map(([s]) => `/api/v1/images/jobs/${s}/events`),
  fc.tuple(pathSegment, pathSegment).map(([a, b]) => `/api/v1/${a}/${b}`),
  fc.tuple(fc.constantFrom('/docs/', '/health/', '/redoc/', '/metrics/', '/'), pathSegment).map(([p, s]) => `${p}${s}`),
  fc.array(pathSegment, { maxLength: 6 }).map((segs) => `/${segs.join('/')}`),
);

const cases: fc.Arbitrary<Case> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(validBody, auth).map(([b, a]): Case => ({ kind: 'valid', method: 'POST', path: '/api/v1/images/jobs', auth: a, headers: json, body: JSON.stringify(b), expect: 'accepted' })) },
  { weight: 5, arbitrary: fc.tuple(validBody, breakIt, auth, submitPath).map(([b, f, a, p]): Case => ({ kind: 'invalid', method: 'POST', path: p, auth: a, headers: json, body: JSON.stringify(f(b)), expect: 'refused' })) },
  { weight: 2, arbitrary: fc.tuple(anyJson, auth, submitPath).map(([v, a, p]): Case => ({ kind: 'random-json', method: 'POST', path: p, auth: a, headers: json, body: JSON.stringify(v), expect: 'anything' })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), validBody.map((b) => JSON.stringify(b).slice(0, -1)), fc.constantFrom('{', '{"prompt":', '{"prompt":"a"}}', '{"prompt":"a",}', "{'prompt':'a'}", '\u0000', '{"prompt":"\\ud800"}x')), auth, submitPath)
      .map(([raw, a, p]): Case => ({ kind: 'malformed', method: 'POST', path: p, auth: a, headers: json, body: raw, expect: 'refused' })),
  },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.oneof(validBody.map((b) => ({ body: b, ok: true })), fc.tuple(validBody, breakIt).map(([b, f]) => ({ body: f(b), ok: false }))),
        auth,
        fc.record(
          {
            'content-type': fc.oneof(fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json; charset=koi8-r', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/vnd.api+json', '*/*', ''), printable),
            'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-nope'),
            'x-request-id': printable,
            accept: printable,
            'idempotency-key': printable,
            'x-forwarded-for': fc.oneof(fc.ipV4(), fc.ipV6(), printable),
          },
          { requiredKeys: [] },
        ),
      )
      .map(([{ body, ok }, a, h]): Case => ({ kind: 'headers', method: 'POST', path: '/api/v1/images/jobs', auth: a, headers: h, body: JSON.stringify(body), expect: ok ? 'anything' : 'refused' })),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom('GET', 'DELETE', 'POST', 'PUT', 'PATCH', 'HEAD', 'OPTIONS'), randomPath, auth, fc.option(anyJson, { nil: undefined }))
      .map(([m, p, a, b]): Case => ({ kind: 'path', method: m, path: p, auth: a, headers: b === undefined ? {} : json, body: b === undefined ? undefined : JSON.stringify(b), expect: 'anything' })),
  },
);

describe('fuzzing the HTTP surface (fast-check, fixed seed)', () => {
  let stack: Stack;
  let keys: TestKeys;
  let key: string;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false, env: { SYNC_TIMEOUT_MS: '100', LOG_LEVEL: 'silent' } });
    keys = TestKeys.of(stack);
    key = (await keys.create('fuzz', { max_jobs: 100_000 })).key;
  });
  afterAll(async () => {
    agent.destroy();
    keys?.close();
    await stack?.close();
  });

  function send(c: Case): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
    const headers: Record<string, string> = { ...c.headers };
    if (c.auth.mode === 'valid') headers.authorization = `Bearer ${key}`;
    if (c.auth.mode === 'garbage') headers[c.auth.header] = c.auth.value;
    const payload = c.body === undefined ? undefined : Buffer.from(c.body, 'utf8');
    if (payload) headers['content-length'] = String(payload.length);
    return new Promise((resolve, reject) => {
      const req = http.request(`${stack.url}${c.path}`, { method: c.method, headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', reject);
      });
      req.setTimeout(10_000, () => req.destroy(new Error(`no answer in 10 s: ${c.method} ${c.path}`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  it('never answers 5xx, never crashes, and never makes a job from invalid input', async () => {
    const before = await jobCount(stack);
    const accepted = new Set<string>();
    const tally = new Map<string, number>();
    const statuses = new Map<number, number>();
    const spent = new Map<string, number>();
    let tried = 0;
    const started = Date.now();

    const check = async (c: Case): Promise<void> => {
      tried++;
      tally.set(c.kind, (tally.get(c.kind) ?? 0) + 1);
      const t0 = Date.now();
      const res = await send(c);
      spent.set(c.kind, (spent.get(c.kind) ?? 0) + Date.now() - t0);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      const what = `${c.kind} ${c.method} ${c.path} auth=${c.auth.mode} → ${res.status} ${res.body.slice(0, 300)}`;
      if (res.status >= 500) throw new Error(`5xx: ${what}`);
      if (res.body.includes(key)) throw new Error(`the key was echoed: ${what}`);
      if (res.status >= 400 && c.method !== 'HEAD') {
        const parsed = JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown }; request_id?: unknown };
        if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string' || typeof parsed.request_id !== 'string') throw new Error(`not the error shape: ${what}`);
      }
      const submitted = c.method === 'POST' && /^\/api\/v1\/images\/jobs\/?$/.test(c.path) && res.status === 202;
      if (submitted) accepted.add((JSON.parse(res.body) as { id: string }).id);
      if (c.expect === 'refused' && res.status < 400) throw new Error(`invalid input accepted: ${what} body=${c.body?.slice(0, 300)}`);
      if (c.expect === 'accepted') {
        const want = c.auth.mode === 'valid' ? 202 : 401;
        if (res.status !== want) throw new Error(`expected ${want}: ${what} body=${c.body?.slice(0, 300)}`);
      }
      if (c.auth.mode !== 'valid' && c.path.startsWith('/api/v1/images/jobs') && res.status < 400) throw new Error(`no valid key but ${res.status}: ${what}`);
    };

    await fc.assert(
      fc.asyncProperty(fc.array(cases, { minLength: BATCH, maxLength: BATCH }), async (batch) => {
        await Promise.all(batch.map(check));
      }),
      { seed: SEED, numRuns: Math.ceil(CASES / BATCH), endOnFailure: true },
    );

    // Still alive and serving, and Redis holds exactly the jobs that were acknowledged.
    const live = await send({ kind: 'path', method: 'GET', path: '/health/live', auth: { mode: 'none' }, headers: {}, expect: 'anything' });
    expect(live.status).toBe(200);
    expect(await jobCount(stack)).toBe(before + accepted.size);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const kinds = [...tally].map(([k, n]) => `${k} ${n} (${((spent.get(k) ?? 0) / n).toFixed(1)} ms)`).join(', ');
    const codes = [...statuses].sort((x, y) => x[0] - y[0]).map(([s, n]) => `${s}×${n}`).join(' ');
    console.log(`FUZZ: ${tried} cases in ${secs} s (seed ${SEED}): ${kinds}; statuses ${codes}; jobs created ${accepted.size}, all from valid bodies; no 5xx`);
  }, 120_000);
});
