/**
 * Pipelined dispatch (WORKER_PIPELINE=true, the default): while a prompt runs, the worker already
 * holds the next job of that GPU and its prompt waits in ComfyUI's queue — never more than one.
 * Everything is read from the simulator over the real protocol (its queue, history and `status`
 * broadcasts) and from the public API; no timing is asserted.
 */
import axios from 'axios';
import request from 'supertest';
import WebSocket from 'ws';
import { FAST_STALL_ENV, workerProcesses } from './support/processes';
import { TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

type Job = {
  id: string; status: string; attempts: number; queue_position: number | null; created_at: string; started_at: string | null; finished_at: string | null;
  error: { code: string } | null; timings: { queue_ms: number; execution_ms: number; total_ms: number } | null;
};
type History = Record<string, { prompt: [number, string, ...unknown[]]; status: { messages: Array<[string, { timestamp: number }]> } }>;

const body = (steps: number, extra: object = {}) => ({ prompt: 'pipelined', width: 256, height: 256, num_inference_steps: steps, ...extra });

async function getJob(url: string, id: string, auth: Record<string, string> = {}): Promise<Job> {
  return (await request(url).get(`/api/v1/images/jobs/${id}`).set(auth).expect(200)).body as Job;
}

async function until(url: string, id: string, pred: (j: Job) => boolean, what: string, auth: Record<string, string> = {}, timeoutMs = 30_000): Promise<Job> {
  return waitFor(async () => {
    const j = await getJob(url, id, auth);
    return pred(j) ? j : undefined;
  }, timeoutMs, what);
}

async function submit(url: string, b: object, auth: Record<string, string> = {}): Promise<string> {
  return (await request(url).post('/api/v1/images/jobs').set(auth).send(b).expect(202)).body.id as string;
}

/** ComfyUI's own queue (GET /queue): the running prompt id and the pending ones. */
async function comfyQueue(simUrl: string): Promise<{ running: string[]; pending: string[] }> {
  const { data } = await axios.get<{ queue_running: Array<[number, string]>; queue_pending: Array<[number, string]> }>(`${simUrl}/queue`);
  return { running: data.queue_running.map((i) => i[1]), pending: data.queue_pending.map((i) => i[1]) };
}

/** Waits until ComfyUI runs one prompt and holds exactly one pending; answers both ids. */
async function heldPrompt(simUrl: string): Promise<{ running: string; pending: string }> {
  return waitFor(async () => {
    const q = await comfyQueue(simUrl);
    return q.running.length === 1 && q.pending.length === 1 ? { running: q.running[0], pending: q.pending[0] } : undefined;
  }, 30_000, 'one prompt running and one held in ComfyUI\'s queue');
}

async function history(simUrl: string): Promise<History> {
  return (await axios.get<History>(`${simUrl}/history`)).data;
}

/**
 * Listens to ComfyUI's `status` broadcasts (every queue change: a prompt queued, taken, done or
 * deleted) and keeps the `queue_remaining` sequence — pending plus running, as ComfyUI counts it.
 */
async function watchQueue(simUrl: string): Promise<{ values: number[]; close: () => Promise<void> }> {
  const ws = new WebSocket(`${simUrl.replace('http', 'ws')}/ws?clientId=queue-observer`);
  const values: number[] = [];
  ws.on('message', (raw, isBinary) => {
    if (isBinary) return;
    const m = JSON.parse(raw.toString()) as { type: string; data: { status?: { exec_info?: { queue_remaining?: number } } } };
    const n = m.data?.status?.exec_info?.queue_remaining;
    if (m.type === 'status' && typeof n === 'number') values.push(n);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    values,
    close: () =>
      new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close();
      }),
  };
}

