import { Queue } from 'bullmq';
import request from 'supertest';
import { QueueName } from '@app/queue';
import { API_ENTRY, AppProcess, startApp, stopApp } from './support/processes';
import { freePort } from './support/redis-server';
import { Stack, waitFor } from './support/stack';

/**
 * The API as a real process (build first: `npx nest build api`), against an in-process worker and
 * simulator on the same Redis and prefix.
 */
describe('graceful API shutdown (SIGTERM to a real API process)', () => {
  let stack: Stack;
  let api: AppProcess | undefined;
  let queue: Queue;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 250 }, env: { WORKER_HEARTBEAT_INTERVAL_MS: '300' } });
    queue = new Queue(QueueName.Generation, { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX });
  });
  afterAll(async () => {
    await stopApp(api);
    await queue?.close();
    await stack?.close();
  });

  it('readiness turns 503 at once, liveness stays 200, the in-flight request completes, the process exits 0', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const drainMs = 1500;
    api = startApp(API_ENTRY, {
      ...stack.rawEnv,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      SHUTDOWN_DRAIN_MS: String(drainMs),
      SHUTDOWN_TIMEOUT_MS: '15000',
    });
    const proc = api;
    await waitFor(async () => ((await request(url).get('/health/ready')).status === 200 ? true : undefined), 20_000, 'the API process to be ready').catch((e: Error) => {
      throw new Error(`${e.message}\n--- API output ---\n${proc.output().slice(-4000)}`);
    });

    // A slow synchronous request: 16 steps × 250 ms on the simulator, answered only when the image exists.
    const inFlight = request(url).post('/api/v1/images/generate').send({ prompt: 'a slow lighthouse', width: 256, height: 256, num_inference_steps: 16 }).then((r) => r);
    await waitFor(async () => ((await queue.getJobCounts('active')).active === 1 ? true : undefined), 10_000, 'the job to be running');

    const signalledAt = Date.now();
    api.child.kill('SIGTERM');
    // The signal reaches the child asynchronously: a probe sent in the same millisecond may be
    // answered before the handler ran. Readiness must flip within a fraction of a second.
    const first = await waitFor(
      async () => {
        const r = await request(url).get('/health/ready');
        return r.status === 503 ? r : undefined;
      },
      1_000,
      'readiness to turn 503 after SIGTERM',
    );
    expect(first.body).toMatchObject({ status: 'shutting_down' });
    const flipMs = Date.now() - signalledAt;
    await request(url).get('/health/live').expect(200);
    // Still serving during the drain: a new request is answered.
    await request(url).get('/api/v1/models').expect(200);

    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(res.body.image_url).toMatch(/^data:image\/png;base64,/);
    const answeredAfter = Date.now() - signalledAt;
    // Answered after the drain, i.e. after the server had stopped accepting connections.
    expect(answeredAfter).toBeGreaterThan(drainMs);

    const exit = await api.exited;
    const exitedAfter = Date.now() - signalledAt;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(exitedAfter).toBeGreaterThanOrEqual(drainMs);
    expect(exitedAfter).toBeLessThan(drainMs + 15_000);
    await expect(request(url).get('/health/live')).rejects.toThrow();
    expect(api.output()).toContain('"msg":"shutdown: readiness is now 503, draining"');
    if (process.env.SHOW_API_LOG) process.stdout.write(api.output());
    process.stdout.write(`SIGTERM: readiness 503 after ${flipMs} ms; in-flight request answered 200 after ${answeredAfter} ms; exit 0 after ${exitedAfter} ms (drain ${drainMs} ms)\n`);
  });
});
