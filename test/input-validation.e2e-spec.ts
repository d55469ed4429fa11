import request from 'supertest';
import { jobCount } from './support/security';
import { Stack } from './support/stack';

/**
 * Input defects found from a clean clone (issue 9): text that shows nothing or carries control
 * characters, null as a value, several contradictory messages for one field, smoke-test's
 * "between 0 and 0", and 404 for a wrong method. Every refusal is 400 validation_failed on both
 * submission routes and creates no job.
 */
describe('input validation', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
  });
  afterAll(async () => stack?.close());

  const submitRaw = (path: string, raw: string) => request(stack.url).post(path).set('Content-Type', 'application/json').send(raw);
  const paths = ['/api/v1/images/jobs', '/api/v1/images/generate'];

  /** Sends to both routes; expects 400 validation_failed, no job, and returns the jobs route's details. */
  async function refused(raw: string, opts: { jobsOnly?: boolean } = {}): Promise<Array<{ field: string; message: string }>> {
    const before = await jobCount(stack);
    let details: Array<{ field: string; message: string }> = [];
    for (const path of opts.jobsOnly ? paths.slice(0, 1) : paths) {
      const res = await submitRaw(path, raw);
      expect({ path, raw, status: res.status, code: res.body?.error?.code }).toEqual({ path, raw, status: 400, code: 'validation_failed' });
      expect(typeof res.body.request_id).toBe('string');
      if (path === paths[0]) details = res.body.error.details;
    }
    expect(await jobCount(stack)).toBe(before);
    return details;
  }

  describe('text must show something and carry no control characters', () => {
    const invisible: Array<[string, string]> = [
      ['NUL only', '"\\u0000\\u0000"'],
      ['spaces only', '"   "'],
      ['newlines and tabs only', '"\\n\\t\\n"'],
      ['a no-break space', '"\\u00a0"'],
      ['zero-width spaces', '"\\u200b\\u200b"'],
      ['a Hangul filler', '"\\u3164"'],
      ['a byte-order mark', '"\\ufeff"'],
    ];
    it.each(invisible)('refuses a prompt of %s', async (_name, prompt) => {
      const details = await refused(`{"prompt":${prompt}}`);
      expect(details).toHaveLength(1);
      expect(details[0].field).toBe('prompt');
    });

    it('says why: visible character, or which control character where', async () => {
      expect(await refused('{"prompt":"   "}')).toEqual([{ field: 'prompt', message: 'prompt must contain at least one visible character' }]);
      expect(await refused('{"prompt":"ab\\u0000"}')).toEqual([
        { field: 'prompt', message: 'prompt contains the control character U+0000 at position 2 (only \\n and \\t are allowed)' },
      ]);
      expect((await refused('{"prompt":"x\\ud800"}'))[0].message).toBe('prompt contains an unpaired surrogate U+D800 at position 1 (not valid Unicode)');
    });

    const unsafe: Array<[string, string, { jobsOnly?: boolean }]> = [
      ['a lone high surrogate prompt', '{"prompt":"\\ud800"}', {}],
      ['a lone low surrogate prompt', '{"prompt":"a\\udc00b"}', {}],
      ['BEL in the prompt', '{"prompt":"a\\u0007b"}', {}],
      ['CR in the prompt', '{"prompt":"a\\r\\nb"}', {}],
      ['ESC in the prompt', '{"prompt":"\\u001b[31mred"}', {}],
      ['DEL in the prompt', '{"prompt":"a\\u007fb"}', {}],
      ['C1 NEL in the prompt', '{"prompt":"a\\u0085b"}', {}],
      ['C1 CSI in the prompt', '{"prompt":"a\\u009bb"}', {}],
      ['NUL in the negative prompt', '{"prompt":"p","negative_prompt":"\\u0000"}', {}],
      ['a blank negative prompt', '{"prompt":"p","negative_prompt":"  "}', {}],
      ['a lone surrogate in the negative prompt', '{"prompt":"p","negative_prompt":"n\\udfff"}', {}],
      ['NUL in the model', '{"prompt":"p","model":"smoke-test\\u0000"}', {}],
      ['a control character in a metadata key', '{"prompt":"p","metadata":{"k\\u0001":"v"}}', { jobsOnly: true }],
      ['a C1 character in a metadata value', '{"prompt":"p","metadata":{"k":"v\\u0090"}}', { jobsOnly: true }],
      ['a lone surrogate in a metadata value', '{"prompt":"p","metadata":{"k":"\\ud83d"}}', { jobsOnly: true }],
      ['NUL in the webhook URL', '{"prompt":"p","webhook_url":"https://example.com/\\u0000hook"}', { jobsOnly: true }],
    ];
    it.each(unsafe)('refuses %s', async (_name, raw, opts) => {
      const details = await refused(raw, opts);
      expect(details).toHaveLength(1);
    });

    it('refuses control characters in the Idempotency-Key header, creating no job', async () => {
      const before = await jobCount(stack);
      for (const key of ['key\u0085', 'key\u009f', 'a key']) {
        const res = await request(stack.url).post('/api/v1/images/jobs').set('Idempotency-Key', key).send({ prompt: 'p' });
        expect({ key, status: res.status, code: res.body.error?.code }).toEqual({ key, status: 400, code: 'validation_failed' });
      }
      expect(await jobCount(stack)).toBe(before);
    });

    it('accepts \\n and \\t, an empty negative prompt, a prompt that is an emoji, and combining marks', async () => {
      const before = await jobCount(stack);
      for (const body of [
        { prompt: 'line one\nline two\tend' },
        { prompt: 'p', negative_prompt: '' },
        { prompt: '🦊' },
        { prompt: 'e\u0301te\u0301', metadata: { 'clé': 'vàlue\n2' } },
      ]) {
        const res = await request(stack.url).post('/api/v1/images/jobs').send(body);
        expect({ body, status: res.status }).toEqual({ body, status: 202 });
      }
      expect(await jobCount(stack)).toBe(before + 4);
    });
  });

  describe('null is not a value', () => {
    const fields: Array<[string, boolean]> = [
      ['negative_prompt', false], ['width', false], ['height', false], ['num_inference_steps', false], ['guidance_scale', false], ['seed', false], ['model', false],
      ['webhook_url', true], ['webhook_events', true], ['metadata', true],
    ];
    it.each(fields)('refuses %s: null, saying to omit the field', async (field, jobsOnly) => {
      const details = await refused(JSON.stringify({ prompt: 'p', [field]: null }), { jobsOnly });
      expect(details).toEqual([{ field, message: `${field} must not be null; null is not a value, omit the field to use its default` }]);
    });

    it('refuses a null prompt and a null metadata value', async () => {
      expect(await refused('{"prompt":null}')).toEqual([{ field: 'prompt', message: 'prompt must not be null' }]);
      expect(await refused('{"prompt":"p","metadata":{"k":null}}', { jobsOnly: true })).toEqual([{ field: 'metadata', message: 'metadata.k must not be null; omit the entry' }]);
    });
  });

  describe('one clear message per field', () => {
    it('{"width": "512"} says "width must be an integer", once', async () => {
      const res = await submitRaw('/api/v1/images/jobs', '{"prompt":"p","width":"512"}').expect(400);
      expect(res.body).toEqual({
        error: { code: 'validation_failed', message: 'width must be an integer', details: [{ field: 'width', message: 'width must be an integer' }] },
        request_id: expect.any(String),
      });
    });

    it('lists each invalid field once, with the first rule it breaks', async () => {
      const details = await refused('{"prompt":5,"width":"512","height":100,"seed":-1,"guidance_scale":"high","num_inference_steps":2.5,"model":"Bad Model","extra":1}');
      expect([...details].sort((a, b) => a.field.localeCompare(b.field))).toEqual([
        { field: 'extra', message: 'extra is not a known field' },
        { field: 'guidance_scale', message: 'guidance_scale must be a number' },
        { field: 'height', message: 'height must be between 256 and 2048' },
        { field: 'model', message: 'model must be a model id (lowercase letters, digits, . _ -)' },
        { field: 'num_inference_steps', message: 'num_inference_steps must be an integer' },
        { field: 'prompt', message: 'prompt must be a string' },
        { field: 'seed', message: 'seed must be between 0 and 9007199254740991' },
        { field: 'width', message: 'width must be an integer' },
      ]);
    });

    it('a missing prompt is "prompt is required"', async () => {
      expect(await refused('{"width":512}')).toEqual([{ field: 'prompt', message: 'prompt is required' }]);
    });
  });

  describe('parameters a model does not use', () => {
    it('smoke-test says guidance_scale is not adjustable, not "between 0 and 0"', async () => {
      const details = await refused('{"prompt":"p","model":"smoke-test","guidance_scale":0.5,"num_inference_steps":3}');
      expect(details).toEqual([
        { field: 'num_inference_steps', message: 'num_inference_steps is not adjustable for model smoke-test (it is always 1); omit it' },
        { field: 'guidance_scale', message: 'guidance_scale is not adjustable for model smoke-test (it is always 0); omit it' },
      ]);
    });

    it('GET /api/v1/models lists them as fixed', async () => {
      const res = await request(stack.url).get('/api/v1/models').expect(200);
      const smoke = (res.body.data as Array<{ id: string; limits: { fixed: string[] } }>).find((m) => m.id === 'smoke-test')!;
      expect(smoke.limits.fixed).toEqual(['num_inference_steps', 'guidance_scale']);
    });
  });

  describe('a wrong method on an existing route', () => {
    const id = '3b0d6c1e-8f5a-4c2b-9e7d-1a2b3c4d5e6f';
    const wrong: Array<[string, string, string]> = [
      ['GET', '/api/v1/images/generate', 'POST'],
      ['PUT', `/api/v1/images/jobs/${id}`, 'DELETE, GET, HEAD'],
      ['PATCH', `/api/v1/images/jobs/${id}`, 'DELETE, GET, HEAD'],
      ['PUT', '/api/v1/images/jobs', 'GET, HEAD, POST'],
      ['DELETE', '/api/v1/images/jobs/', 'GET, HEAD, POST'],
      ['POST', `/api/v1/images/jobs/${id}/images/0`, 'GET, HEAD'],
      ['POST', `/api/v1/images/jobs/${id}/events`, 'GET, HEAD'],
      ['DELETE', '/api/v1/models', 'GET, HEAD'],
      ['POST', '/health', 'GET, HEAD'],
      ['PUT', '/health/live', 'GET, HEAD'],
    ];
    it.each(wrong)('%s %s is 405 with Allow: %s', async (method, path, allow) => {
      const res = await request(stack.url)[method.toLowerCase() as 'get' | 'put' | 'patch' | 'delete' | 'post'](path);
      expect({ status: res.status, allow: res.headers.allow }).toEqual({ status: 405, allow });
      expect(res.body).toEqual({
        error: { code: 'method_not_allowed', message: `${method} is not allowed on ${path}; allowed: ${allow}`, details: { allow: allow.split(', ') } },
        request_id: expect.any(String),
      });
    });

    it('HEAD and OPTIONS (no CORS configured) get 405 with Allow too', async () => {
      const head = await request(stack.url).head('/api/v1/images/generate');
      expect({ status: head.status, allow: head.headers.allow }).toEqual({ status: 405, allow: 'POST' });
      const options = await request(stack.url).options(`/api/v1/images/jobs/${id}`);
      expect({ status: options.status, allow: options.headers.allow, code: options.body.error?.code }).toEqual({ status: 405, allow: 'DELETE, GET, HEAD', code: 'method_not_allowed' });
    });

    it('an unknown path stays 404 not_found, whatever the method', async () => {
      for (const [method, path] of [['get', '/api/v1/nothing'], ['post', '/api/v1/images/jobs/x/y/z'], ['put', '/nope']] as const) {
        const res = await request(stack.url)[method](path);
        expect({ path, status: res.status, code: res.body.error?.code, allow: res.headers.allow }).toEqual({ path, status: 404, code: 'not_found', allow: undefined });
      }
    });
  });
});