describe('pipelined dispatch on one ComfyUI (in-process worker)', () => {
  let stack: Stack;
  beforeAll(async () => {
    // 4 steps of 150 ms: each prompt runs ~0.6 s, long enough to see the held one.
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 150 } });
  });
  afterAll(async () => stack?.close());

  it('(a) 4 jobs at once: never more than one prompt waits in ComfyUI, and the next was always queued when the previous ended', async () => {
    const sim = stack.sims[0];
    const watch = await watchQueue(sim.url);
    const before = sim.stats();
    try {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(await submit(stack.url, body(4, { seed: 1000 + i })));
      // While the first runs, the second is held: queued, next in line, no start time.
      await heldPrompt(sim.url);
      const views = await waitFor(async () => {
        const vs = await Promise.all(ids.map((id) => getJob(stack.url, id)));
        return vs.filter((v) => v.status === 'running').length === 1 && vs.some((v) => v.status === 'queued' && v.queue_position === 0) ? vs : undefined;
      }, 10_000, 'one job running and the next held');
      const held = views.filter((v) => v.status === 'queued' && v.queue_position === 0);
      expect(held).toHaveLength(1);
      for (const v of held) expect(v.started_at).toBeNull();
      // Waiting ones stand behind the held one.
      const positions = views.filter((v) => v.status === 'queued').map((v) => v.queue_position);
      expect(new Set(positions).size).toBe(positions.length);

      const done = await Promise.all(ids.map((id) => until(stack.url, id, (j) => j.status === 'succeeded', 'all four succeeded')));
      // A held job was queued until its prompt started: its wait in ComfyUI's queue is queue_ms, not
      // execution_ms (each is within a few ms of the job's own created/started/finished times).
      for (const j of done) {
        const [created, started, finished] = [j.created_at, j.started_at, j.finished_at].map((t) => Date.parse(t as string));
        expect(Math.abs(j.timings!.queue_ms - (started - created))).toBeLessThanOrEqual(50);
        expect(j.timings!.execution_ms).toBeLessThanOrEqual(finished - started + 50);
      }
      await waitFor(async () => (watch.values.at(-1) === 0 ? true : undefined), 5_000, 'the queue to empty');
    } finally {
      await watch.close();
    }
    const after = sim.stats();
    expect(after.executed - before.executed).toBe(4);
    expect(after.maxConcurrent).toBe(1);

    // ComfyUI's count never exceeds running + one pending.
    expect(Math.max(...watch.values)).toBeLessThanOrEqual(2);
    // Each prompt's end (a drop in the count) left the next one already waiting, except the last.
    const drops = watch.values.filter((v, i) => i > 0 && v < watch.values[i - 1]);
    expect(drops).toHaveLength(4);
    expect(drops.slice(0, 3).every((v) => v >= 1)).toBe(true);
    expect(drops[3]).toBe(0);

    // Printed, not asserted: the GPU's idle gap between consecutive prompts, by ComfyUI's clock.
    const runs = Object.values(await history(sim.url))
      .map((e) => ({ start: e.status.messages.find((m) => m[0] === 'execution_start')?.[1].timestamp ?? 0, end: e.status.messages.find((m) => m[0] === 'execution_success')?.[1].timestamp ?? 0 }))
      .sort((a, b) => a.start - b.start)
      .slice(-4);
    const gaps = runs.slice(1).map((r, i) => r.start - runs[i].end);
    process.stdout.write(`pipelined dispatch: GPU idle gaps between consecutive prompts (ms, ComfyUI clock): ${gaps.join(', ')}\n`);
  });

  it('(b) cancel of the held job: canceled, its prompt deleted from ComfyUI\'s queue, never executed', async () => {
    const sim = stack.sims[0];
    const first = await submit(stack.url, body(16, { seed: 2001 }));
    const second = await submit(stack.url, body(4, { seed: 2002 }));
    const { pending } = await heldPrompt(sim.url);
    const held = await until(stack.url, second, (j) => j.status === 'queued', 'the second job held');
    expect(held.started_at).toBeNull();
    const res = await request(stack.url).delete(`/api/v1/images/jobs/${second}`).expect(200);
    expect(res.body.status).toBe('canceled');
    await waitFor(async () => (!(await comfyQueue(sim.url)).pending.includes(pending) ? true : undefined), 10_000, 'the held prompt deleted');
    await until(stack.url, first, (j) => j.status === 'succeeded', 'the running job to finish');
    const canceled = await getJob(stack.url, second);
    expect(canceled).toMatchObject({ status: 'canceled', started_at: null, error: { code: 'canceled' } });
    // Deleted while pending: ComfyUI never ran it, so it has no history entry either.
    expect(sim.stats().executedPromptIds).not.toContain(pending);
    expect(Object.keys(await history(sim.url))).not.toContain(pending);
  });
});

describe('pipelined dispatch: priorities', () => {
  let stack: Stack;
  let keys: TestKeys;
  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 150 } });
    keys = TestKeys.of(stack);
  });
  afterAll(async () => {
    await keys?.close();
    await stack?.close();
  });

  it('(e) a high-priority job submitted while a low one is held runs right after the held one, before the other low ones', async () => {
    const sim = stack.sims[0];
    const low = await keys.create('batch', { priority: 500 });
    const high = await keys.create('interactive', { priority: 5 });
    const l1 = await submit(stack.url, body(16, { seed: 3001 }), low.auth);
    const l2 = await submit(stack.url, body(4, { seed: 3002 }), low.auth);
    const l3 = await submit(stack.url, body(4, { seed: 3003 }), low.auth);
    const { pending: heldId } = await heldPrompt(sim.url);
    await until(stack.url, l2, (j) => j.status === 'queued' && j.queue_position === 0, 'l2 held', low.auth);
    // The held job was already chosen: the high one is next after it, ahead of l3.
    const h = await submit(stack.url, body(4, { seed: 3004 }), high.auth);
    const hView = await getJob(stack.url, h, high.auth);
    const l3View = await getJob(stack.url, l3, low.auth);
    expect(hView.status).toBe('queued');
    expect(hView.queue_position).toBeLessThan(l3View.queue_position as number);
    await Promise.all([
      until(stack.url, l1, (j) => j.status === 'succeeded', 'l1', low.auth),
      until(stack.url, l2, (j) => j.status === 'succeeded', 'l2', low.auth),
      until(stack.url, l3, (j) => j.status === 'succeeded', 'l3', low.auth),
      until(stack.url, h, (j) => j.status === 'succeeded', 'h', high.auth),
    ]);
    const order = sim.stats().executedPromptIds.slice(-4);
    // l1 ran, then the held l2, then the high one, then l3.
    expect(order[1]).toBe(heldId);
    const startedAt = async (id: string, auth: Record<string, string>) => Date.parse((await getJob(stack.url, id, auth)).started_at as string);
    const [s2, sh, s3] = [await startedAt(l2, low.auth), await startedAt(h, high.auth), await startedAt(l3, low.auth)];
    expect(s2).toBeLessThanOrEqual(sh);
    expect(sh).toBeLessThanOrEqual(s3);
  });
});

