import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Injectable, Logger } from '@nestjs/common';
import { DelayedError, UnrecoverableError, WaitingError } from 'bullmq';
import sharp from 'sharp';
import { type ComfyImageRef, ComfyUiClient, ComfyUnavailableError, OutputFetchError, type PromptOutcome } from '@app/comfyui';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { JobLifecycle } from '@app/jobs';
import { encodeFailure, type GenerationJob, type GenerationParams, type GenerationResult, type StoredImageRef } from '@app/queue';
import { readImageHeader, ResultStore, retryWhileStorageFull, stripPngTextChunks } from '@app/storage';
import { WorkflowRegistry } from '@app/workflows';
import { EditInputs } from './edit-inputs';
import { classifyFailure } from './failure-classification';

/** How long a job waits when ComfyUI was found down before a worker looks at it again. */
export const COMFY_DOWN_DELAY_MS = 2_000;

/** What the pool learns from a job's run on its GPU slot. Hooks must not throw. */
export interface ProcessHooks {
  /** ComfyUI started executing the job's prompt (until then the job is queued, even when held). */
  onStarted?(): void;
  /** The prompt has ended in ComfyUI (its outputs are still to be fetched and stored). */
  onPromptEnded?(): void;
}

/**
 * Runs one generation job on one ComfyUI: bind parameters → submit (or re-attach to the prompt a
 * crashed attempt left running) → follow → fetch outputs → store → result. Knows nothing about
 * BullMQ workers or HTTP; the pool hands it a job, a signal and the ComfyUI to use. Every change of
 * the job's state goes through JobLifecycle.
 */
