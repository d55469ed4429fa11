import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Worker } from 'bullmq';
import { ComfyUiClient, ComfyUiClientFactory } from '@app/comfyui';
import { Env } from '@app/config';
import { JobLifecycle } from '@app/jobs';
import { AbortReason, bullConnection, decodeFailure, GenerationJobData, GenerationResult, QueueName } from '@app/queue';
import { runWithJobContext } from '../logging/job-context';
import { GenerationProcessor } from './generation.processor';

export interface Slot {
  comfy: ComfyUiClient;
  worker: Worker<GenerationJobData, GenerationResult>;
  /** Last answer of the availability monitor: false while ComfyUI does not answer. */
  comfyUp: boolean;
  monitor?: NodeJS.Timeout;
}

/** How often each slot asks its ComfyUI whether it answers (cheap: GET /system_stats). */
const MONITOR_MS = 1_000;

/**
 * One BullMQ worker per ComfyUI in COMFYUI_URLS, concurrency 1 each: a GPU runs one prompt at a
 * time. Also listens for cancel requests and hands them to whichever local worker holds the job.
 */
@Injectable()
export class GenerationWorkerPool implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(GenerationWorkerPool.name);
  private readonly slots: Slot[] = [];

  constructor(
    private readonly env: Env,
    private readonly processor: GenerationProcessor,
    private readonly lifecycle: JobLifecycle,
    private readonly comfyFactory: ComfyUiClientFactory,
  ) {}

  get allSlots(): readonly Slot[] {
    return this.slots;
  }

  get comfyClients(): ComfyUiClient[] {
    return this.slots.map((s) => s.comfy);
  }

  get workers(): Worker[] {
    return this.slots.map((s) => s.worker);
  }

  async onApplicationBootstrap(): Promise<void> {
    for (const url of this.env.COMFYUI_URLS) this.slots.push(this.createSlot(url));
    await this.listenForCancels();
    this.logger.log(`${this.slots.length} generation worker(s) for ${this.env.COMFYUI_URLS.join(', ')}`);
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
    const worker = new Worker<GenerationJobData, GenerationResult>(
      QueueName.Generation,
      // In a job context: every line logged while the job runs carries its job_id.
      (job, token, signal) => runWithJobContext(job.id, () => this.processor.process(job, token, signal ?? new AbortController().signal, comfy)),
      {
        connection: bullConnection(this.env.REDIS_URL, 'worker'),
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
    let lastError: string | undefined;
    worker.on('error', (err) => {
      // BullMQ repeats connection errors while Redis is away: log each distinct one once.
      if (err.message === lastError) return;
      lastError = err.message;
      this.logger.error({ comfyui: url, msg: 'worker error', error: err.message });
    });
    worker.on('active', () => (lastError = undefined));
    const slot: Slot = { comfy, worker, comfyUp: false };
    this.watch(slot);
    return slot;
  }

  /**
   * While ComfyUI does not answer, the worker takes no jobs (they wait in the queue, attempts
   * intact); it resumes by itself when ComfyUI is back.
   */
  private watch(slot: Slot): void {
    const url = slot.comfy.baseUrl;
    let started = false;
    let checking = false;
    const check = async () => {
      if (checking || this.closing) return;
      checking = true;
      try {
        const up = await slot.comfy.systemStats(undefined, 2_000).then(() => true, () => false);
        if (this.closing) return;
        if (up && !started) {
          started = true;
          this.logger.log({ comfyui: url, msg: 'ComfyUI answers: taking jobs' });
          void slot.worker.run().catch((e: Error) => this.logger.error({ comfyui: url, msg: 'worker stopped', error: e.message }));
        } else if (up && !slot.comfyUp && started) {
          this.logger.log({ comfyui: url, msg: 'ComfyUI is back: resuming' });
          slot.worker.resume();
        } else if (!up && slot.comfyUp) {
          this.logger.warn({ comfyui: url, msg: 'ComfyUI does not answer: pausing this worker' });
          await slot.worker.pause(true);
        } else if (!up && !started && !slot.monitor) {
          this.logger.warn({ comfyui: url, msg: 'ComfyUI does not answer yet: waiting before taking jobs' });
        }
        slot.comfyUp = up;
      } finally {
        checking = false;
      }
    };
    void check();
    slot.monitor = setInterval(() => void check(), MONITOR_MS);
  }

  private async listenForCancels(): Promise<void> {
    await this.lifecycle
      .onCancelRequest((jobId) => {
        for (const s of this.slots) {
          if (s.worker.cancelJob(jobId, AbortReason.Canceled)) this.logger.log({ job_id: jobId, msg: 'cancel requested, interrupting' });
        }
      })
      .catch((e: Error) => this.logger.warn(`cancel channel: ${e.message}`));
  }

  private closing = false;

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    for (const s of this.slots) clearInterval(s.monitor);
    const grace = this.env.WORKER_SHUTDOWN_GRACE_MS;
    await Promise.all(
      this.slots.map(async ({ worker }) => {
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
