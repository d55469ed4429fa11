import type { SystemStats } from '@app/comfyui';
import { CachedProbe } from './cached-probe';
import type { ComfyInstanceStatus } from './comfyui-probe';
import { gpuReports } from './gpu-report';
import { evaluateGpus } from './gpu.health';
import { evaluateQueue, QueueSnapshot } from './queue.health';
import type { WorkerHeartbeat } from './worker-heartbeat';
import { summarizeWorkers } from './workers.health';

const MIB = 1024 * 1024;

function stats(devices: SystemStats['devices']): SystemStats {
  return { system: { comfyui_version: '0.3.64' }, devices };
}

function instance(url: string, gpus: ComfyInstanceStatus['gpus'], up = true): ComfyInstanceStatus {
  return { url, up, version: up ? '0.3.64' : null, latency_ms: 3, gpus };
}

function beat(over: Partial<WorkerHeartbeat> = {}): WorkerHeartbeat {
  return {
    id: 'h:1:0', host: 'h', pid: 1, comfyui: 'http://c:8188', state: 'idle', job_id: null, job_started_at: null, last_progress_at: null,
    last_job_started_at: null, comfyui_version: '0.3.64', gpus: [], busy_ratio: 0, interval_ms: 5000, started_at: 0, at: 0, ...over,
  };
}

describe('gpuReports', () => {
  it('keeps CUDA devices only, in MiB, with the used share', () => {
    const r = gpuReports(stats([
      { name: 'cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync', type: 'cuda', index: 0, vram_total: 80 * 1024 * MIB, vram_free: 20 * 1024 * MIB },
      { name: 'cpu', type: 'cpu', index: 0, vram_total: 1, vram_free: 1 },
    ]));
    expect(r).toEqual([{ index: 0, name: 'cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync', type: 'cuda', vram_total_mb: 81920, vram_free_mb: 20480, vram_used_ratio: 0.75 }]);
  });

  it('reports nothing for a CPU-only ComfyUI', () => {
    expect(gpuReports(stats([{ name: 'cpu', type: 'cpu', index: 0, vram_total: 1e9, vram_free: 1e9 }]))).toEqual([]);
  });
});

describe('evaluateGpus', () => {
  const gpu = (free: number) => ({ index: 0, name: 'H100', type: 'cuda', vram_total_mb: 80000, vram_free_mb: free, vram_used_ratio: 0 });

  it('is up with a GPU and no threshold', () => {
    expect(evaluateGpus([instance('http://a', [gpu(100)])], { required: true }).up).toBe(true);
  });

  it('is down when free VRAM is below the threshold, naming the device', () => {
    const e = evaluateGpus([instance('http://a', [gpu(1000)])], { required: true, minFreeMb: 2048 });
    expect(e.up).toBe(false);
    expect(e.problems[0]).toContain('1000 MiB free, below 2048 MiB');
  });

  it('is down without a CUDA device when a GPU is required, up when not', () => {
    expect(evaluateGpus([instance('http://a', [])], { required: true }).up).toBe(false);
    expect(evaluateGpus([instance('http://a', [])], { required: false }).up).toBe(true);
  });

  it('leaves unreachable instances to the comfyui check, unless none is reachable', () => {
    expect(evaluateGpus([instance('http://a', [gpu(5000)]), instance('http://b', [], false)], { required: true }).up).toBe(true);
    expect(evaluateGpus([instance('http://b', [], false)], { required: true }).up).toBe(false);
  });
});

describe('evaluateQueue (stuck consumer)', () => {
  const now = 1_000_000;
  const snap = (over: Partial<QueueSnapshot>): QueueSnapshot => ({ waiting: 0, active: 0, paused: false, oldestWaitingAt: null, ...over });

  it('is up when nothing waits', () => {
    expect(evaluateQueue(snap({}), [beat()], 1000, now).up).toBe(true);
  });

  it('is down when a job has waited past the limit, none is active, and live workers started nothing', () => {
    const e = evaluateQueue(snap({ waiting: 2, oldestWaitingAt: now - 5000 }), [beat({ last_job_started_at: now - 4000 })], 1000, now);
    expect(e.up).toBe(false);
    expect(e.message).toContain('2 job(s) waiting');
  });

  it('is up while a job is active, the queue is paused, no worker is alive, or a job started recently', () => {
    const old = { waiting: 1, oldestWaitingAt: now - 5000 };
    expect(evaluateQueue(snap({ ...old, active: 1 }), [beat()], 1000, now).up).toBe(true);
    expect(evaluateQueue(snap({ ...old, paused: true }), [beat()], 1000, now).up).toBe(true);
    expect(evaluateQueue(snap(old), [], 1000, now).up).toBe(true);
    expect(evaluateQueue(snap(old), [beat({ last_job_started_at: now - 200 })], 1000, now).up).toBe(true);
  });

  it('is up while the oldest waiting job is younger than the limit', () => {
    expect(evaluateQueue(snap({ waiting: 1, oldestWaitingAt: now - 500 }), [beat()], 1000, now).up).toBe(true);
  });
});

describe('summarizeWorkers', () => {
  it('counts states and reports ages and the smallest free VRAM', () => {
    const s = summarizeWorkers(
      [
        beat({ id: 'a', state: 'busy', job_id: 'j1', job_started_at: 900, last_progress_at: 950, at: 990, gpus: [{ index: 0, name: 'g', type: 'cuda', vram_total_mb: 10, vram_free_mb: 4, vram_used_ratio: 0.6 }] }),
        beat({ id: 'b', state: 'comfyui_down', at: 980 }),
      ],
      1000,
    );
    expect(s.alive).toBe(2);
    expect(s.by_state).toEqual({ idle: 0, busy: 1, comfyui_down: 1, warming: 0 });
    expect(s.workers[0]).toMatchObject({ id: 'a', job_id: 'j1', heartbeat_age_ms: 10, since_progress_ms: 50, vram_free_mb: 4 });
    expect(s.workers[1]).toMatchObject({ since_progress_ms: null, vram_free_mb: null });
  });
});

describe('CachedProbe', () => {
  it('shares the call in flight and remembers answers and failures for the window', async () => {
    let t = 0;
    let calls = 0;
    let fail = false;
    const probe = new CachedProbe(async () => {
      calls++;
      if (fail) throw new Error('down');
      return calls;
    }, 1000, () => t);
    const [a, b] = await Promise.all([probe.get(), probe.get()]);
    expect([a, b, calls]).toEqual([1, 1, 1]);
    t = 999;
    expect(await probe.get()).toBe(1);
    t = 1000;
    fail = true;
    await expect(probe.get()).rejects.toThrow('down');
    await expect(probe.get()).rejects.toThrow('down');
    expect(calls).toBe(2);
    t = 2000;
    fail = false;
    expect(await probe.get()).toBe(3);
  });
});
