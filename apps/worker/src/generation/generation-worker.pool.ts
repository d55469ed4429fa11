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
  /** Jobs this slot's workers hold now, by id: whether ComfyUI has started the job's prompt yet. */
  inHand: Map<string, { worker: Worker<GenerationJobData, GenerationResult>; started: boolean }>;
  /** Last answer of the availability monitor: false while ComfyUI does not answer. */
  comfyUp: boolean;
  monitor?: NodeJS.Timeout;
  /** Polls ComfyUI's queue while prompts an earlier worker left there hold seats. */
  leftovers?: NodeJS.Timeout;
}

/** How often each slot asks its ComfyUI whether it answers (cheap: GET /system_stats). */
const MONITOR_MS = 1_000;
/** How often ComfyUI's queue is read while an earlier worker's prompts hold seats in it. */
const LEFTOVER_POLL_MS = 200;

/**
 * One slot per ComfyUI in COMFYUI_URLS: a GPU runs one prompt at a time. A slot consumes the
 * queue of each model its ComfyUI has the files of (one BullMQ worker per model queue) and its
 * gate gives out the seats in ComfyUI's queue. Also listens for cancel requests and hands them to
 * whichever local worker holds the job.
 *
 * Pipelined dispatch (WORKER_PIPELINE=true, the default): two seats, so while one prompt runs the
 * next job is already taken and its prompt waits in ComfyUI's queue (never more than one there);
 * the GPU starts it the instant the previous one ends, and fetching and storing the previous
 * outputs overlaps its run (a seat is given back when its prompt ends in ComfyUI, not when its job
 * is recorded). Taking that second job is BullMQ's own doing: each model's Worker runs with
 * concurrency 2 rather than fetching by hand with getNextJob, because BullMQ then keeps renewing
 * the lock of every job it holds (the held one included, so no other GPU takes it and it never
 * looks stalled), its stalled-job check still returns both jobs of a worker that dies, and a
 * completed job's moveToFinished hands over the next job by priority in the same round trip. With
 * concurrency 2 a single-model slot never holds a job it has no seat for (its second job is taken
 * only once the first is recorded, by which time that one's seat is free); a slot serving several
 * models may hold up to two per model waiting for a seat, so at equal priority their turns come in
 * pairs (the gate serves the more urgent job first).
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
    const seats = this.env.WORKER_PIPELINE ? 2 : 1;
    const slot: Slot = { comfy, workers: new Map(), models: null, warming: false, gate: new SlotGate(seats), inHand: new Map(), comfyUp: false };
    this.watch(slot);
    return slot;
  }

  private createWorker(slot: Slot, model: string): Worker<GenerationJobData, GenerationResult> {
    const { comfy } = slot;
    const url = comfy.baseUrl;
    const worker: Worker<GenerationJobData, GenerationResult> = new Worker<GenerationJobData, GenerationResult>(
      this.queues.nameFor(model),
      // In a job context: every line logged while the job runs carries its job_id.
      (job: GenerationJob, token?: string, signal?: AbortSignal): Promise<GenerationResult> =>
        runWithJobContext(job.id, () => this.runGated(slot, worker, job, token, signal ?? new AbortController().signal)),
      {
        connection: bullConnectionFor(this.env, 'worker'),
        prefix: this.env.QUEUE_PREFIX,
        // Pipelined: the running job and the held next one (see the class comment).
        concurrency: this.env.WORKER_PIPELINE ? 2 : 1,
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
   * The slot's models take turns on its GPU. A job that waits for a seat is held by its worker
   * (locked, so no other GPU takes it) — at most as many per other served model as its concurrency.
   */
  private async runGated(
    slot: Slot, worker: Worker<GenerationJobData, GenerationResult>, job: GenerationJob, token: string | undefined, signal: AbortSignal,
  ): Promise<GenerationResult> {
    const jobId = job.id as string;
    if (this.closing) {
      // Fetched as the worker was closing (a finished job's moveToFinished hands over the next): never started, back it goes.
      await this.lifecycle.handBack(job, token, slot.comfy.baseUrl, 'shutdown');
      throw new WaitingError();
    }
    const entry = { worker, started: false };
    slot.inHand.set(jobId, entry);
    const held = await slot.gate.acquire(signal, job.opts.priority ?? 0);
    let seated = held;
    const giveSeatBack = () => {
      if (!seated) return;
      seated = false;
      slot.gate.release();
    };
    try {
      const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason ?? '');
      if (!held && reason === AbortReason.Shutdown) {
        // Never started: back to the queue as it was, for another worker.
        await this.lifecycle.handBack(job, token, slot.comfy.baseUrl, 'shutdown');
        throw new WaitingError();
      }
      if (held && !slot.comfyUp) {
        // A paused worker's fetch in flight can still hand it a job: while the slot is down, or
        // back but not yet re-checked and warmed, the job goes back unstarted, its attempt intact.
        await this.lifecycle.handBack(job, token, slot.comfy.baseUrl, 'comfyui_down', COMFY_DOWN_DELAY_MS);
        throw new DelayedError();
      }
      return await this.processor.process(job, token, signal, slot.comfy, {
        onStarted: () => (entry.started = true),
        // Pipelined: the seat goes to the next job as soon as this prompt has ended in ComfyUI.
        onPromptEnded: this.env.WORKER_PIPELINE ? giveSeatBack : undefined,
      });
    } finally {
      giveSeatBack();
      slot.inHand.delete(jobId);
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
    if (before === null) await this.seatLeftovers(slot);
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

  /**
   * Prompts already in ComfyUI's queue when this worker first reaches it were left there by an
   * earlier worker of this slot (killed or restarted with its prompts in flight): ComfyUI runs them
   * anyway, and their jobs come back through BullMQ's stalled check and re-attach to them. Until
   * they leave ComfyUI's queue they hold seats, so a restarted worker does not stack new prompts on
   * top of them (never more than one waiting, as in normal running). If the queue cannot be read,
   * the seats are given back (as before this check: at worst a brief overfill, never a stall).
   */
  private async seatLeftovers(slot: Slot): Promise<void> {
    const url = slot.comfy.baseUrl;
    const ids = await slot.comfy.queuedPromptIds().catch(() => [] as string[]);
    let held = slot.gate.occupy(ids.length);
    if (!held) return;
    this.logger.log({ comfyui: url, msg: "ComfyUI's queue holds prompts of an earlier worker: they keep their seats until they end", prompts: ids.length });
    const remaining = new Set(ids);
    const poll = async () => {
      slot.leftovers = undefined;
      const now = this.closing ? [] : await slot.comfy.queuedPromptIds().catch(() => [] as string[]);
      for (const id of remaining) if (!now.includes(id)) remaining.delete(id);
      for (; held > remaining.size; held--) slot.gate.release();
      if (held > 0) slot.leftovers = setTimeout(() => void poll(), LEFTOVER_POLL_MS);
    };
    slot.leftovers = setTimeout(() => void poll(), LEFTOVER_POLL_MS);
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
    for (const s of this.slots) {
      clearInterval(s.monitor);
      clearTimeout(s.leftovers);
    }
    const grace = this.env.WORKER_SHUTDOWN_GRACE_MS;
    // Stop taking jobs first (close() marks a worker closing at once, so no job is fetched after).
    const closings = new Map(this.workers.map((w) => [w, w.close()] as const));
    // A job whose prompt has not started (held in ComfyUI's queue, waiting for a seat, or about to
    // submit) goes back to the queue untouched now: its prompt is deleted from ComfyUI's queue and
    // its attempt is not used. Only a prompt ComfyUI is executing gets the grace time.
    for (const slot of this.slots) {
      for (const [jobId, held] of slot.inHand) {
        if (!held.started && held.worker.cancelJob(jobId, AbortReason.Shutdown)) this.logger.log({ job_id: jobId, msg: 'shutting down: handing back the job that has not started' });
      }
    }
    await Promise.all(
      this.workers.map(async (worker) => {
        // Let the running prompt finish within the grace time, else hand it back.
        const closing = closings.get(worker) as Promise<void>;
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