@Injectable()
export class GenerationProcessor {
  private readonly logger = new Logger(GenerationProcessor.name);

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
    private readonly store: ResultStore,
    private readonly lifecycle: JobLifecycle,
    private readonly editInputs: EditInputs,
  ) {}

  async process(job: GenerationJob, token: string | undefined, signal: AbortSignal, comfy: ComfyUiClient, hooks: ProcessHooks = {}): Promise<GenerationResult> {
    const jobId = job.id as string;
    const log = (msg: string, extra: Record<string, unknown> = {}) => this.logger.log({ job_id: jobId, comfyui: comfy.baseUrl, msg, ...extra });
    if (await this.lifecycle.isCancelRequested(jobId)) {
      await this.lifecycle.canceled(job, comfy.baseUrl, { started: false });
      throw new UnrecoverableError(encodeFailure(ErrorCode.Canceled, 'The job was canceled'));
    }
    const params = job.data.params;
    const previous = this.lifecycle.previousAttempt(job);
    const takenAt = Date.now();

    let promptId: string | undefined;
    // The job runs from ComfyUI's execution_start on (a held prompt waits behind another first).
    let started = false;
    // When ComfyUI started the prompt, as seen here; unknown for a prompt found finished on re-attach.
    let startedAt: number | undefined;
    let recordingStart: Promise<void> | undefined;
    const markStarted = (at?: number) => {
      if (started) return;
      started = true;
      startedAt = at;
      hooks.onStarted?.();
      recordingStart = this.lifecycle.started(job, comfy.baseUrl, at).catch((e: Error) => {
        this.logger.warn({ job_id: jobId, msg: 'could not record the start', error: e.message });
      });
    };
    try {
      let outcome: PromptOutcome | undefined;
      if (previous?.prompt_id && previous.comfyui === comfy.baseUrl) {
        // A previous attempt (a crashed or restarted worker) submitted this prompt: re-attach instead of rendering twice.
        const where = await comfy.locate(previous.prompt_id, signal);
        if (where === 'running' || where === 'pending') promptId = previous.prompt_id;
        if (where === 'done') outcome = await comfy.outcome(previous.prompt_id, signal);
        log('recovering job', { previous_prompt_id: previous.prompt_id, found: where });
        if (outcome) promptId = previous.prompt_id;
        if (promptId) await this.lifecycle.promptSubmitting(job, promptId, comfy.baseUrl, { held: where === 'pending', running: where !== 'pending' });
      }
      if (!promptId) {
        promptId = randomUUID();
        // img2img / inpaint: the input goes to ComfyUI's input folder right before the prompt that loads it.
        const inputs = await this.editInputs.prepare(job, comfy, signal);
        const graph = this.workflows.buildGraph(inputs?.params ?? params, { filenamePrefix: `fictures/${jobId}`, inputs: inputs?.names });
        // On record before ComfyUI has it; held (queued) until ComfyUI says it started it.
        await this.lifecycle.promptSubmitting(job, promptId, comfy.baseUrl, { held: true });
        const submitted = await this.editInputs.submit(comfy, graph, { promptId, signal }, inputs);
        promptId = submitted.promptId;
        log('prompt submitted', { prompt_id: promptId, number: submitted.number });
      }
      const submitAt = Date.now();
      const pid = promptId;
      outcome ??= await comfy.wait(pid, {
        signal,
        idleTimeoutMs: this.env.COMFYUI_IDLE_TIMEOUT_MS,
        onStart: () => markStarted(Date.now()),
        onProgress: (p) => {
          // Sampling steps: the node whose max equals the step count (loaders report 0..1).
          if (p.max !== params.num_inference_steps && p.max <= 1) return;
          this.lifecycle.stepped(job, comfy.baseUrl, Math.min(p.value, p.max), p.max);
        },
      });
      // From here on the GPU is free for the next prompt: fetching and storing overlap its run.
      const endedAt = Date.now();
      const t0 = performance.now();
      hooks.onPromptEnded?.();
      markStarted(); // a prompt found finished on re-attach never said it started
      await recordingStart;
      const images = await this.fetchAndStore(jobId, outcome, comfy, signal, params);
      const t1 = performance.now();
      const finishedAt = Date.now();
      const result: GenerationResult = {
        images,
        seed: params.seed,
        model: params.model,
        prompt_id: pid,
        comfyui: comfy.baseUrl,
        timings: {
          // Queued until the GPU's turn (a held job waits in ComfyUI's queue behind the running one).
          queue_ms: Math.max(0, (startedAt ?? job.processedOn ?? takenAt) - job.data.submitted_at),
          comfyui_ms: outcome.executionMs,
          execution_ms: finishedAt - (startedAt ?? submitAt),
          total_ms: finishedAt - job.data.submitted_at,
        },
      };
      await this.lifecycle.succeeded(job, comfy.baseUrl, result);
      // The worker's own cost per job: prompt ended (here, and by ComfyUI's clock) → terminal record written.
      const t2 = performance.now();
      const ms = (x: number) => Math.round(x * 100) / 100;
      log('job succeeded', {
        prompt_id: pid, images: images.length, execution_ms: result.timings.execution_ms,
        // The worker's own cost: ComfyUI's end → known here (detect), outputs fetched and stored, record written.
        overhead_ms: ms(t2 - t0), fetch_store_ms: ms(t1 - t0), record_ms: ms(t2 - t1),
        detect_ms: outcome.endedAt !== undefined ? endedAt - outcome.endedAt : undefined,
        comfyui_end_to_record_ms: outcome.endedAt !== undefined ? Date.now() - outcome.endedAt : undefined,
      });
      return result;
    } catch (err) {
      await recordingStart;
      throw await this.failure(job, token, err, signal, comfy, promptId, started);
    }
  }

  /**
   * The lean image path: each output is read once from ComfyUI (/view, kept as the Buffer the socket
   * gave), PNG text chunks cut out without a decode, its dimensions read from the header, and written
   * once to the store. Several outputs go in parallel.
   */
  private fetchAndStore(jobId: string, outcome: PromptOutcome, comfy: ComfyUiClient, signal: AbortSignal, params: GenerationParams): Promise<StoredImageRef[]> {
    return Promise.all(outcome.images.map((image, index) => this.fetchAndStoreOne(jobId, index, image, comfy, signal, params)));
  }

  private async fetchAndStoreOne(jobId: string, index: number, image: ComfyImageRef, comfy: ComfyUiClient, signal: AbortSignal, params: GenerationParams): Promise<StoredImageRef> {
    const format = params.output_format ?? 'png';
    const fetched = await comfy.view(image, signal);
    let bytes: Buffer;
    if (format === 'png') {
      // ComfyUI writes the whole graph into PNG text chunks: internals end users must not get.
      bytes = this.env.KEEP_IMAGE_METADATA ? fetched : stripPngTextChunks(fetched);
    } else {
      // A conversion has to decode; sharp drops the metadata chunks as it re-encodes.
      bytes = await this.convert(fetched, format, params.output_quality).catch((e: Error) => {
        throw new OutputFetchError(`ComfyUI output ${image.filename} could not be converted to ${format}: ${e.message}`);
      });
    }
    // Dimensions from the header: no decode of megabytes per image on the GPU's critical path.
    const header = readImageHeader(bytes);
    if (!header) throw new OutputFetchError(`ComfyUI output ${image.filename} is not a PNG, JPEG or WebP image`);
    // Redis full: a few quick tries (room may come back), then the attempt fails and BullMQ backs off.
    const stored = retryWhileStorageFull(() => this.store.putImage(jobId, index, bytes, header.contentType));
    // The digest (a few ms of CPU for a large PNG) is computed while the store takes the bytes.
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await stored;
    return { index, key: `${jobId}/${index}`, content_type: header.contentType, bytes: bytes.length, sha256, width: header.width, height: header.height };
  }

  private convert(png: Buffer, format: 'webp' | 'jpeg', quality: number | undefined): Promise<Buffer> {
    const img = sharp(png);
    return (format === 'webp' ? img.webp({ quality }) : img.jpeg({ quality })).toBuffer();
  }

  /** Carries out the failure's classification: the error BullMQ should see and, when final, the job's end. */
  private async failure(job: GenerationJob, token: string | undefined, err: unknown, signal: AbortSignal, comfy: ComfyUiClient, promptId: string | undefined, started: boolean): Promise<Error> {
    const jobId = job.id as string;
    const isUnavailable = err instanceof ComfyUnavailableError;
    const decision = classifyFailure(err, {
      aborted: signal.aborted,
      abortReason: signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? ''),
      attemptsMade: job.attemptsMade,
      attempts: job.opts.attempts ?? 1,
      comfyAnswers: isUnavailable ? await comfy.systemStats(undefined, 1_000).then(() => true, () => false) : undefined,
    });
    switch (decision.kind) {
      case 'canceled':
        // Pending in ComfyUI's queue (a held job): deleted from it, it never runs; running: interrupted.
        if (promptId) await comfy.cancel(promptId).catch(() => undefined);
        await this.lifecycle.forgetPrompt(job);
        this.logger.log({ job_id: jobId, msg: 'job canceled', prompt_id: promptId, started });
        await this.lifecycle.canceled(job, comfy.baseUrl, { started });
        return new UnrecoverableError(encodeFailure(ErrorCode.Canceled, 'The job was canceled'));
      case 'shutdown':
        if (promptId) await comfy.cancel(promptId).catch(() => undefined);
        await this.lifecycle.forgetPrompt(job);
        this.logger.warn({ job_id: jobId, msg: 'shutting down: job handed back to the queue', prompt_id: promptId });
        await this.lifecycle.handBack(job, token, comfy.baseUrl, 'shutdown');
        return new WaitingError();
      case 'comfyui_down':
        // The availability monitor pauses this worker until ComfyUI answers again; the prompt (if
        // any was accepted) may still be found there by the next attempt, so it is kept on record.
        this.logger.warn({ job_id: jobId, msg: 'ComfyUI is down: job delayed without using an attempt', error: (err as Error).message });
        await this.lifecycle.handBack(job, token, comfy.baseUrl, 'comfyui_down', COMFY_DOWN_DELAY_MS);
        return new DelayedError();
      case 'failed': {
        // First, so that Redis has room again for the writes below (progress, record, BullMQ's retry).
        if (decision.releaseStored) await this.store.delete(jobId).catch(() => undefined);
        if (!decision.keepPrompt) await this.lifecycle.forgetPrompt(job);
        if (decision.interruptPrompt && promptId) await comfy.cancel(promptId).catch(() => undefined);
        if (decision.freeMemory) await comfy.free().catch(() => undefined);
        const msg = encodeFailure(decision.error.code, decision.error.message);
        if (decision.unexpected) this.logger.error({ job_id: jobId, msg: 'attempt failed unexpectedly', error: decision.error.message, final: decision.final });
        else this.logger.warn({ job_id: jobId, msg: 'attempt failed', code: decision.error.code, error: decision.error.message, retryable: decision.retry, final: decision.final });
        if (decision.final) {
          // An internal error's text stays in the logs; the job only says that it failed.
          const shown = decision.unexpected ? { code: ErrorCode.InternalError, message: 'The job failed' } : decision.error;
          await this.lifecycle.failed(job, comfy.baseUrl, shown);
        }
        return decision.retry ? new Error(msg) : new UnrecoverableError(msg);
      }
    }
  }
}
