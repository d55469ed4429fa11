import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { DelayedError, WaitingError, Worker } from 'bullmq';
import { ComfyUiClient, ComfyUiClientFactory } from '@app/comfyui';
import { Env } from '@app/config';
import { GenerationQueues, JobLifecycle } from '@app/jobs';
import { AbortReason, bullConnectionFor, decodeFailure, type GenerationJob, GenerationJobData, GenerationResult, watchBullMq } from '@app/queue';
import { runWithJobContext } from '../logging/job-context';
import { COMFY_DOWN_DELAY_MS, GenerationProcessor } from './generation.processor';
import { GpuReadiness } from './gpu-readiness';
import { SlotGate } from './slot-gate';

export interface Slot {
  comfy: ComfyUiClient;
  /** One BullMQ worker per served model's queue, by model id; they share the slot's gate. */
  workers: Map<string, Worker<GenerationJobData, GenerationResult>>;
  /** Models whose files this ComfyUI has (its last check); null until it first answered. */
  models: string[] | null;
  /** True while the warm-up prompts run: no user job is taken. */
  warming: boolean;
  gate: SlotGate;
  /** Last answer of the availability monitor: false while ComfyUI does not answer. */
  comfyUp: boolean;
  monitor?: NodeJS.Timeout;
}

/** How often each slot asks its ComfyUI whether it answers (cheap: GET /system_stats). */
const MONITOR_MS = 1_000;

/**
 * One slot per ComfyUI in COMFYUI_URLS: a GPU runs one prompt at a time. A slot consumes the
 * queue of each model its ComfyUI has the files of (one BullMQ worker per model queue,
 * concurrency 1 each) and a gate lets one of them run at a time. Also listens for cancel
 * requests and hands them to whichever local worker holds the job.
 */
