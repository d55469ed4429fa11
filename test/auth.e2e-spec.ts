import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { runKeysCommand } from '../apps/api/src/auth/keys.cli';
import { ContentPolicy, type ContentPolicyVerdict } from '../apps/api/src/policy/content-policy';
import { TestRedisServer } from './support/redis-server';
import { jobCount, TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request that never hangs: an event stream is cut after `cutMs` (its status and headers are what count). */
function call(method: string, url: string, headers: Record<string, string> = {}, cutMs = 3_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      const timer = setTimeout(() => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      }, cutMs);
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', () => undefined);
    });
    req.on('error', reject);
    req.end();
  });
}

function errorOf(r: RawResponse): { code: string; message: string } | undefined {
  try {
    return (JSON.parse(r.body) as { error?: { code: string; message: string } }).error;
  } catch {
    return undefined;
  }
}

const small = { prompt: 'a small lighthouse', width: 256, height: 256 };

describe('API keys, ownership and hardening', () => {
  let stack: Stack;
  let keys: TestKeys;
  let a: { id: string; key: string; auth: { Authorization: string } };
  let b: { id: string; key: string; auth: { Authorization: string } };
  let revoked: { id: string; key: string };
  let openJobId: string;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 20 }, env: { CORS_ORIGINS: 'https://app.example' } });
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    keys?.close();
    await stack?.close();
  });

  it('runs open while no key exists (local use)', async () => {
    await request(stack.url).get('/api/v1/models').expect(200);
    openJobId = (await request(stack.url).post('/api/v1/images/jobs').send({ ...small, model: 'smoke-test' }).expect(202)).body.id;
    a = await keys.create('tenant-a');
    b = await keys.create('tenant-b');
    revoked = await keys.create('old');
    await keys.store.revoke(revoked.id);
  });

  it('answers missing, malformed, unknown and revoked keys with one identical 401', async () => {
    const unknown = `fk_${'x'.repeat(43)}`;
    const cases: Array<[string, Record<string, string>]> = [
      ['missing', {}],
      ['empty bearer', { Authorization: 'Bearer ' }],
      ['basic auth', { Authorization: 'Basic dXNlcjpwYXNz' }],
      ['malformed', { 'X-API-Key': 'hello' }],
      ['unknown', { Authorization: `Bearer ${unknown}` }],
      ['unknown in X-API-Key', { 'X-API-Key': unknown }],
      ['revoked', { Authorization: `Bearer ${revoked.key}` }],
      ['two different keys', { Authorization: `Bearer ${a.key}`, 'X-API-Key': b.key }],
      ['a key id instead of a key', { Authorization: `Bearer ${a.id}` }],
    ];
    const bodies = new Set<string>();
    for (const [name, headers] of cases) {
      for (const [method, path] of [['GET', '/api/v1/models'], ['POST', '/api/v1/images/jobs'], ['GET', `/api/v1/images/jobs/${randomUUID()}`]] as const) {
        const res = await request(stack.url)[method === 'GET' ? 'get' : 'post'](path).set(headers).send(method === 'POST' ? small : undefined);
        expect({ name, path, status: res.status }).toEqual({ name, path, status: 401 });
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        expect(res.body.request_id).toBeTruthy();
        const { request_id: _rid, ...rest } = res.body;
        bodies.add(JSON.stringify(rest));
        for (const v of Object.values(headers)) if (v.length > 8) expect(res.text).not.toContain(v.replace(/^Bearer /, ''));
      }
    }
    expect([...bodies]).toEqual([JSON.stringify({ error: { code: 'unauthorized', message: 'A valid API key is required (Authorization: Bearer <key>, or X-API-Key: <key>)' } })]);
  });

  it('accepts a key as Bearer or as X-API-Key; health, docs and metrics stay public', async () => {
    await request(stack.url).get('/api/v1/models').set(a.auth).expect(200);
    await request(stack.url).get('/api/v1/images/models').set('X-API-Key', b.key).expect(200);
    await request(stack.url).get('/health/live').expect(200);
    await request(stack.url).get('/docs-json').expect(200);
    await request(stack.url).get('/docs').redirects(1).expect(200);
    await request(stack.url).get('/redoc').expect(200);
    expect((await request(stack.url).get('/metrics')).status).not.toBe(401);
    // A job made while the server was open has no owner: no key can see it now.
    await request(stack.url).get(`/api/v1/images/jobs/${openJobId}`).set(a.auth).expect(404);
  });

  it('every job route answers 404 to another key, exactly as for a job that does not exist', async () => {
    const created = await request(stack.url).post('/api/v1/images/jobs').set(a.auth).send({ ...small, model: 'smoke-test' }).expect(202);
    const jobId = created.body.id as string;
    await waitFor(async () => ((await request(stack.url).get(`/api/v1/images/jobs/${jobId}`).set(a.auth)).body.status === 'succeeded' ? true : undefined));
    const doc = (await request(stack.url).get('/docs-json').expect(200)).body as { paths: Record<string, Record<string, unknown>> };
    const routes = Object.entries(doc.paths)
      .filter(([path]) => path.includes('{id}'))
      .flatMap(([path, ops]) => Object.keys(ops).filter((m) => ['get', 'delete', 'post', 'put', 'patch'].includes(m)).map((m) => ({ method: m.toUpperCase(), path })));
    const names = routes.map((r) => `${r.method} ${r.path}`);
    expect(names).toEqual(expect.arrayContaining(['GET /api/v1/images/jobs/{id}', 'DELETE /api/v1/images/jobs/{id}', 'GET /api/v1/images/jobs/{id}/images/{index}']));
    const ghost = randomUUID();
    const fill = (path: string, id: string) => `${stack.url}${path.replace('{id}', id).replace('{index}', '0')}`;
    const walked: string[] = [];
    // The other key first (DELETE included: it must not cancel anything), then the owner.
    for (const { method, path } of routes) {
      const theirs = await call(method, fill(path, jobId), { ...b.auth, 'Content-Type': 'application/json' });
      const none = await call(method, fill(path, ghost), { ...b.auth, 'Content-Type': 'application/json' });
      const what = `${method} ${path}`;
      expect({ what, status: theirs.status }).toEqual({ what, status: 404 });
      expect(theirs.status).toBe(none.status);
      expect(errorOf(theirs)?.code).toBe(errorOf(none)?.code);
      expect(errorOf(theirs)?.message.replace(jobId, 'ID')).toBe(errorOf(none)?.message.replace(ghost, 'ID'));
      expect(theirs.body).not.toContain('tenant-a');
      walked.push(what);
    }
    for (const { method, path } of routes.filter((r) => r.method === 'GET')) {
      const mine = await call(method, fill(path, jobId), a.auth);
      expect({ what: `${method} ${path}`, status: mine.status }).toEqual({ what: `${method} ${path}`, status: 200 });
    }
    const after = await request(stack.url).get(`/api/v1/images/jobs/${jobId}`).set(a.auth).expect(200);
    expect(after.body.status).toBe('succeeded');
    console.log(`ownership matrix: ${walked.length} job routes × 2 keys: ${walked.join(', ')}`);
  });

  it('another key cannot cancel a live job', async () => {
    const id = (await request(stack.url).post('/api/v1/images/jobs').set(a.auth).send({ ...small, num_inference_steps: 16 }).expect(202)).body.id as string;
    const res = await request(stack.url).delete(`/api/v1/images/jobs/${id}`).set(b.auth).expect(404);
    expect(res.body.error.code).toBe('job_not_found');
    const done = await waitFor(async () => {
      const j = (await request(stack.url).get(`/api/v1/images/jobs/${id}`).set(a.auth).expect(200)).body;
      return ['succeeded', 'failed', 'canceled'].includes(j.status) ? j : undefined;
    }, 20_000);
    expect(done.status).toBe('succeeded');
  });

  it('keeps no usable key anywhere in Redis: only SHA-256 digests, ids in job data', async () => {
    const dump: string[] = [];
    for (const k of await keys.redis.keys(`${stack.env.QUEUE_PREFIX}:*`)) {
      const type = await keys.redis.type(k);
      if (type === 'string') dump.push((await keys.redis.getBuffer(k))?.toString('latin1') ?? '');
      else if (type === 'hash') dump.push(JSON.stringify(await keys.redis.hgetall(k)));
      else if (type === 'list') dump.push(JSON.stringify(await keys.redis.lrange(k, 0, -1)));
      else if (type === 'set') dump.push(JSON.stringify(await keys.redis.smembers(k)));
      else if (type === 'zset') dump.push(JSON.stringify(await keys.redis.zrange(k, 0, -1)));
      else if (type === 'stream') dump.push(JSON.stringify(await keys.redis.xrange(k, '-', '+')));
    }
    const all = dump.join('\n');
    expect(all).toContain(a.id);
    for (const k of [a.key, b.key, revoked.key]) {
      expect(all).not.toContain(k);
      expect(all).not.toContain(k.slice(10));
    }
  });

  it('sets security headers; the docs pages get a CSP that lets Swagger UI and ReDoc run from this origin only', async () => {
    const api = await request(stack.url).get('/api/v1/models').set(a.auth).expect(200);
    expect(api.headers['content-security-policy']).toContain("default-src 'none'");
    expect(api.headers['x-content-type-options']).toBe('nosniff');
    expect(api.headers['strict-transport-security']).toMatch(/max-age=\d+/);
    expect(api.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(api.headers['x-powered-by']).toBeUndefined();
    const docs = await request(stack.url).get('/docs').redirects(1).expect(200);
    const csp = docs.headers['content-security-policy'] as string;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self' 'unsafe-inline'");
    expect(csp).toContain('img-src');
    expect(csp).not.toContain('upgrade-insecure-requests');
    for (const src of (docs.text.match(/src=["']([^"']+\.js)["']/g) ?? []).map((s) => s.replace(/^src=["']|["']$/g, ''))) {
      await request(stack.url).get(src.startsWith('/') ? src : `/docs/${src.replace(/^\.\//, '').replace(/^docs\//, '')}`).expect(200);
    }
    const redoc = await request(stack.url).get('/redoc').expect(200);
    expect(redoc.headers['content-security-policy']).not.toContain('https:');
    expect(redoc.headers['content-security-policy']).toContain('worker-src');
  });

  it('CORS: only listed origins, never credentials; preflight needs no key', async () => {
    const ok = await request(stack.url)
      .options('/api/v1/images/jobs')
      .set('Origin', 'https://app.example')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization,content-type');
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(ok.headers['access-control-allow-credentials']).toBeUndefined();
    const evil = await request(stack.url).options('/api/v1/images/jobs').set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    const get = await request(stack.url).get('/api/v1/models').set(a.auth).set('Origin', 'https://app.example').expect(200);
    expect(get.headers['access-control-expose-headers']).toContain('Retry-After');
  });

  it('the keys command creates, lists and revokes keys; a revoked key stops working at once', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    expect(await runKeysCommand(['create', '--name', 'cli', '--rpm', '120', '--max-jobs', '3', '--priority', '50', '--json'], keys.store, io)).toBe(0);
    const made = JSON.parse(out.pop() as string) as { id: string; key: string; prefix: string; rpm: number };
    expect(made).toMatchObject({ name: 'cli', rpm: 120, max_jobs: 3, priority: 50, revoked_at: null });
    expect(made.key.startsWith(made.prefix)).toBe(true);
    await request(stack.url).get('/api/v1/models').set('Authorization', `Bearer ${made.key}`).expect(200);

    expect(await runKeysCommand(['create', '--name', 'plain'], keys.store, io)).toBe(0);
    expect(out.join('\n')).toMatch(/only time the key is shown/);
    expect(await runKeysCommand(['list'], keys.store, io)).toBe(0);
    const listing = out.join('\n');
    expect(listing).toContain(made.id);
    expect(listing).toContain(`${made.prefix}…`);
    expect(listing).not.toContain(made.key);

    expect(await runKeysCommand(['revoke', made.id], keys.store, io)).toBe(0);
    await request(stack.url).get('/api/v1/models').set('Authorization', `Bearer ${made.key}`).expect(401);
    expect(await runKeysCommand(['revoke', 'key_nope'], keys.store, io)).toBe(1);
    expect(await runKeysCommand(['create', '--name', 'x', '--priority', '0'], keys.store, io)).toBe(2);
    expect(await runKeysCommand(['create'], keys.store, io)).toBe(2);
    expect(await runKeysCommand(['frobnicate'], keys.store, io)).toBe(2);
    expect(err.join('\n')).toMatch(/priority must be a whole number/);
  });
});

describe('AUTH_REQUIRED', () => {
  it('refuses to start open, with a message that says what to do', async () => {
    await expect(Stack.start({ comfyui: 0, worker: false, env: { AUTH_REQUIRED: 'true' } })).rejects.toThrow(/AUTH_REQUIRED=true but no API key exists.*npm run keys -- create/);
  });

  it('an API that refuses to start leaves no Redis connection behind', async () => {
    const server = await TestRedisServer.start();
    const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
    try {
      await expect(Stack.start({ comfyui: 0, worker: false, env: { AUTH_REQUIRED: 'true', REDIS_URL: server.url } })).rejects.toThrow(/AUTH_REQUIRED=true/);
      // A client left open reconnects forever once this Redis stops, and keeps jest from exiting.
      const clients = async () => ((await admin.call('CLIENT', 'LIST')) as string).trim().split('\n');
      await waitFor(async () => ((await clients()).length === 1 ? true : undefined), 5_000, 'only the admin connection').catch(async (e: Error) => {
        throw new Error(`${e.message}; still connected:\n${(await clients()).join('\n')}`);
      });
    } finally {
      await admin.quit();
      await server.destroy();
    }
  });

  it('starts once a key exists, and then requires it', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const keys = new TestKeys(prefix);
    const k = await keys.create('ci');
    const stack = await Stack.start({ comfyui: 0, worker: false, env: { AUTH_REQUIRED: 'true', QUEUE_PREFIX: prefix } });
    try {
      await request(stack.url).get('/api/v1/models').expect(401);
      await request(stack.url).get('/api/v1/models').set(k.auth).expect(200);
    } finally {
      keys.close();
      await stack.close();
    }
  });
});

