import OpenAI from 'openai';
import sharp from 'sharp';
import { jobCount } from './support/security';
import { Stack } from './support/stack';

/** A slow image outlives the synchronous wait: 504, which the SDK retries, and each retry waits for the same job. */
describe('OpenAI-compatible API: a slow image and the SDK\'s retries of a 504', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ env: { SYNC_TIMEOUT_MS: '300' } });
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('answers 504 sync_timeout (retryable, with retry-after) while the job runs, and a retry gets its images: one job, one GPU run', async () => {
    const sim = stack.sims[0];
    const executedBefore = sim.stats().executed;
    const before = await jobCount(stack);
    sim.faults.set({ viewDelayMs: 1_500 });
    try {
      const once = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'open-server', maxRetries: 0 });
      const body = { prompt: 'a slow lighthouse', model: 'smoke-test', size: '256x256' } as const;
      const err = await once.images.generate(body).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      const e = err as InstanceType<typeof OpenAI.InternalServerError>;
      expect([e.status, e.code, e.type]).toEqual([504, 'sync_timeout', 'server_error']);
      expect(e.headers?.get('x-should-retry')).toBeNull();
      expect(e.headers?.get('retry-after')).toBe('1');
      const jobId = e.headers?.get('x-job-id');
      expect(jobId).toMatch(/^[0-9a-f-]{36}$/);

      const retrying = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'open-server', maxRetries: 8 });
      const { data: res, response } = await retrying.images.generate(body).withResponse();
      expect(response.headers.get('x-job-id')).toBe(jobId);
      expect((await sharp(Buffer.from(res.data![0].b64_json!, 'base64')).metadata()).width).toBe(256);
    } finally {
      sim.faults.set({ viewDelayMs: 0 });
    }
    expect(await jobCount(stack)).toBe(before + 1);
    expect(sim.stats().executed - executedBefore).toBe(1);
  }, 60_000);
});