@Injectable()
export class GenerationWorkerPool implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GenerationWorkerPool.name);
  private readonly slots: Slot[] = [];
  private readonly shutdown = new AbortController();

  constructor(
    private readonly env: Env,
    private readonly processor: GenerationProcessor,
    private readonly lifecycle: JobLifecycle,
    private readonly comfyFactory: ComfyUiClientFactory,
    private readonly queues: GenerationQueues,
    private readonly readiness: GpuReadiness,
  ) {}

  get allSlots(): readonly Slot[] {
    return this.slots;
  }

  get comfyClients(): ComfyUiClient[] {
    return this.slots.map((s) => s.comfy);
  }

  /** Every BullMQ worker of every slot. */
  get workers(): Worker[] {
    return this.slots.flatMap((s) => [...s.workers.values()]);
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const url of this.env.COMFYUI_URLS) this.slots.push(this.createSlot(url));
    await this.listenForCancels();
    this.logger.log(`${this.slots.length} generation slot(s) for ${this.env.COMFYUI_URLS.join(', ')}`);
  }

  private createSlot(url: string): Slot {
    const comfy = this.comfyFactory.create(url, {
      logger: {
        debug: (m, c) => this.logger.debug({ comfyui: url, msg: m, ...c }),
        info: (m, c) => this.logger.log({ comfyui: url, msg: m, ...c }),
        warn: (m, c) => this.logger.warn({ comfyui: url, msg: m, ...c }),
        error: (m, c) => this.logger.error({ comfyui: url, msg: m, ...c }),
      },
    });
    comfy.connect();
    const slot: Slot = { comfy, workers: new Map(), models: null, warming: false, gate: new SlotGate(), comfyUp: false };
    this.watch(slot);
    return slot;
  }

  private createWorker(slot: Slot, model: string): Worker<GenerationJobData, GenerationResult> {
    const { comfy } = slot;
    const url = comfy.baseUrl;
    const worker = new Worker<GenerationJobData, GenerationResult>(
      this.queues.nameFor(model),
      // In a job context: every line logged while the job runs carries its job_id.
      (job, token, signal) => runWithJobContext(job.id, () => this.runGated(slot, job, token, signal ?? new AbortController().signal)),
      {
        connection: bullConnectionFor(this.env, 'worker'),
        prefix: this.env.QUEUE_PREFIX,
        concurrency: 1,
        lockDuration: this.env.WORKER_LOCK_DURATION_MS,
        stalledInterval: this.env.WORKER_STALLED_INTERVAL_MS,
        maxStalledCount: this.env.WORKER_MAX_STALLED_COUNT,
        name: `comfyui:${url}`,
        // Started by the availability monitor once ComfyUI answers: no attempt is burned on a GPU that is down.
        autorun: false,
      },
    );
    worker.on('failed', (job) => {
      if (!job) return;
      const final = job.finishedOn !== undefined && job.finishedOn !== null;
      // Not final: BullMQ has put it back (delayed) for a retry. Final: the processor recorded the
      // end already, unless BullMQ gave the job up on its own (stalled too often).
      if (final) void this.lifecycle.failedByQueue(job, url).catch(() => undefined);
      else void this.lifecycle.requeued(job, url, 'retry', decodeFailure(job.failedReason).code).catch(() => undefined);
    });
    // Redis outages are one line per state change (the process-wide Redis state); anything else once per distinct message.
    let lastError: string | undefined;
    watchBullMq(worker, (err) => {
      if (err.message === lastError) return;
      lastError = err.message;
      this.logger.error({ comfyui: url, model, msg: 'worker error', error: err.message });
    });
    worker.on('active', () => (lastError = undefined));
    return worker;
  }

  /**
   * The slot's models take turns on its GPU. A job that waits for the gate is held by its worker
   * (locked, so no other GPU takes it) — at most one per other served model.
   */
  private async runGated(slot: Slot, job: GenerationJob, token: string | undefined, signal: AbortSignal): Promise<GenerationResult> {
    const held = await slot.gate.acquire(signal);
    const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? '');
    if (!held && reason === AbortReason.Shutdown) {
      // Never started: back to the queue as it was, for another worker.
      await this.lifecycle.handBack(job, token, slot.comfy.baseUrl, 'shutdown');
      throw new WaitingError();
    }
    try {
      if (held && !slot.comfyUp) {
        // A paused worker's fetch in flight can still hand it a job: while the slot is down, or
        // back but not yet re-checked and warmed, the job goes back unstarted, its attempt intact.
        await this.lifecycle.handBack(job, token, slot.comfy.baseUrl, 'comfyui_down', COMFY_DOWN_DELAY_MS);
        throw new DelayedError();
      }
      return await this.processor.process(job, token, signal, slot.comfy);
    } finally {
      if (held) slot.gate.release();
    }
  }

  /**
   * While ComfyUI does not answer, the slot takes no jobs (they wait in the queue, attempts
   * intact). Each time it answers again (first start, or back after a restart) the slot learns
   * which model files it has and, with WARMUP, warms them before it takes jobs again.
   */
  private watch(slot: Slot): void {
    const url = slot.comfy.baseUrl;
    let checking = false;
    let warnedWaiting = false;
    const check = async () => {
      if (checking || this.closing) return;
      checking = true;
      try {
        const up = await slot.comfy.systemStats(undefined, 2_000).then(() => true, () => false);
        if (this.closing) return;
        if (up && !slot.comfyUp) {
          slot.comfyUp = await this.prepare(slot).then(() => true, (e: Error) => {
            this.logger.warn({ comfyui: url, msg: 'ComfyUI answers but could not be prepared; trying again', error: e.message });
            return false;
          });
        } else if (!up && slot.comfyUp) {
          this.logger.warn({ comfyui: url, msg: 'ComfyUI does not answer: pausing this worker' });
          slot.comfyUp = false;
          await Promise.all([...slot.workers.values()].map((w) => w.pause(true)));
        } else if (!up && !warnedWaiting && slot.models === null) {
          warnedWaiting = true;
          this.logger.warn({ comfyui: url, msg: 'ComfyUI does not answer yet: waiting before taking jobs' });
        }
      } finally {
        checking = false;
      }
    };
    void check();
    slot.monitor = setInterval(() => void check(), MONITOR_MS);
  }

  /** Model files, warm-up, then one running BullMQ worker per served model (the others closed). */
  private async prepare(slot: Slot): Promise<void> {
    const url = slot.comfy.baseUrl;
    const models = await this.readiness.servedModels(slot.comfy);
    const before = slot.models;
    slot.models = models;
    if (!before || before.join() !== models.join()) this.logger.log({ comfyui: url, msg: 'serving models', models });
    if (!models.length) this.logger.warn({ comfyui: url, msg: 'ComfyUI has the files of no model: taking no jobs' });
    if (this.readiness.warmUpEnabled && models.length) {
      slot.warming = true;
      try {
        const r = await this.readiness.warmUp(slot.comfy, models, this.shutdown.signal);
        this.logger.log({ comfyui: url, msg: 'warm-up done', models, seconds: r.seconds });
      } finally {
        slot.warming = false;
      }
    }
    if (this.closing) return;
    for (const [model, worker] of slot.workers) {
      if (models.includes(model)) continue;
      this.logger.warn({ comfyui: url, msg: 'model files gone: no longer taking its jobs', model });
      slot.workers.delete(model);
      await worker.close();
    }
    for (const model of models) {
      const existing = slot.workers.get(model);
      if (existing) {
        if (existing.isPaused()) existing.resume();
        continue;
      }
      const worker = this.createWorker(slot, model);
      slot.workers.set(model, worker);
      void worker.run().catch((e: Error) => this.logger.error({ comfyui: url, model, msg: 'worker stopped', error: e.message }));
    }
    this.logger.log({ comfyui: url, msg: before === null ? 'ComfyUI answers: taking jobs' : 'ComfyUI is back: resuming' });
  }

  private async listenForCancels(): Promise<void> {
    await this.lifecycle
      .onCancelRequest((jobId) => {
        for (const w of this.workers) {
          if (w.cancelJob(jobId, AbortReason.Canceled)) this.logger.log({ job_id: jobId, msg: 'cancel requested, interrupting' });
        }
      })
      .catch((e: Error) => this.logger.warn(`cancel channel: ${e.message}`));
  }

  private closing = false;

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    this.shutdown.abort();
    for (const s of this.slots) clearInterval(s.monitor);
    const grace = this.env.WORKER_SHUTDOWN_GRACE_MS;
    await Promise.all(
      this.workers.map(async (worker) => {
        // Stop taking jobs; let the running prompt finish within the grace time, else hand it back.
        const closing = worker.close();
        const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), grace).unref());
        if ((await Promise.race([closing.then(() => 'closed' as const), timer])) === 'timeout') {
          this.logger.warn('grace time over: interrupting the running job and handing it back');
          worker.cancelAllJobs(AbortReason.Shutdown);
          await Promise.race([closing, new Promise((r) => setTimeout(r, 5000).unref())]);
        }
      }),
    );
    await Promise.all(this.slots.map((s) => s.comfy.close()));
  }
}
