import { createHash, randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { DelayedError, Job, UnrecoverableError, WaitingError } from 'bullmq';
import type Redis from 'ioredis';
import sharp from 'sharp';
import { ComfyAbortError, ComfyUiClient, ComfyUiError, ComfyUiTimeoutError, ComfyUnavailableError, ExecutionError, type PromptOutcome } from '@app/comfyui';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import {
  encodeFailure, GenerationProgress, GenerationResult, JobDataOf, JobName, JobResultOf, JobEventPublisher, RedisKeys, StoredImageRef,
} from '@app/queue';
import { REDIS_CLIENT, ResultStore, sniffImageType, stripPngTextChunks } from '@app/storage';
import { WorkflowRegistry } from '@app/workflows';
import { JobNotifier } from './job-notifier';

/** Typed through the job map, so this processor and the API's producer cannot disagree. */
export type GenerationJob = Job<JobDataOf<JobName.Generate>, JobResultOf<JobName.Generate>>;

/** Why a running job's AbortSignal fired: the user canceled it, or this worker is shutting down. */
export const ABORT_CANCELED = 'canceled';
export const ABORT_SHUTDOWN = 'shutdown';

/** How long a job waits when ComfyUI was found down before a worker looks at it again. */
const COMFY_DOWN_DELAY_MS = 2_000;

/**
 * Runs one generation job on one ComfyUI: bind parameters → submit (or re-attach to the prompt a
 * crashed attempt left running) → follow → fetch outputs → store → result. Knows nothing about
 * BullMQ workers or HTTP; the pool hands it a job, a signal and the ComfyUI to use.
 */
@Injectable()
export class GenerationProcessor {
  private readonly logger = new Logger(GenerationProcessor.name);
  private readonly keys: RedisKeys;
  private readonly events: JobEventPublisher;

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
    private readonly store: ResultStore,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly notifier: JobNotifier,
  ) {
    this.keys = new RedisKeys(env.QUEUE_PREFIX);
    this.events = new JobEventPublisher(redis, this.keys);
  }

  async process(job: GenerationJob, token: string | undefined, signal: AbortSignal, comfy: ComfyUiClient): Promise<GenerationResult> {
    const jobId = job.id as string;
    const log = (msg: string, extra: Record<string, unknown> = {}) => this.logger.log({ job_id: jobId, comfyui: comfy.baseUrl, msg, ...extra });
    if (await this.redis.exists(this.keys.cancelFlag(jobId))) {
      throw new UnrecoverableError(encodeFailure(ErrorCode.Canceled, 'The job was canceled'));
    }
    const params = job.data.params;
    const startedAt = Date.now();
    await this.events.publish({ type: 'status', job_id: jobId, status: 'running', at: startedAt });
    await this.notifier.running(job);

    let promptId: string | undefined;
    try {
      const previous = (typeof job.progress === 'object' ? job.progress : undefined) as GenerationProgress | undefined;
      let outcome: PromptOutcome | undefined;
      if (previous?.prompt_id && previous.comfyui === comfy.baseUrl) {
        // A previous attempt (a crashed or restarted worker) submitted this prompt: re-attach instead of rendering twice.
        const where = await comfy.locate(previous.prompt_id, signal);
        if (where === 'running' || where === 'pending') promptId = previous.prompt_id;
        if (where === 'done') outcome = await comfy.outcome(previous.prompt_id, signal);
        log('recovering job', { previous_prompt_id: previous.prompt_id, found: where });
        if (outcome) promptId = previous.prompt_id;
      }
      if (!promptId) {
        promptId = randomUUID();
        const graph = this.workflows.buildGraph(params, { filenamePrefix: `fictures/${jobId}` });
        // Record the prompt id before submitting, so a crash right after the POST can still re-attach.
        await job.updateProgress(this.progress(params.num_inference_steps, 0, promptId, comfy.baseUrl, startedAt));
        const submitted = await comfy.submit(graph, { promptId, signal });
        promptId = submitted.promptId;
        log('prompt submitted', { prompt_id: promptId, number: submitted.number });
      }
      const submitAt = Date.now();
      const pid = promptId;
      outcome ??= await comfy.wait(pid, {
        signal,
        idleTimeoutMs: this.env.COMFYUI_IDLE_TIMEOUT_MS,
        onProgress: (p) => {
          // Sampling steps: the node whose max equals the step count (loaders report 0..1).
          if (p.max !== params.num_inference_steps && p.max <= 1) return;
          const step = Math.min(p.value, p.max);
          void job.updateProgress(this.progress(p.max, step, pid, comfy.baseUrl, startedAt)).catch(() => undefined);
          void this.events.publish({ type: 'progress', job_id: jobId, step, total_steps: p.max, fraction: p.max ? step / p.max : 0, at: Date.now() });
        },
      });
      const images = await this.fetchAndStore(jobId, outcome, comfy, signal);
      const finishedAt = Date.now();
      const result: GenerationResult = {
        images,
        seed: params.seed,
        model: params.model,
        prompt_id: pid,
        comfyui: comfy.baseUrl,
        timings: {
          queue_ms: Math.max(0, (job.processedOn ?? startedAt) - job.data.submitted_at),
          comfyui_ms: outcome.executionMs,
          execution_ms: finishedAt - submitAt,
          total_ms: finishedAt - job.data.submitted_at,
        },
      };
      log('job succeeded', { prompt_id: pid, images: images.length, execution_ms: result.timings.execution_ms });
      await this.notifier.finished(job, 'succeeded', result);
      return result;
    } catch (err) {
      throw await this.failure(job, token, err, signal, comfy, promptId);
    }
  }

  private progress(total: number, step: number, promptId: string, comfyui: string, startedAt: number): GenerationProgress {
    return { step, total_steps: total, fraction: total ? step / total : 0, prompt_id: promptId, comfyui, started_at: startedAt };
  }

  private async fetchAndStore(jobId: string, outcome: PromptOutcome, comfy: ComfyUiClient, signal: AbortSignal): Promise<StoredImageRef[]> {
    const refs: StoredImageRef[] = [];
    for (const [index, image] of outcome.images.entries()) {
      const fetched = await comfy.view(image, signal);
      // ComfyUI writes the whole graph into PNG text chunks: internals end users must not get.
      const bytes = this.env.KEEP_IMAGE_METADATA ? fetched : stripPngTextChunks(fetched);
      const meta = await sharp(bytes).metadata();
      const contentType = sniffImageType(bytes) ?? 'application/octet-stream';
      await this.store.putImage(jobId, index, bytes, contentType);
      refs.push({
        index,
        key: `${jobId}/${index}`,
        content_type: contentType,
        bytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        width: meta.width ?? 0,
        height: meta.height ?? 0,
      });
    }
    return refs;
  }

  /** Classifies a failure: the error BullMQ should see (retry or not) and, when final, the notifications. */
  private async failure(job: GenerationJob, token: string | undefined, err: unknown, signal: AbortSignal, comfy: ComfyUiClient, promptId?: string): Promise<Error> {
    const jobId = job.id as string;
    const aborted = signal.aborted || err instanceof ComfyAbortError;
    const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? '');
    const forgetPrompt = async () => {
      // This attempt gives its prompt up: the next one must submit afresh, not re-attach to it.
      if (promptId) await job.updateProgress({ step: 0, total_steps: job.data.params.num_inference_steps, fraction: 0 }).catch(() => undefined);
    };
    if (aborted && promptId) {
      await comfy.cancel(promptId).catch(() => undefined);
      await forgetPrompt();
    }
    if (aborted && reason !== ABORT_SHUTDOWN) {
      this.logger.log({ job_id: jobId, msg: 'job canceled', prompt_id: promptId });
      await this.notifier.finished(job, 'canceled');
      return new UnrecoverableError(encodeFailure(ErrorCode.Canceled, 'The job was canceled'));
    }
    if (aborted) {
      // Shutdown past the grace time: hand the job back to the queue without using up an attempt.
      this.logger.warn({ job_id: jobId, msg: 'shutting down: job handed back to the queue', prompt_id: promptId });
      await job.moveToWait(token);
      return new WaitingError();
    }
    if (err instanceof ComfyUnavailableError && !(await comfy.systemStats(undefined, 1_000).then(() => true, () => false))) {
      // ComfyUI itself is down (not just this request): put the job back without using an attempt;
      // the availability monitor pauses this worker until ComfyUI answers again.
      this.logger.warn({ job_id: jobId, msg: 'ComfyUI is down: job delayed without using an attempt', error: err.message });
      await job.moveToDelayed(Date.now() + COMFY_DOWN_DELAY_MS, token);
      return new DelayedError();
    }
    await forgetPrompt();
    if (err instanceof ComfyUiTimeoutError && promptId) {
      // Hung GPU: stop the prompt so the retry does not queue behind it.
      await comfy.cancel(promptId).catch(() => undefined);
    }
    if (err instanceof ExecutionError && /out of memory|OutOfMemory/i.test(`${err.exceptionType} ${err.exceptionMessage}`)) {
      // CUDA OOM: unload models and free the cache before the retry.
      await comfy.free().catch(() => undefined);
    }
    if (err instanceof ComfyUiError) {
      const msg = encodeFailure(err.code, err.message);
      const attempts = job.opts.attempts ?? 1;
      const final = !err.retryable || job.attemptsMade + 1 >= attempts;
      this.logger.warn({ job_id: jobId, msg: 'attempt failed', code: err.code, error: err.message, retryable: err.retryable, final });
      if (final) await this.notifier.finished(job, 'failed', undefined, msg);
      return err.retryable ? new Error(msg) : new UnrecoverableError(msg);
    }
    const message = err instanceof Error ? err.message : String(err);
    this.logger.error({ job_id: jobId, msg: 'attempt failed unexpectedly', error: message });
    if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) await this.notifier.finished(job, 'failed', undefined, encodeFailure(ErrorCode.InternalError, 'The job failed'));
    return new Error(encodeFailure(ErrorCode.InternalError, message.slice(0, 300)));
  }
}
