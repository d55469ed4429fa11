import request from 'supertest';
import { FAST_STALL_ENV, workerProcesses } from './support/processes';
import { Stack, waitFor } from './support/stack';

type Job = { id: string; status: string; attempts: number; progress: { step: number } | null };

async function until(url: string, id: string, pred: (j: Job) => boolean, timeoutMs = 25_000): Promise<Job> {
  return waitFor(async () => {
    const j = (await request(url).get(`/api/v1/images/jobs/${id}`).expect(200)).body as Job;
    return pred(j) ? j : undefined;
  }, timeoutMs, 'job state');
}

describe('worker processes: crash recovery and graceful shutdown', () => {
  let stack: Stack;
  const workers = workerProcesses(() => stack.rawEnv);
  const worker = workers.start;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, worker: false, sim: { stepMs: 150 }, env: FAST_STALL_ENV });
  });
  afterEach(() => workers.stopAll());
  afterAll(async () => stack?.close());

  it('SIGKILL mid-job: the stalled job is recovered and re-attached to the prompt still running in ComfyUI (rendered once)', async () => {
    const before = stack.sims[0].stats().executed;
    const w1 = worker();
    const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'crash me', width: 256, height: 256, num_inference_steps: 16 }).expect(202);
    await until(stack.url, body.id, (j) => j.status === 'running' && (j.progress?.step ?? 0) >= 2);
    w1.child.kill('SIGKILL');
    await w1.exited;
    worker();
    const done = await until(stack.url, body.id, (j) => j.status === 'succeeded' || j.status === 'failed');
    expect(done.status).toBe('succeeded');
    // One ComfyUI execution for the job: the new worker followed the old prompt instead of resubmitting.
    expect(stack.sims[0].stats().executed - before).toBe(1);
  });

  it('SIGTERM: the running prompt finishes within the grace time, then the worker exits 0', async () => {
    const w = worker({ WORKER_SHUTDOWN_GRACE_MS: '15000' });
    const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'finish me', width: 256, height: 256, num_inference_steps: 8 }).expect(202);
    await until(stack.url, body.id, (j) => j.status === 'running');
    w.child.kill('SIGTERM');
    const exit = await w.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    const job = (await request(stack.url).get(`/api/v1/images/jobs/${body.id}`).expect(200)).body as Job;
    expect(job.status).toBe('succeeded');
  });

  it('SIGTERM past the grace time: the prompt is interrupted and the job handed back without using an attempt', async () => {
    const interruptedBefore = stack.sims[0].stats().interrupted;
    const w = worker({ WORKER_SHUTDOWN_GRACE_MS: '300' });
    const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'hand me back', width: 256, height: 256, num_inference_steps: 16 }).expect(202);
    await until(stack.url, body.id, (j) => j.status === 'running' && (j.progress?.step ?? 0) >= 1);
    const t0 = Date.now();
    w.child.kill('SIGTERM');
    expect(await w.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(6_000);
    const back = (await request(stack.url).get(`/api/v1/images/jobs/${body.id}`).expect(200)).body as Job;
    expect(back.status).toBe('queued');
    expect(back.attempts).toBe(0);
    // The interrupt lands at the simulator's next sampling step.
    await waitFor(async () => (stack.sims[0].stats().interrupted === interruptedBefore + 1 ? true : undefined), 5_000, 'the interrupt');
    worker();
    const done = await until(stack.url, body.id, (j) => j.status === 'succeeded');
    expect(done.attempts).toBe(1);
  });
});