class ScriptedPolicy extends ContentPolicy {
  async check(prompt: string): Promise<ContentPolicyVerdict> {
    if (prompt.includes('explode')) throw new Error('moderation backend exploded at 10.0.0.7:9999');
    return prompt.includes('dragon') ? { allowed: false, reason: 'no dragons here' } : { allowed: true };
  }
}

describe('content policy and error hygiene', () => {
  it('a blocklisted prompt is 422 content_policy on both routes and creates no job', async () => {
    const stack = await Stack.start({ comfyui: 0, worker: false, env: { CONTENT_POLICY_BLOCKLIST: 'gore, /forbidden\\d+/i' } });
    try {
      const before = await jobCount(stack);
      for (const path of ['/api/v1/images/jobs', '/api/v1/images/generate']) {
        for (const body of [{ prompt: 'a scene of GORE' }, { prompt: 'ok', negative_prompt: 'Forbidden42' }]) {
          const res = await request(stack.url).post(path).send(body).expect(422);
          expect(res.body.error.code).toBe('content_policy');
          expect(res.text).not.toMatch(/forbidden\\d|gore,/i);
        }
      }
      expect(await jobCount(stack)).toBe(before);
      await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'a gorgeous valley' }).expect(202);
      expect(await jobCount(stack)).toBe(before + 1);
    } finally {
      await stack.close();
    }
  });

  it('another ContentPolicy class can be provided; an unexpected failure is a 500 whose error id is in the log and nothing internal in the body', async () => {
    const stack = await Stack.start({ comfyui: 0, worker: false, overrides: { api: [{ provide: ContentPolicy, useValue: new ScriptedPolicy() }] } });
    const logged: string[] = [];
    const spy = jest.spyOn(Logger.prototype, 'error').mockImplementation((...args: unknown[]) => void logged.push(JSON.stringify(args)));
    const spyOut = jest.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    }) as typeof process.stdout.write);
    try {
      const refused = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'a red dragon' }).expect(422);
      expect(refused.body.error).toEqual({ code: 'content_policy', message: 'The request was refused by the content policy', details: { reason: 'no dragons here' } });
      const res = await request(stack.url).post('/api/v1/images/jobs').set('Authorization', 'Bearer fk_secret_should_not_echo').send({ prompt: 'explode' }).expect(500);
      expect(res.body.error.code).toBe('internal_error');
      const errorId = res.body.error.details.error_id as string;
      expect(errorId).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.text).not.toMatch(/exploded|10\.0\.0\.7|at .*\.ts|fk_secret/);
      expect(logged.join('\n')).toContain(errorId);
      expect(await jobCount(stack)).toBe(0);
    } finally {
      spy.mockRestore();
      spyOut.mockRestore();
      await stack.close();
    }
  });
});
