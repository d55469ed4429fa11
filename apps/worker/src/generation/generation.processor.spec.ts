import { createHash } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError, WaitingError } from 'bullmq';
import sharp from 'sharp';
import {
  ComfyAbortError, type ComfyGraph, type ComfyUiClient, ComfyUiTimeoutError, ComfyUnavailableError, ExecutionError, PromptValidationError, type PromptOutcome,
} from '@app/comfyui';
import type { Env } from '@app/config';
import type { JobLifecycle } from '@app/jobs';
import { AbortReason, type GenerationJob, type GenerationJobData } from '@app/queue';
import { type ResultStore, storageFullError } from '@app/storage';
import type { WorkflowRegistry } from '@app/workflows';
import type { EditInputs } from './edit-inputs';
import { GenerationProcessor } from './generation.processor';

type Call = [string, ...unknown[]];

/** A fake of the job owner that records every call (the processor's only way to change a job). */
function fakeLifecycle(opts: { cancelRequested?: boolean; previous?: object } = {}) {
  const calls: Call[] = [];
  const rec = (name: string, ret?: unknown) => async (...args: unknown[]) => (calls.push([name, ...args.slice(1)]), ret);
  const lifecycle = {
    isCancelRequested: async () => opts.cancelRequested ?? false,
    previousAttempt: () => opts.previous,
    started: rec('started'),
    promptSubmitting: rec('promptSubmitting'),
    forgetPrompt: rec('forgetPrompt'),
    stepped: (_job: unknown, _c: string, step: number, total: number) => void calls.push(['stepped', step, total]),
    succeeded: rec('succeeded'),
    failed: rec('failed'),
    canceled: rec('canceled'),
    requeued: rec('requeued'),
    handBack: async (job: { moveToWait: () => Promise<void>; moveToDelayed: () => Promise<void> }, _t: unknown, comfyui: string, reason: string) => {
      await (reason === 'shutdown' ? job.moveToWait() : job.moveToDelayed());
      calls.push(['requeued', comfyui, reason]);
    },
  };
  return { lifecycle: lifecycle as unknown as JobLifecycle, calls, names: () => calls.map((c) => c[0]) };
}

let png: Buffer;
const outcome: PromptOutcome = { promptId: 'p', images: [{ filename: 'a.png', subfolder: '', type: 'output' }], executionMs: 40 } as unknown as PromptOutcome;

type FakeWaitOpts = { onProgress?: (p: { value: number; max: number }) => void; onStart?: () => void };

function fakeComfy(o: { submit?: () => Promise<unknown>; wait?: (opts: FakeWaitOpts) => Promise<PromptOutcome>; answers?: boolean; locate?: string } = {}) {
  const calls: string[] = [];
  const comfy = {
    baseUrl: 'http://gpu0',
    submit: async () => (calls.push('submit'), o.submit ? o.submit() : { promptId: 'p', number: 1 }),
    wait: async (_id: string, opts: FakeWaitOpts) => (calls.push('wait'), o.wait ? o.wait(opts) : outcome),
    locate: async () => (calls.push('locate'), o.locate ?? 'unknown'),
    outcome: async () => (calls.push('outcome'), outcome),
    view: async () => (calls.push('view'), png),
    cancel: async () => void calls.push('cancel'),
    free: async () => void calls.push('free'),
    systemStats: async () => {
      calls.push('systemStats');
      if (o.answers === false) throw new Error('down');
      return {};
    },
  };
  return { comfy: comfy as unknown as ComfyUiClient, calls };
}

const data: GenerationJobData = {
  params: { model: 'm', prompt: 'p', negative_prompt: '', width: 64, height: 48, num_inference_steps: 4, guidance_scale: 1, seed: 9 },
  submitted_at: Date.now(),
};

function job(attemptsMade = 0) {
  const moves: string[] = [];
  const j = {
    id: 'job-1', data, attemptsMade, opts: { attempts: 3 }, processedOn: Date.now(), progress: 0,
    moveToDelayed: async () => void moves.push('delayed'),
    moveToWait: async () => void moves.push('wait'),
  };
  return { job: j as unknown as GenerationJob, moves };
}

/** Text-to-image jobs: no inputs to upload; submit goes straight to the client. */
const editInputs = {
  prepare: async () => undefined,
  submit: (comfy: ComfyUiClient, graph: ComfyGraph, opts: { promptId: string; signal: AbortSignal }) => comfy.submit(graph, opts),
} as unknown as EditInputs;

