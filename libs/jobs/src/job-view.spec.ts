import type { GenerationJobData } from '@app/queue';
import { renderJobResource } from './job-resource';
import { type QueueSnapshot, statusFromQueue, type TerminalRecord, viewFromQueue, viewFromRecord } from './job-view';

const data: GenerationJobData = {
  params: { model: 'm', prompt: 'p', negative_prompt: '', width: 256, height: 256, num_inference_steps: 8, guidance_scale: 1, seed: 1 },
  owner: 'key1',
  submitted_at: 1_000,
  metadata: { story: '42' },
};
const snap = (o: Partial<QueueSnapshot>): QueueSnapshot => ({
  id: 'j1', state: 'waiting', data, progress: 0, result: undefined, failedReason: undefined, attemptsMade: 0, timestamp: 999,
  processedOn: undefined, finishedOn: undefined, cancelRequested: false, queuePosition: 3, ...o,
});

describe('job view from the queue', () => {
  it('maps BullMQ states to public statuses; a flagged queued job reads canceled', () => {
    expect(statusFromQueue({ state: 'waiting', failedReason: undefined, cancelRequested: false })).toBe('queued');
    expect(statusFromQueue({ state: 'delayed', failedReason: undefined, cancelRequested: false })).toBe('queued');
    expect(statusFromQueue({ state: 'prioritized', failedReason: undefined, cancelRequested: true })).toBe('canceled');
    // Taken by a worker, its prompt not started by ComfyUI yet: queued.
    expect(statusFromQueue({ state: 'active', failedReason: undefined, cancelRequested: false })).toBe('queued');
    // Held by a worker, its prompt waiting in ComfyUI's queue (pipelined dispatch): still queued.
    expect(statusFromQueue({ state: 'active', failedReason: undefined, cancelRequested: false, progress: { step: 0, total_steps: 4, fraction: 0, held: true } })).toBe('queued');
    expect(statusFromQueue({ state: 'active', failedReason: undefined, cancelRequested: false, progress: { step: 1, total_steps: 4, fraction: 0.25, started_at: 5 } })).toBe('running');
    expect(statusFromQueue({ state: 'completed', failedReason: undefined, cancelRequested: false })).toBe('succeeded');
    expect(statusFromQueue({ state: 'failed', failedReason: '[canceled] The job was canceled', cancelRequested: false })).toBe('canceled');
    expect(statusFromQueue({ state: 'failed', failedReason: 'job stalled more than allowable limit', cancelRequested: false })).toBe('failed');
  });

  it('a queued job has no start time and no progress, even waiting for a retry after an attempt started', () => {
    const v = viewFromQueue(snap({ state: 'delayed', attemptsMade: 1, processedOn: 2_000, progress: { step: 3, total_steps: 8, fraction: 0.375, started_at: 2_000 } }), null);
    expect(v).toMatchObject({ status: 'queued', started_at: null, progress: null, finished_at: null, queue_position: 3, attempts: 1 });
  });

  it('a running job shows its step and this attempt’s start, and counts the running attempt', () => {
    const v = viewFromQueue(snap({ state: 'active', processedOn: 2_000, progress: { step: 2, total_steps: 8, fraction: 0.25, started_at: 2_050 } }), null);
    expect(v).toMatchObject({ status: 'running', started_at: 2_050, progress: { step: 2, total_steps: 8 }, attempts: 1, queue_position: null });
    // Taken but its prompt not started by ComfyUI (held, or about to be submitted): queued, next, no start time.
    expect(viewFromQueue(snap({ state: 'active', processedOn: 2_000, progress: 0, queuePosition: 0 }), null)).toMatchObject({ status: 'queued', started_at: null, queue_position: 0, attempts: 0 });
    const held = { step: 0, total_steps: 8, fraction: 0, prompt_id: 'p', comfyui: 'http://gpu0', held: true };
    expect(viewFromQueue(snap({ state: 'active', processedOn: 2_000, progress: held, queuePosition: 0 }), null)).toMatchObject({ status: 'queued', started_at: null });
  });

  it('a job BullMQ gave up on (no record) reads failed with a stable code and keeps the step reached', () => {
    const v = viewFromQueue(snap({ state: 'failed', attemptsMade: 3, finishedOn: 9_000, failedReason: 'job stalled more than allowable limit', progress: { step: 5, total_steps: 8, fraction: 0.6 } }), null);
    expect(v).toMatchObject({ status: 'failed', error: { code: 'job_stalled' }, finished_at: 9_000, progress: { step: 5, total_steps: 8 } });
  });
});

describe('job view from the terminal record, and its rendering', () => {
  const record: TerminalRecord = {
    v: 1, id: 'j1', status: 'canceled', data, progress: { step: 2, total_steps: 8 }, attempts: 1, started_at: 2_000, finished_at: 3_000,
    result: null, error: { code: 'canceled', message: 'The job was canceled' },
  };

  it('keeps what happened: the step a canceled job reached, its timestamps', () => {
    const r = renderJobResource(viewFromRecord(record, null), 'https://img.example.com/');
    expect(r).toMatchObject({
      id: 'j1', status: 'canceled', model: 'm', progress: { step: 2, total_steps: 8, fraction: 0.25 }, attempts: 1,
      created_at: new Date(1_000).toISOString(), started_at: new Date(2_000).toISOString(), finished_at: new Date(3_000).toISOString(),
      error: { code: 'canceled' }, images: [], metadata: { story: '42' }, queue_position: null,
    });
    expect(r.links).toEqual({ self: 'https://img.example.com/api/v1/images/jobs/j1', events: 'https://img.example.com/api/v1/images/jobs/j1/events' });
    expect(JSON.stringify(r)).not.toContain('key1'); // the owner never leaves the service
  });

  it('a succeeded job links each image under its own URL, relative when no origin is known', () => {
    const image = { index: 0, key: 'j1/0', content_type: 'image/png', bytes: 10, sha256: 'ab', width: 256, height: 256 };
    const ok: TerminalRecord = { ...record, status: 'succeeded', error: null, progress: { step: 8, total_steps: 8 },
      result: { images: [image], seed: 1, model: 'm', prompt_id: 'p', comfyui: 'http://c', timings: { queue_ms: 1, execution_ms: 2, total_ms: 3 } } };
    const r = renderJobResource(viewFromRecord(ok, null), '');
    expect(r.images).toEqual([{ index: 0, url: '/api/v1/images/jobs/j1/images/0', content_type: 'image/png', width: 256, height: 256, bytes: 10, sha256: 'ab' }]);
    expect(r.timings).toEqual({ queue_ms: 1, execution_ms: 2, total_ms: 3 });
    expect(r.progress?.fraction).toBe(1);
  });
});
