import request from 'supertest';
import { jobCount } from './support/security';
import { Stack } from './support/stack';

/**
 * Request limits (A5): what a client may ask for is bounded by the DTO and by the model's manifest,
 * and a raw ComfyUI graph can never get through. Every refusal changes nothing in Redis.
 */
describe('request limits', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 0, worker: false });
  });
  afterAll(async () => stack?.close());

  const accepted: Array<[string, object]> = [
    ['a 1000-character prompt', { prompt: 'x'.repeat(1000) }],
    ['the largest size of the model', { prompt: 'p', width: 2048, height: 2048 }],
    ['the smallest size of the model', { prompt: 'p', width: 256, height: 256 }],
    ['the most steps of qwen (16)', { prompt: 'p', num_inference_steps: 16 }],
    ['the highest guidance of qwen (10)', { prompt: 'p', guidance_scale: 10 }],
    ['seed 2^53-1', { prompt: 'p', seed: Number.MAX_SAFE_INTEGER }],
    ['seed 0', { prompt: 'p', seed: 0 }],
  ];
  it.each(accepted)('accepts %s', async (_name, body) => {
    const before = await jobCount(stack);
    await request(stack.url).post('/api/v1/images/jobs').send(body).expect(202);
    expect(await jobCount(stack)).toBe(before + 1);
  });

  const refused: Array<[string, unknown, number, string]> = [
    ['a 1001-character prompt', { prompt: 'x'.repeat(1001) }, 400, 'validation_failed'],
    ['a 1001-character negative prompt', { prompt: 'p', negative_prompt: 'x'.repeat(1001) }, 400, 'validation_failed'],
    ['width below the model minimum', { prompt: 'p', width: 240 }, 400, 'validation_failed'],
    ['width above the model maximum', { prompt: 'p', width: 2064 }, 400, 'validation_failed'],
    ['height off the multiple of 16', { prompt: 'p', height: 1000 }, 400, 'validation_failed'],
    ['a fractional width', { prompt: 'p', width: 512.5 }, 400, 'validation_failed'],
    ['steps above qwen (17)', { prompt: 'p', num_inference_steps: 17 }, 400, 'validation_failed'],
    ['steps above smoke-test (2)', { prompt: 'p', model: 'smoke-test', num_inference_steps: 2 }, 400, 'validation_failed'],
    ['zero steps', { prompt: 'p', num_inference_steps: 0 }, 400, 'validation_failed'],
    ['guidance above qwen (10.5)', { prompt: 'p', guidance_scale: 10.5 }, 400, 'validation_failed'],
    ['guidance above smoke-test (0.5)', { prompt: 'p', model: 'smoke-test', guidance_scale: 0.5 }, 400, 'validation_failed'],
    ['negative guidance', { prompt: 'p', guidance_scale: -1 }, 400, 'validation_failed'],
    ['a fractional seed', { prompt: 'p', seed: 1.5 }, 400, 'validation_failed'],
    ['a seed as a string', { prompt: 'p', seed: '42' }, 400, 'validation_failed'],
    ['a huge seed', { prompt: 'p', seed: 1e300 }, 400, 'validation_failed'],
    ['a model id with a path', { prompt: 'p', model: '../workflows/x' }, 400, 'validation_failed'],
    ['17 metadata entries', { prompt: 'p', metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 400, 'validation_failed'],
    // A ComfyUI API-format graph in any shape a client might try.
    ['a ComfyUI graph as the prompt', { prompt: { '3': { class_type: 'KSampler', inputs: {} } } }, 400, 'validation_failed'],
    ['a graph in a workflow field', { prompt: 'p', workflow: { '3': { class_type: 'SaveImage', inputs: {} } } }, 400, 'validation_failed'],
    ['a graph in a graph field', { prompt: 'p', graph: {} }, 400, 'validation_failed'],
    ['ComfyUI client_id', { prompt: 'p', client_id: 'abc' }, 400, 'validation_failed'],
    ['ComfyUI extra_data', { prompt: 'p', extra_data: { extra_pnginfo: {} } }, 400, 'validation_failed'],
    ['a node id as a field', { prompt: 'p', '6': { inputs: { text: 'x' } } }, 400, 'validation_failed'],
    // Prototype keys are refused by the JSON parser itself (class-transformer would drop them silently).
    ['a __proto__ field', '{"prompt":"p","__proto__":{"admin":true}}', 400, 'invalid_json'],
    ['a constructor field', '{"prompt":"p","constructor":{"prototype":{"admin":true}}}', 400, 'invalid_json'],
    ['a nested __proto__', '{"prompt":"p","metadata":{"__proto__":"x"}}', 400, 'invalid_json'],
    ['a graph as the whole body', { '3': { class_type: 'KSampler', inputs: { seed: 1 } } }, 400, 'validation_failed'],
    ['the prompt as a number', { prompt: 42 }, 400, 'validation_failed'],
    ['a nested array body', '[[{"prompt":"p"}]]', 400, 'validation_failed'],
    ['null', 'null', 400, 'invalid_json'],
  ];
  it.each(refused)('refuses %s, creating no job', async (_name, body, status, code) => {
    const before = await jobCount(stack);
    for (const path of ['/api/v1/images/jobs', '/api/v1/images/generate']) {
      const res = await request(stack.url)
        .post(path)
        .set('Content-Type', 'application/json')
        .send(typeof body === 'string' ? body : JSON.stringify(body));
      expect({ path, status: res.status, code: res.body?.error?.code }).toEqual({ path, status, code });
    }
    expect(await jobCount(stack)).toBe(before);
  });

  // The message says what was refused, on the native routes and in OpenAI's shape on /v1.
  const told: Array<[string, string, string, string]> = [
    ['malformed JSON', '{"prompt": "p",', 'invalid_json', 'The body is not valid JSON'],
    ['null', 'null', 'invalid_json', 'The body must be a JSON object'],
    ['a JSON string', '  "a lighthouse"', 'invalid_json', 'The body must be a JSON object'],
    ['a JSON number', '42', 'invalid_json', 'The body must be a JSON object'],
    ['a JSON array', '[{"prompt":"p"}]', 'validation_failed', 'The body must be a JSON object'],
    ['an empty JSON array', '[]', 'validation_failed', 'The body must be a JSON object'],
    ['a __proto__ key', '{"prompt":"p","__proto__":{"admin":true}}', 'invalid_json', 'The key "__proto__" is not allowed in a body'],
    ['a nested constructor key', '{"prompt":"p","metadata":{"constructor":"x"}}', 'invalid_json', 'The key "constructor" is not allowed in a body'],
  ];
  it.each(told)('tells %s as what it is, creating no job', async (_name, body, code, message) => {
    const before = await jobCount(stack);
    for (const path of ['/api/v1/images/jobs', '/api/v1/images/generate']) {
      const res = await request(stack.url).post(path).set('Content-Type', 'application/json').send(body);
      expect({ path, status: res.status, code: res.body?.error?.code, message: res.body?.error?.message }).toEqual({ path, status: 400, code, message });
    }
    const openai = await request(stack.url).post('/v1/images/generations').set('Content-Type', 'application/json').send(body);
    expect({ status: openai.status, code: openai.body?.error?.code, message: openai.body?.error?.message }).toEqual({ status: 400, code, message });
    expect(await jobCount(stack)).toBe(before);
  });

  it('a body over BODY_LIMIT_BYTES is 413 before anything is parsed', async () => {
    const res = await request(stack.url)
      .post('/api/v1/images/jobs')
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ prompt: 'p', negative_prompt: 'x'.repeat(stack.env.BODY_LIMIT_BYTES) }))
      .expect(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  it('a body that is not JSON is not read as parameters', async () => {
    const before = await jobCount(stack);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
      const res = await request(stack.url).post('/api/v1/images/jobs').set('Content-Type', type).send('prompt=p').expect(415);
      expect(res.body.error.code).toBe('unsupported_media_type');
    }
    expect(await jobCount(stack)).toBe(before);
  });
});