function processor(lifecycle: JobLifecycle) {
  const stored: Array<[string, number, number, string]> = [];
  const store = { putImage: async (id: string, i: number, b: Buffer, ct: string) => void stored.push([id, i, b.length, ct]) } as unknown as ResultStore;
  const workflows = { buildGraph: () => ({ '1': { class_type: 'X', inputs: {} } }) } as unknown as WorkflowRegistry;
  const env = { COMFYUI_IDLE_TIMEOUT_MS: 1_000 } as Env;
  return { p: new GenerationProcessor(env, workflows, store, lifecycle, editInputs), stored };
}

const live = () => new AbortController().signal;

describe('GenerationProcessor', () => {
  beforeAll(async () => {
    Logger.overrideLogger(false);
    png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#345' } }).png().toBuffer();
  });

  it('runs a job: record the prompt id (held) before submitting, started at ComfyUI\'s start, steps, store, succeeded with dimensions and timings', async () => {
    const f = fakeLifecycle();
    const c = fakeComfy({ wait: async ({ onProgress, onStart }) => (onStart?.(), onProgress?.({ value: 0, max: 1 }), onProgress?.({ value: 2, max: 4 }), outcome) });
    const { p, stored } = processor(f.lifecycle);
    const { job: j } = job();
    const hooks: string[] = [];
    const result = await p.process(j, 't', live(), c.comfy, { onStarted: () => hooks.push('started'), onPromptEnded: () => hooks.push('ended') });
    expect(f.names()).toEqual(['promptSubmitting', 'started', 'stepped', 'succeeded']);
    // Submitted but not started: the job shows as queued until ComfyUI starts its prompt.
    expect(f.calls[0]).toEqual(['promptSubmitting', expect.any(String), 'http://gpu0', { held: true }]);
    expect(hooks).toEqual(['started', 'ended']);
    expect(c.calls).toEqual(['submit', 'wait', 'view']);
    expect(stored).toEqual([['job-1', 0, png.length, 'image/png']]);
    expect(result.images[0]).toMatchObject({ width: 64, height: 48, content_type: 'image/png', bytes: png.length });
    expect(result.timings.comfyui_ms).toBe(40);
    expect(f.calls.find((x) => x[0] === 'stepped')).toEqual(['stepped', 2, 4]);
  });

  it.each([
    ['webp', 'image/webp'],
    ['jpeg', 'image/jpeg'],
  ] as const)('converts the outputs to %s: stored type, size and hash are those of the converted bytes', async (format, type) => {
    const f = fakeLifecycle();
    const stored: Buffer[] = [];
    const store = { putImage: async (_id: string, _i: number, b: Buffer) => void stored.push(b) } as unknown as ResultStore;
    const workflows = { buildGraph: () => ({}) } as unknown as WorkflowRegistry;
    const p = new GenerationProcessor({ COMFYUI_IDLE_TIMEOUT_MS: 1_000 } as Env, workflows, store, f.lifecycle, editInputs);
    const two = { ...outcome, images: [...outcome.images, { filename: 'b.png', subfolder: '', type: 'output' }] } as PromptOutcome;
    const j = job().job;
    j.data = { ...data, params: { ...data.params, output_format: format, output_quality: 50, num_images: 2 } };
    const result = await p.process(j, 't', live(), fakeComfy({ wait: async () => two }).comfy);
    expect(stored).toHaveLength(2);
    for (const [i, bytes] of stored.entries()) {
      expect((await sharp(bytes).metadata()).format).toBe(format);
      expect(result.images[i]).toMatchObject({ index: i, content_type: type, bytes: bytes.length, width: 64, height: 48 });
      expect(result.images[i].sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
  });

  it('a cancel flag seen before starting ends the job canceled without touching ComfyUI', async () => {
    const f = fakeLifecycle({ cancelRequested: true });
    const c = fakeComfy();
    await expect(processor(f.lifecycle).p.process(job().job, 't', live(), c.comfy)).rejects.toBeInstanceOf(UnrecoverableError);
    expect(f.names()).toEqual(['canceled']);
    expect(c.calls).toEqual([]);
  });

  it('re-attaches to the prompt an earlier attempt left running on the same ComfyUI instead of submitting again', async () => {
    const f = fakeLifecycle({ previous: { step: 1, total_steps: 4, fraction: 0.25, prompt_id: 'p-old', comfyui: 'http://gpu0' } });
    const c = fakeComfy({ locate: 'running' });
    await processor(f.lifecycle).p.process(job(1).job, 't', live(), c.comfy);
    expect(c.calls).toEqual(['locate', 'wait', 'view']);
    // Found running: its start stays on record (not held).
    expect(f.calls.find((x) => x[0] === 'promptSubmitting')).toEqual(['promptSubmitting', 'p-old', 'http://gpu0', { held: false, running: true }]);
  });

  it('re-attaches to a prompt still pending in ComfyUI\'s queue as held: queued until it starts', async () => {
    const f = fakeLifecycle({ previous: { step: 0, total_steps: 4, fraction: 0, prompt_id: 'p-old', comfyui: 'http://gpu0', held: true } });
    const c = fakeComfy({ locate: 'pending', wait: async ({ onStart }) => (onStart?.(), outcome) });
    await processor(f.lifecycle).p.process(job(0).job, 't', live(), c.comfy);
    expect(c.calls).toEqual(['locate', 'wait', 'view']);
    expect(f.names()).toEqual(['promptSubmitting', 'started', 'succeeded']);
    expect(f.calls[0]).toEqual(['promptSubmitting', 'p-old', 'http://gpu0', { held: true, running: false }]);
  });

  it('a cancel of a held job (prompt pending, never started) deletes the prompt and records no start', async () => {
    const f = fakeLifecycle();
    const ac = new AbortController();
    const c = fakeComfy({
      wait: () => new Promise<PromptOutcome>((_r, reject) => ac.signal.addEventListener('abort', () => reject(new ComfyAbortError(ac.signal.reason)))),
    });
    const run = processor(f.lifecycle).p.process(job(0).job, 't', ac.signal, c.comfy);
    await new Promise((r) => setImmediate(r));
    ac.abort(new Error(AbortReason.Canceled));
    await expect(run).rejects.toBeInstanceOf(UnrecoverableError);
    expect(c.calls).toContain('cancel');
    expect(f.names()).not.toContain('started');
    expect(f.calls.at(-1)).toEqual(['canceled', 'http://gpu0', { started: false }]);
  });

  it('permanent rejection: UnrecoverableError and the job fails now with ComfyUI’s words', async () => {
    const f = fakeLifecycle();
    const c = fakeComfy({ submit: async () => Promise.reject(new PromptValidationError({ type: 'x', message: 'Prompt outputs failed validation', details: '' }, {})) });
    const err = await processor(f.lifecycle).p.process(job().job, 't', live(), c.comfy).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    const failed = f.calls.find((x) => x[0] === 'failed');
    expect(failed?.[2]).toMatchObject({ code: 'comfyui_rejected', message: expect.stringContaining('Prompt outputs failed validation') });
  });

  it('transient failure with attempts left: a plain Error for BullMQ to retry, the prompt forgotten, no end recorded', async () => {
    const f = fakeLifecycle();
    const c = fakeComfy({ wait: async () => Promise.reject(new ExecutionError('3', 'KSampler', 'RuntimeError', 'boom')) });
    const err = await processor(f.lifecycle).p.process(job(0).job, 't', live(), c.comfy).catch((e: Error) => e);
    expect(err).not.toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/^\[comfyui_execution_error\]/);
    expect(f.names()).toContain('forgetPrompt');
    expect(f.names()).not.toContain('failed');
  });

  it('the last attempt of a transient failure records the failure', async () => {
    const f = fakeLifecycle();
    const c = fakeComfy({ wait: async () => Promise.reject(new ExecutionError('3', 'KSampler', 'RuntimeError', 'boom')) });
    await processor(f.lifecycle).p.process(job(2).job, 't', live(), c.comfy).catch(() => undefined);
    expect(f.names()).toContain('failed');
  });

  it('ComfyUI down: the job is delayed without using an attempt (DelayedError) and watchers hear it is queued', async () => {
    const f = fakeLifecycle();
    const c = fakeComfy({ answers: false, submit: async () => Promise.reject(new ComfyUnavailableError('connect ECONNREFUSED')) });
    const { job: j, moves } = job();
    await expect(processor(f.lifecycle).p.process(j, 't', live(), c.comfy)).rejects.toBeInstanceOf(DelayedError);
    expect(moves).toEqual(['delayed']);
    expect(f.calls.find((x) => x[0] === 'requeued')).toEqual(['requeued', 'http://gpu0', 'comfyui_down']);
  });

  it('a hung prompt is interrupted before the retry; CUDA OOM frees memory', async () => {
    const hung = fakeComfy({ wait: async () => Promise.reject(new ComfyUiTimeoutError('p', 1000)) });
    await processor(fakeLifecycle().lifecycle).p.process(job().job, 't', live(), hung.comfy).catch(() => undefined);
    expect(hung.calls).toContain('cancel');
    const oom = fakeComfy({ wait: async () => Promise.reject(new ExecutionError('3', 'KSampler', 'torch.OutOfMemoryError', 'CUDA out of memory')) });
    await processor(fakeLifecycle().lifecycle).p.process(job().job, 't', live(), oom.comfy).catch(() => undefined);
    expect(oom.calls).toContain('free');
    expect(oom.calls).not.toContain('cancel');
  });

  it('a user cancel while running interrupts the prompt and ends the job canceled, no retry', async () => {
    const f = fakeLifecycle();
    const ctl = new AbortController();
    const c = fakeComfy({ wait: async () => (ctl.abort(AbortReason.Canceled), Promise.reject(new ComfyAbortError())) });
    const err = await processor(f.lifecycle).p.process(job().job, 't', ctl.signal, c.comfy).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(c.calls).toContain('cancel');
    expect(f.names().slice(-2)).toEqual(['forgetPrompt', 'canceled']);
  });

  it('shutdown past the grace time hands the job back to the queue untouched (WaitingError)', async () => {
    const f = fakeLifecycle();
    const ctl = new AbortController();
    const c = fakeComfy({ wait: async () => (ctl.abort(AbortReason.Shutdown), Promise.reject(new ComfyAbortError())) });
    const { job: j, moves } = job();
    await expect(processor(f.lifecycle).p.process(j, 't', ctl.signal, c.comfy)).rejects.toBeInstanceOf(WaitingError);
    expect(moves).toEqual(['wait']);
    expect(f.names()).not.toContain('canceled');
    expect(f.calls.find((x) => x[0] === 'requeued')).toEqual(['requeued', 'http://gpu0', 'shutdown']);
  });

  describe('a full Redis (storage_full)', () => {
    /** A store that refuses the first `refusals` images with storage_full, and records what it is asked. */
    function fullStore(refusals: number) {
      const calls: string[] = [];
      const store = {
        putImage: async () => {
          calls.push('putImage');
          if (calls.filter((c) => c === 'putImage').length <= refusals) throw storageFullError();
        },
        delete: async (id: string) => void calls.push(`delete:${id}`),
      } as unknown as ResultStore;
      const workflows = { buildGraph: () => ({ '1': { class_type: 'X', inputs: {} } }) } as unknown as WorkflowRegistry;
      return { store, calls, make: (l: JobLifecycle) => new GenerationProcessor({ COMFYUI_IDLE_TIMEOUT_MS: 1_000 } as Env, workflows, store, l, editInputs) };
    }

    it('a refusal that clears within the attempt is retried there: the job succeeds', async () => {
      const f = fakeLifecycle();
      const s = fullStore(2);
      await s.make(f.lifecycle).process(job(0).job, 't', live(), fakeComfy().comfy);
      expect(s.calls).toEqual(['putImage', 'putImage', 'putImage']);
      expect(f.names()).toContain('succeeded');
    });

    it('still full: the attempt releases what it stored, keeps the prompt for the retry to re-attach, and BullMQ retries', async () => {
      const f = fakeLifecycle();
      const s = fullStore(Infinity);
      const err = await s.make(f.lifecycle).process(job(0).job, 't', live(), fakeComfy().comfy).catch((e: Error) => e);
      expect(err).not.toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toMatch(/^\[storage_full\]/);
      expect(s.calls).toEqual(['putImage', 'putImage', 'putImage', 'delete:job-1']);
      expect(f.names()).not.toContain('forgetPrompt');
      expect(f.names()).not.toContain('failed');
    });

    it('the last attempt releases the images first, then ends the job failed with storage_full', async () => {
      const f = fakeLifecycle();
      const s = fullStore(Infinity);
      await s.make(f.lifecycle).process(job(2).job, 't', live(), fakeComfy().comfy).catch(() => undefined);
      expect(s.calls[s.calls.length - 1]).toBe('delete:job-1');
      expect(f.calls.find((c) => c[0] === 'failed')).toEqual(['failed', 'http://gpu0', expect.objectContaining({ code: 'storage_full' })]);
    });
  });
});