describe('pipelined dispatch: worker processes (graceful shutdown, SIGKILL)', () => {
  let stack: Stack;
  const workers = workerProcesses(() => stack.rawEnv);
  const worker = workers.start;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, worker: false, sim: { stepMs: 150 }, env: FAST_STALL_ENV });
  });
  afterEach(() => workers.stopAll());
  afterAll(async () => stack?.close());

  it('(c) SIGTERM with a held job: it goes back to waiting untouched (attempts 0, prompt deleted, never run) and completes on another worker', async () => {
    const sim = stack.sims[0];
    const w1 = worker({ WORKER_SHUTDOWN_GRACE_MS: '20000' });
    const running = await submit(stack.url, body(16, { seed: 4001 }));
    const heldJob = await submit(stack.url, body(4, { seed: 4002 }));
    const { pending } = await heldPrompt(sim.url);
    await until(stack.url, heldJob, (j) => j.status === 'queued' && j.queue_position === 0, 'the job held');
    w1.child.kill('SIGTERM');
    // Handed back at once, its prompt gone from ComfyUI's queue; the running one finishes in the grace time.
    await waitFor(async () => ((await comfyQueue(sim.url)).pending.length === 0 ? true : undefined), 10_000, 'the held prompt deleted');
    expect(await w1.exited).toEqual({ code: 0, signal: null });
    expect((await getJob(stack.url, running)).status).toBe('succeeded');
    const back = await getJob(stack.url, heldJob);
    expect(back).toMatchObject({ status: 'queued', attempts: 0, started_at: null });
    expect(sim.stats().executedPromptIds).not.toContain(pending);

    worker();
    const done = await until(stack.url, heldJob, (j) => j.status === 'succeeded', 'the handed-back job on the second worker');
    expect(done.attempts).toBe(1);
    expect(sim.stats().executedPromptIds).not.toContain(pending);
  });

  it('(d) SIGKILL with a held job: both jobs complete, each prompt executed exactly once (re-attached, not resubmitted)', async () => {
    const sim = stack.sims[0];
    const before = sim.stats();
    const w1 = worker();
    const a = await submit(stack.url, body(16, { seed: 5001 }));
    const b = await submit(stack.url, body(4, { seed: 5002 }));
    const { running, pending } = await heldPrompt(sim.url);
    w1.child.kill('SIGKILL');
    await w1.exited;
    worker();
    await Promise.all([
      until(stack.url, a, (j) => j.status === 'succeeded', 'a after the crash'),
      until(stack.url, b, (j) => j.status === 'succeeded', 'b after the crash'),
    ]);
    const after = sim.stats();
    expect(after.submitted - before.submitted).toBe(2);
    expect(after.executed - before.executed).toBe(2);
    const ran = after.executedPromptIds.slice(before.executedPromptIds.length);
    expect(ran.filter((id) => id === running)).toHaveLength(1);
    expect(ran.filter((id) => id === pending)).toHaveLength(1);
  });

  it('(f) a worker restarted after SIGKILL counts the prompts it finds in ComfyUI\'s queue: new jobs wait for their seats, never more than one prompt waiting', async () => {
    const sim = stack.sims[0];
    const before = sim.stats();
    const w1 = worker();
    const a = await submit(stack.url, body(16, { seed: 6001 }));
    const b = await submit(stack.url, body(16, { seed: 6002 }));
    const { running, pending } = await heldPrompt(sim.url);
    w1.child.kill('SIGKILL');
    await w1.exited;
    // Submitted while no worker is up: the restarted worker takes them before a and b come back
    // (their locks have to expire first), while a's and b's prompts are still in ComfyUI's queue.
    const c = await submit(stack.url, body(4, { seed: 6003 }));
    const d = await submit(stack.url, body(4, { seed: 6004 }));
    const watch = await watchQueue(sim.url);
    try {
      worker();
      await Promise.all([a, b, c, d].map((id) => until(stack.url, id, (j) => j.status === 'succeeded', `${id} after the restart`)));
    } finally {
      await watch.close();
    }
    // The earlier worker's two prompts held both seats: c and d went in one at a time as they left.
    expect(watch.values.length).toBeGreaterThan(0);
    expect(Math.max(...watch.values)).toBeLessThanOrEqual(2);
    const after = sim.stats();
    expect(after.executed - before.executed).toBe(4);
    const ran = after.executedPromptIds.slice(before.executedPromptIds.length);
    expect(ran.filter((id) => id === running)).toHaveLength(1);
    expect(ran.filter((id) => id === pending)).toHaveLength(1);
  });
});
