import type { Env } from '@app/config';
import { FleetMonitor, mayServeModel, servesJobs } from './fleet-monitor';
import { evaluateModelQueues, type QueueSnapshot } from './queue.health';
import type { WorkerHeartbeat, WorkerHeartbeatStore } from './worker-heartbeat';

function beat(over: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat {
  return {
    id: 'h:1:0', host: 'h', pid: 1, comfyui: 'http://c:8188', state: 'idle', job_id: null, job_started_at: null, last_progress_at: null,
    last_job_started_at: null, comfyui_version: '0.3.64', gpus: [], busy_ratio: 0, interval_ms: 5000, started_at: 0, at: 0, ...over,
  };
}

function fleet(beats: WorkerHeartbeat[]): FleetMonitor {
  const env = { HEALTH_CACHE_MS: 0, HEALTH_TIMEOUT_MS: 1000 } as unknown as Env;
  return new FleetMonitor(env, { list: async () => beats } as unknown as WorkerHeartbeatStore);
}

describe('which workers serve a model', () => {
  it('a worker serves the models its heartbeat lists; one that has not learnt them yet may serve any', () => {
    expect(mayServeModel(beat({ models: ['a'] }), 'a')).toBe(true);
    expect(mayServeModel(beat({ models: ['a'] }), 'b')).toBe(false);
    expect(mayServeModel(beat({ models: null }), 'b')).toBe(true);
    expect(mayServeModel(beat(), 'b')).toBe(true);
  });

  it('a warming worker takes no job yet', () => {
    expect(servesJobs(beat({ state: 'warming' }))).toBe(false);
    expect(servesJobs(beat({ state: 'busy' }))).toBe(true);
  });

  it('modelServed is false only when workers are live and none may serve the model', async () => {
    expect(await fleet([]).modelServed('a')).toBe(true);
    expect(await fleet([beat({ models: ['b'] }), beat({ id: 'h:1:1', models: [] })]).modelServed('a')).toBe(false);
    expect(await fleet([beat({ models: ['b'] }), beat({ id: 'h:1:1', models: ['a'], state: 'comfyui_down' })]).modelServed('a')).toBe(true);
    expect(await fleet([beat({ models: ['b'] }), beat({ id: 'h:1:1', models: null })]).modelServed('a')).toBe(true);
  });

  it('workersServing(model) counts live workers with the model', async () => {
    const f = fleet([beat({ models: ['a'] }), beat({ id: 'h:1:1', models: ['a'], state: 'warming' }), beat({ id: 'h:1:2', models: ['b'] })]);
    expect(await f.workersServing('a')).toBe(1);
    expect(await f.workersServing()).toBe(2);
  });
});

describe('evaluateModelQueues', () => {
  const now = 100_000;
  const waitingSince = (at: number): QueueSnapshot => ({ waiting: 1, active: 0, paused: false, oldestWaitingAt: at });
  const empty: QueueSnapshot = { waiting: 0, active: 0, paused: false, oldestWaitingAt: null };

  it('a queue whose model no live worker serves is not a wedged consumer', () => {
    const e = evaluateModelQueues([{ model: 'a', snap: waitingSince(0) }, { model: 'b', snap: empty }], [beat({ models: ['b'] })], 1_000, now);
    expect(e).toMatchObject({ up: true, waiting: 1, oldest_waiting_ms: now });
  });

  it('names the model whose queue is wedged although a worker serving it is alive', () => {
    const e = evaluateModelQueues([{ model: 'a', snap: empty }, { model: 'b', snap: waitingSince(0) }], [beat({ models: ['a', 'b'] })], 1_000, now);
    expect(e).toMatchObject({ up: false, model: 'b', waiting: 1 });
  });
});
