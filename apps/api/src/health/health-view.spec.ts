import type { HealthCheckResult } from '@nestjs/terminus';
import type { ComfyInstanceStatus, WorkerHeartbeat } from '@app/health';
import { compatibleHealth, imageDevice, imageModelStatus, publicCheck, publicHealth } from './health-view';

const gpu = { index: 0, name: 'NVIDIA H100', type: 'cuda', vram_total_mb: 80000, vram_free_mb: 70000, vram_used_ratio: 0.125 };

function beat(state: WorkerHeartbeat['state'], gpus = [gpu]): WorkerHeartbeat {
  return {
    id: 'gpu-box-1:4242:0', host: 'gpu-box-1', pid: 4242, comfyui: 'http://10.1.2.3:8188', state, job_id: null, job_started_at: null,
    last_progress_at: null, last_job_started_at: null, comfyui_version: '0.3.64', gpus, busy_ratio: 0, interval_ms: 5000, started_at: 0, at: 0,
  };
}

const instance = (up: boolean, gpus = [gpu]): ComfyInstanceStatus => ({ url: 'http://10.1.2.3:8188', up, version: up ? '0.3.64' : null, latency_ms: 3, gpus: up ? gpus : [] });

describe('public health view', () => {
  const full: HealthCheckResult = {
    status: 'error',
    info: { redis: { status: 'up', latency_ms: 1 } },
    error: { comfyui: { status: 'down', instances: [{ url: 'http://10.1.2.3:8188', up: false, version: null, error: 'ECONNREFUSED 10.1.2.3:8188' }, { url: 'http://10.1.2.4:8188', up: true }] } },
    details: {
      redis: { status: 'up', latency_ms: 1 },
      comfyui: { status: 'down', instances: [{ url: 'http://10.1.2.3:8188', up: false }, { url: 'http://10.1.2.4:8188', up: true }] },
      workers: { status: 'up', alive: 1, by_state: { idle: 1, busy: 0, comfyui_down: 0 }, workers: [{ id: 'gpu-box-1:4242:0', comfyui: 'http://10.1.2.3:8188' }] },
      gpu: { status: 'down', devices: [gpu], required: true, message: 'http://10.1.2.3:8188 GPU 0: 1000 MiB free' },
    },
  };

  it('keeps statuses, numbers, booleans and count maps; lists become counts; strings go', () => {
    const out = publicHealth(full);
    expect(out.details).toEqual({
      redis: { status: 'up', latency_ms: 1 },
      comfyui: { status: 'down', instances: 2, instances_up: 1 },
      workers: { status: 'up', alive: 1, by_state: { idle: 1, busy: 0, comfyui_down: 0 }, workers: 1 },
      gpu: { status: 'down', devices: 1, required: true },
    });
    expect(out.error).toEqual({ comfyui: { status: 'down', instances: 2, instances_up: 1 } });
    expect(out.status).toBe('error');
    expect(JSON.stringify(out)).not.toMatch(/10\.1\.2|gpu-box|0\.3\.64|H100|MiB/);
  });

  it('drops nested objects that are not plain counts', () => {
    expect(publicCheck({ status: 'up', nested: { url: 'http://x', n: 1 }, counts: { a: 1 } })).toEqual({ status: 'up', counts: { a: 1 } });
  });
});

describe('models.image', () => {
  it('device: cuda from a live heartbeat or the own probe, cpu when ComfyUI answers without CUDA, unknown otherwise', () => {
    expect(imageDevice([beat('idle')], [])).toBe('cuda');
    expect(imageDevice([], [instance(true)])).toBe('cuda');
    expect(imageDevice([beat('idle', [])], [])).toBe('cpu');
    expect(imageDevice([], [instance(true, [])])).toBe('cpu');
    expect(imageDevice([beat('comfyui_down')], [instance(false)])).toBe('unknown');
    expect(imageDevice([], [])).toBe('unknown');
  });

  it('initialized: a worker with a reachable ComfyUI, busy or idle', () => {
    expect(imageModelStatus('m', [beat('busy')], []).initialized).toBe(true);
    expect(imageModelStatus('m', [beat('comfyui_down')], [instance(true)]).initialized).toBe(false);
    expect(imageModelStatus('m', [], [])).toEqual({ name: 'm', type: 'text-to-image', framework: 'comfyui', device: 'unknown', initialized: false });
  });

  it('the compatible body: healthy iff readiness is 200, terminus groups under their names', () => {
    const image = imageModelStatus('m', [beat('idle')], []);
    const ok = compatibleHealth({ httpStatus: 200, body: { status: 'ok', info: {}, error: {}, details: {} } }, '1.2.3', image);
    expect(ok).toEqual({ status: 'healthy', version: '1.2.3', models: { image }, info: {}, error: {}, details: {} });
    const down = compatibleHealth({ httpStatus: 503, body: { status: 'shutting_down', info: {}, error: {}, details: {} } }, '1.2.3', image);
    expect(down.status).toBe('unhealthy');
  });
});
