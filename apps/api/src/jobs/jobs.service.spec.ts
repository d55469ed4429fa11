import { Logger } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { loadEnv } from '@app/config';
import type { FleetMonitor } from '@app/health';
import type { JobLifecycle } from '@app/jobs';
import type { ResultStore } from '@app/storage';
import type { WorkflowRegistry } from '@app/workflows';
import { ApiError } from '../common/api-error';
import type { RedisMemory, RedisMemoryProbe } from '../metrics/redis-memory';
import type { CreateJobDto } from './dto/create-job.dto';
import { JobsService } from './jobs.service';
import type { InputImagesService } from '../uploads/input-images.service';

const params = { model: 'm', prompt: 'p', negative_prompt: '', width: 64, height: 64, num_inference_steps: 1, guidance_scale: 1, seed: 1 };

/** JobsService with fakes: the model registry, the job owner and Redis's memory as the probe reads it. */
function service(o: { store?: string; memory?: RedisMemory; invalid?: boolean; served?: boolean; queueUnserved?: boolean; waiting?: number; delayMs?: number }) {
  const enqueued: string[] = [];
  let reads = 0;
  const workflows = {
    resolve: () => {
      if (o.invalid) throw new DomainError(ErrorCode.ValidationFailed, 'width must be a multiple of 16');
      return params;
    },
  } as unknown as WorkflowRegistry;
  // Each read takes delayMs (a Redis round trip); the most reads in flight at once tells side by side from one after another.
  let inFlight = 0;
  let mostInFlight = 0;
  const slow = <T>(v: T) => {
    mostInFlight = Math.max(mostInFlight, ++inFlight);
    return new Promise<T>((r) => setTimeout(() => (inFlight--, r(v)), o.delayMs ?? 0));
  };
  const lifecycle = { waitingCount: () => slow(o.waiting ?? 0), enqueue: async (id: string) => void enqueued.push(id), addToOwnerList: async () => undefined } as unknown as JobLifecycle;
  const probe = { read: () => (reads++, slow(o.memory)) } as unknown as RedisMemoryProbe;
  const fleet = { modelServed: () => slow(o.served ?? true) } as unknown as FleetMonitor;
  const env = loadEnv({ RESULT_STORE: o.store ?? 'redis', RESULT_S3_BUCKET: 'bucket-x', REDIS_MEMORY_HIGH_WATERMARK: '0.9', QUEUE_UNSERVED_MODELS: String(o.queueUnserved ?? false) });
  // Text-to-image only: no edit inputs to resolve.
  const inputImages = { resolve: async () => undefined } as unknown as InputImagesService;
  const jobs = new JobsService(env, workflows, {} as ResultStore, lifecycle, inputImages, fleet, undefined, undefined, probe);
  const submit = () => jobs.submit({ prompt: 'p' } as CreateJobDto, {}, { requestBase: 'http://x' });
  return { submit, enqueued, reads: () => reads, mostInFlight: () => mostInFlight };
}

const mem = (used: number, max: number): RedisMemory => ({ used_bytes: used, max_bytes: max, policy: 'noeviction' });

describe('JobsService admission by Redis memory', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('at or past the watermark: 503 storage_full with Retry-After, nothing enqueued', async () => {
    const s = service({ memory: mem(900, 1000) });
    const err = await s.submit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: ErrorCode.StorageFull, headers: { 'Retry-After': expect.stringMatching(/^\d+$/) } });
    expect(s.enqueued).toEqual([]);
  });

  it('below the watermark, without maxmemory, or while Redis does not answer: accepted', async () => {
    for (const memory of [mem(899, 1000), mem(5_000_000, 0), undefined]) {
      const s = service({ memory });
      await s.submit();
      expect(s.enqueued).toHaveLength(1);
    }
  });

  it('only with images in Redis', async () => {
    const s = service({ store: 'fs', memory: mem(999, 1000) });
    await s.submit();
    expect(s.enqueued).toHaveLength(1);
    expect(s.reads()).toBe(0);
  });

  it('bad input is refused first (400 before 503), without reading Redis', async () => {
    const s = service({ invalid: true, memory: mem(999, 1000) });
    await expect(s.submit()).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
    expect(s.reads()).toBe(0);
  });
});

describe('JobsService admission by model', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('a model no live worker serves: 503 model_unavailable with Retry-After, nothing enqueued', async () => {
    const s = service({ served: false });
    const err = await s.submit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: ErrorCode.ModelUnavailable, details: { model: 'm' } });
    expect(Number((err as ApiError).headers['Retry-After'])).toBeGreaterThanOrEqual(1);
    expect(s.enqueued).toEqual([]);
  });

  it('QUEUE_UNSERVED_MODELS=true queues it anyway', async () => {
    const s = service({ served: false, queueUnserved: true });
    await s.submit();
    expect(s.enqueued).toHaveLength(1);
  });
});

describe('JobsService admission checks', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('when several refuse, the first in order answers: model_unavailable, then storage_full, then queue_full', async () => {
    const full = { memory: mem(999, 1000), waiting: 1_000_000 };
    await expect(service({ ...full, served: false }).submit()).rejects.toMatchObject({ code: ErrorCode.ModelUnavailable });
    await expect(service(full).submit()).rejects.toMatchObject({ code: ErrorCode.StorageFull });
    const s = service({ waiting: 1_000_000 });
    await expect(s.submit()).rejects.toMatchObject({ code: ErrorCode.QueueFull, details: { waiting: 1_000_000 } });
    expect(s.enqueued).toEqual([]);
  });

  it('the checks read side by side (one round trip, not three in a row)', async () => {
    const s = service({ memory: mem(1, 1000), delayMs: 20 });
    await s.submit();
    expect(s.enqueued).toHaveLength(1);
    expect(s.mostInFlight()).toBe(3); // model served, Redis memory, waiting count
  });
});
