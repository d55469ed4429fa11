import { EventEmitter } from 'node:events';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import {
  type GenerationJob, type GenerationJobData, generationJobOptions, type GenerationProgress, type GenerationResult, type JobError,
  type JobEvent, JobName, type JobResource, logQueueErrors, RedisKeys, type WebhookEvent, decodeFailure, confirmReplicated, ReplicationUnconfirmedError,
} from '@app/queue';
import { DomainError, ErrorCode } from '@app/common';
import { REDIS_CLIENT, ResultStore, retryWhileStorageFull } from '@app/storage';
import { WebhookEnqueuer, WebhookStateStore } from '@app/webhooks';
import { type GenerationQueue, GenerationQueues } from './generation-queues';
import { JobEventBus } from './job-event-bus';
import { type ImageLinkSigner, renderJobResource } from './job-resource';
import { sharedLinkSecret, signedImageUrl } from './signed-image-url';
import type { JobTransition } from './job-transitions';
import {
  asGenerationProgress, CANCELED_ERROR, hasStarted, isTerminal, isTerminalRecord, type JobView, type QueueSnapshot, type StepProgress,
  type TerminalRecord, viewFromQueue, viewFromRecord,
} from './job-view';

const QUEUED_STATES = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children', 'paused']);
const LIVE_STATES = new Set([...QUEUED_STATES, 'active']);
/** Entries of one owner in one millisecond a page boundary can step over (the list's cursor). */
const SAME_MS_SLACK = 64;

/** How many recently queued jobs' models are remembered (a few hundred kB). */
const RECENT_MODELS = 10_000;
/** A job just added is answered from its BullMQ object this long at most, and only once. */
const FRESH_MS = 1_000;
const FRESH_MAX = 1_000;
/**
 * WAITs for the replicas before a job's end is reported. A request answers 503 after one (the
 * client retries); a worker holds its result through a failover's few seconds instead (its lock
 * keeps renewing), so the GPU's work is not thrown away.
 */
const API_ACK_TRIES = 1;
const WORKER_ACK_TRIES = 20;

export type ReadResult = { found: true; view: JobView } | { found: false; expired: boolean };

/**
 * The owner of a generation job's life: the only reader and writer of its state (the BullMQ job,
 * the cancel flag, the terminal record, its webhook deliveries) and the only emitter of its
 * transitions (queued → running → succeeded | failed | canceled, and progress). The API's routes,
 * the worker's processor and pool, SSE, metrics and heartbeats all go through it.
 *
 * Source of truth: while a job lives, its BullMQ job; once it ends, its terminal record in the
 * result store. The record is written by whoever ends the job (the worker, or the API for a job
 * canceled while queued) BEFORE BullMQ is told, and it is read FIRST. So a reader never sees a
 * BullMQ "completed" without its result, or "active" after the user was told it was canceled; the
 * record outlives BullMQ's lazily pruned job by the same retention; and a job removed from the
 * queue (canceled while queued) has a record and no BullMQ job at all. BullMQ's retained job is
 * read for a finished job only when no record exists: a job given up after stalls, ended by no
 * processor.
 */
@Injectable()
export class JobLifecycle {
  private readonly logger = new Logger(JobLifecycle.name);
  private readonly local = new EventEmitter();
  /**
   * The model of jobs this process queued lately (a job never changes queue): reading one of them
   * (the submission's own answer, a client polling this instance) asks only its queue for the state.
   */
  private readonly modelOf = new Map<string, string>();
  /** Jobs this process has just added, for the submission's own answer (see freshView). */
  private readonly fresh = new Map<string, { job: GenerationJob; at: number }>();

  constructor(
    private readonly env: Env,
    private readonly keys: RedisKeys,
    private readonly store: ResultStore,
    private readonly bus: JobEventBus,
    private readonly webhooks: WebhookEnqueuer,
    private readonly webhookStates: WebhookStateStore,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly queues: GenerationQueues,
  ) {
    for (const q of queues.all()) logQueueErrors(q, (m) => this.logger.warn(m));
    this.local.setMaxListeners(50);
  }

  /** In-process transitions (metrics, heartbeats). Listeners must not throw. */
  onTransition(listener: (t: JobTransition) => void): () => void {
    this.local.on('transition', listener);
    return () => this.local.off('transition', listener);
  }

  /** Live events of one job from any process (SSE). */
  listen(jobId: string, listener: (e: JobEvent) => void): () => void {
    return this.bus.listen(jobId, listener);
  }

  // ---------------------------------------------------------------- the API's side

  /**
   * Waiting jobs of every model: back-pressure is one budget for the deployment. The lengths of
   * every queue's wait list, priority set and delayed set, sent back to back in one round trip
   * (what getJobCounts would ask with one script per queue).
   */
  async waitingCount(): Promise<number> {
    const r = this.redis;
    const counts = await Promise.all(this.queues.all().flatMap((q) => [r.llen(q.toKey('wait')), r.zcard(q.toKey('prioritized')), r.zcard(q.toKey('delayed'))]));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Adds the job, then (REDIS_MIN_REPLICAS_ACK > 0) waits for replicas to have it: throws
   * replication_unconfirmed when they do not in time. The job exists then and will run; a retry with
   * the same Idempotency-Key answers it.
   */
  async enqueue(jobId: string, data: GenerationJobData, priority?: number): Promise<void> {
    const queue = this.queues.forModel(data.params.model);
    const job = await queue.add(
      JobName.Generate,
      data,
      generationJobOptions({ jobId, priority, attempts: this.env.JOB_ATTEMPTS, backoffMs: this.env.JOB_BACKOFF_MS, resultTtlSeconds: this.env.RESULT_TTL_SECONDS }),
    );
    this.remember(jobId, data.params.model);
    if (job) this.rememberFresh(job);
    this.emit({ kind: 'queued', jobId, model: data.params.model, at: data.submitted_at });
    // WAIT covers the writes of the connection it runs on: the queue's own client, which made the add.
    if (this.env.replicasToAck > 0) await this.replicated((await queue.getBackend().client) as unknown as Pick<Redis, 'wait'>, 1, jobId);
  }

  /**
   * With REDIS_MIN_REPLICAS_ACK, for an answer about a job this request did not write: an idempotent
   * replay acknowledges the job of an earlier try, and that try's own WAIT may be what failed. A
   * small write on the queue's connection, then its WAIT: replication is one ordered stream, so
   * replicas that hold the write hold everything the primary had before it, the job read just
   * before included. False (nothing done) when no replica acknowledgement is asked for; throws
   * replication_unconfirmed when the replicas do not confirm.
   */
  async confirmReplayed(jobId: string): Promise<boolean> {
    if (!(this.env.replicasToAck > 0)) return false;
    const client = (await this.queues.all()[0].getBackend().client) as unknown as Pick<Redis, 'set' | 'wait'>;
    // Any write does; this one keeps a single key that expires.
    await client.set(this.keys.replicationProbe, String(Date.now()), 'EX', 3600);
    await this.replicated(client, 1, jobId);
    return true;
  }

  async read(jobId: string): Promise<ReadResult> {
    const fresh = await this.freshView(jobId);
    if (fresh) return { found: true, view: fresh };
    const record = await this.store.getRecord(jobId);
    // A cached answer lives no longer than the images it points at, whatever the store's TTL says.
    if (isTerminalRecord(record) && record.expires_at !== undefined && Date.now() >= record.expires_at) return { found: false, expired: true };
    if (isTerminalRecord(record)) return { found: true, view: viewFromRecord(record, await this.webhookState(jobId, record.data)) };
    const snapshot = await this.queueSnapshot(jobId);
    if (snapshot) return { found: true, view: viewFromQueue(snapshot, await this.webhookState(jobId, snapshot.data)) };
    return { found: false, expired: await this.store.wasExpired(jobId) };
  }

  /**
   * The succeeded job that answers a request with this cache key, while its images surely exist;
   * undefined when none does (an index entry whose job is gone is dropped).
   */
  async cachedResult(cacheKey: string): Promise<TerminalRecord | undefined> {
    const key = this.keys.resultCache(cacheKey);
    const raw = await this.redis.get(key);
    if (!raw) return undefined;
    let entry: { job_id?: unknown; expires_at?: unknown };
    try {
      entry = JSON.parse(raw) as typeof entry;
    } catch {
      entry = {};
    }
    const record = typeof entry.job_id === 'string' ? await this.store.getRecord(entry.job_id) : undefined;
    const alive = typeof entry.expires_at === 'number' && Date.now() < entry.expires_at;
    if (!alive || !isTerminalRecord(record) || record.status !== 'succeeded' || !record.result?.images.length) {
      await this.redis.del(key).catch(() => 0);
      return undefined;
    }
    return { ...record, expires_at: Math.min(entry.expires_at as number, record.expires_at ?? Infinity) };
  }

  /**
   * Ends a new job at once with the result of `source` (from cachedResult): no BullMQ job, no GPU.
   * The record points at the source's stored images (no copy) and expires with them.
   */
  async completeFromCache(jobId: string, data: GenerationJobData, source: TerminalRecord, requestId?: string): Promise<void> {
    if (!source.result) throw new Error(`job ${source.id} has no result to answer from`);
    const at = Date.now();
    this.emit({ kind: 'queued', jobId, model: data.params.model, at: data.submitted_at });
    const record: TerminalRecord = {
      v: 1, id: jobId, status: 'succeeded', data, progress: source.progress, attempts: 0, started_at: at, finished_at: at,
      result: {
        ...source.result,
        source_job_id: source.result.source_job_id ?? source.id,
        timings: { queue_ms: 0, execution_ms: 0, total_ms: Math.max(0, at - data.submitted_at) },
      },
      error: null,
      cached: true,
      expires_at: source.expires_at ?? source.finished_at + this.env.RESULT_TTL_SECONDS * 1000,
    };
    await this.end(record, undefined, requestId, API_ACK_TRIES);
  }

  /**
   * Cancels a job that has not ended: a queued job is removed and never runs (its record and
   * `canceled` event are written here); a running one is flagged and its worker told to stop it.
   * Returns true when the job is already canceled on return.
   */
  async cancel(view: JobView, requestId?: string): Promise<boolean> {
    const jobId = view.id;
    await this.redis.set(this.keys.cancelFlag(jobId), '1', 'EX', this.env.RESULT_TTL_SECONDS);
    if (view.status === 'queued') {
      // A worker may take it meanwhile: then it sees the flag before submitting, or hears the request below.
      const queue = this.queues.forModel(view.data.params.model);
      await queue.remove(jobId).catch(() => 0);
      if ((await queue.getJobState(jobId)) === 'unknown') {
        const record: TerminalRecord = {
          v: 1, id: jobId, status: 'canceled', data: view.data, progress: null, attempts: view.attempts,
          started_at: null, finished_at: Date.now(), result: null, error: CANCELED_ERROR,
        };
        await this.end(record, undefined, requestId, API_ACK_TRIES);
        return true;
      }
    }
    await this.bus.requestCancel(jobId);
    return false;
  }

  /**
   * Resolves true once the job has ended, false after timeoutMs or when `signal` aborts (the client
   * went away). Events from any process first, reading the job as the net.
   */
  waitForEnd(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let done = false;
      const onAbort = () => finish(false);
      const finish = (v: boolean) => {
        if (done) return;
        done = true;
        // An ended job's queued snapshot (kept for the submission's own answer) can only be stale now.
        if (v) this.fresh.delete(jobId);
        stop();
        clearTimeout(deadline);
        clearInterval(poll);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      if (signal?.aborted) return resolve(false);
      signal?.addEventListener('abort', onAbort);
      const check = async () => {
        try {
          if (await this.hasEnded(jobId)) finish(true);
        } catch {
          // Redis blinking: the deadline still ends the wait.
        }
      };
      // The terminal event is published once the record is on file (see end()): believed without a read.
      const stop = this.bus.listen(jobId, (e) => {
        if (e.type === 'status' && isTerminal(e.status)) finish(true);
      });
      const deadline = setTimeout(() => finish(false), timeoutMs);
      const poll = setInterval(() => void check(), 1_000);
      void check();
    });
  }

  /**
   * Whether the job still holds a place (queued or running), has ended, or is unknown to the queue
   * (never added, or long gone). For the per-key quota's reconciliation.
   */
  async liveness(jobId: string): Promise<'live' | 'ended' | 'unknown'> {
    const state = (await this.queues.locate(jobId))?.state;
    if (state === undefined) return 'unknown';
    return LIVE_STATES.has(state) ? 'live' : 'ended';
  }

  private async hasEnded(jobId: string): Promise<boolean> {
    if (isTerminalRecord(await this.store.getRecord(jobId))) return true;
    const state = (await this.queues.locate(jobId))?.state;
    return state === 'completed' || state === 'failed';
  }

  /**
   * The owner's jobs, newest first, up to `limit`, after `after` (the last entry of the previous
   * page). Each is read as usual; an entry whose job is gone (expired, or never added) is skipped
   * and the page filled from further down. `next` is the cursor of the next page, null at the end.
   * Jobs submitted in the same millisecond are ordered by id, so a page boundary never skips one.
   */
  async listForOwner(owner: string | undefined, limit: number, after?: { at: number; id: string }): Promise<{ views: JobView[]; next: { at: number; id: string } | null }> {
    const key = this.keys.ownerJobs(owner);
    const views: JobView[] = [];
    let cursor = after;
    for (;;) {
      const want = limit - views.length;
      // From the cursor's millisecond (inclusive): entries at it that sort after the cursor's id were on earlier pages.
      const fetch = want + 1 + (cursor ? SAME_MS_SLACK : 0);
      const raw = await this.redis.zrevrangebyscore(key, cursor ? String(cursor.at) : '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, fetch);
      const entries: Array<{ id: string; at: number }> = [];
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const e = { id: raw[i], at: Number(raw[i + 1]) };
        if (!cursor || e.at < cursor.at || e.id < cursor.id) entries.push(e);
      }
      const page = entries.slice(0, want);
      const reads = await Promise.all(page.map((e) => this.read(e.id)));
      for (const r of reads) if (r.found && (r.view.data.owner ?? undefined) === (owner ?? undefined)) views.push(r.view);
      // More below this page: fetched and not taken, or cut off by LIMIT.
      const more = entries.length > page.length || raw.length / 2 >= fetch;
      if (!page.length || !more) return { views, next: null };
      cursor = page[page.length - 1];
      if (views.length >= limit) return { views, next: cursor };
    }
  }

  /**
   * Adds a new job to its owner's list (alongside its enqueue or cached answer). Never fails: the
   * queue's add is what accepts a job, and a list that misses one (Redis full or blinking right then)
   * is the lesser harm. An entry whose job was never added reads as gone and is left out.
   */
  async addToOwnerList(jobId: string, data: GenerationJobData): Promise<void> {
    const key = this.keys.ownerJobs(data.owner);
    const ttlS = this.env.RESULT_TTL_SECONDS;
    try {
      // Entries older than the retention point at nothing: trimmed on every write, the whole key expires with its newest job.
      // Three commands sent back to back (one round trip) rather than a MULTI: nothing reads between
      // them that needs them together, and each ioredis pipeline copies every script BullMQ defined
      // on this client (~60) when it is made, a large share of a submission's CPU.
      await Promise.all([this.redis.zadd(key, data.submitted_at, jobId), this.redis.zremrangebyscore(key, '-inf', Date.now() - ttlS * 1000), this.redis.expire(key, ttlS)]);
    } catch (e) {
      this.logger.warn({ job_id: jobId, request_id: data.request_id, msg: 'could not add the job to its owner’s list', error: (e as Error).message });
    }
  }

  /** The origin of absolute links in what leaves the API without a request (webhook payloads). */
  private linkBase(data: GenerationJobData): string {
    return this.env.PUBLIC_BASE_URL ?? data.base_url ?? '';
  }

  /**
   * Webhook payloads carry signed links too when the deployment shares a link secret (SIGNED_URL_SECRET,
   * or WEBHOOK_SECRET, which sending webhooks needs anyway); valid SIGNED_URL_TTL_SECONDS from the event.
   */
  private linkSigner(base: string): ImageLinkSigner | undefined {
    const secret = sharedLinkSecret(this.env);
    return secret ? (jobId, index) => signedImageUrl(secret, base, jobId, index, this.env.SIGNED_URL_TTL_SECONDS) : undefined;
  }

  // ---------------------------------------------------------------- the worker's side

  /** Cancel requests from any API instance; the handler stops the job if this process holds it. */
  onCancelRequest(handler: (jobId: string) => void): Promise<void> {
    return this.bus.onCancelRequest(handler);
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.cancelFlag(jobId))) === 1;
  }

  /**
   * What an earlier attempt of a job a worker just took recorded (its prompt id, to re-attach to).
   * Read from the job as fetched: no Redis round trip.
   */
  previousAttempt(job: GenerationJob): GenerationProgress | undefined {
    return asGenerationProgress(job.progress);
  }

  /**
   * Recorded before the prompt is submitted (or re-attached to), so a worker that crashes right
   * after can re-attach to it. `held`: the prompt goes into ComfyUI's queue behind another one
   * (pipelined dispatch), so the job still shows as queued until ComfyUI starts it. `running`: it is
   * a re-attach to a prompt ComfyUI is executing already (its start stays on record).
   */
  async promptSubmitting(job: GenerationJob, promptId: string, comfyui: string, o: { held?: boolean; running?: boolean } = {}): Promise<void> {
    const p = this.currentProgress(job);
    const fresh: GenerationProgress = o.running
      ? { ...p, prompt_id: promptId, comfyui, held: undefined }
      : { step: 0, total_steps: job.data.params.num_inference_steps, fraction: 0, prompt_id: promptId, comfyui, held: o.held ? true : undefined };
    await job.updateProgress(fresh);
  }

  /**
   * ComfyUI started executing the job's prompt (its execution_start, or a look that found it
   * running) at `at`: the job is running from now on. Before this it is queued, even when held by a
   * worker, so its queue time runs until then.
   */
  async started(job: GenerationJob, comfyui: string, at = Date.now()): Promise<void> {
    const jobId = job.id as string;
    const p = this.currentProgress(job);
    await job.updateProgress({ ...p, held: undefined, started_at: at } satisfies GenerationProgress);
    await this.bus.publish({ type: 'status', job_id: jobId, status: 'running', at });
    this.emit({ kind: 'running', jobId, model: job.data.params.model, at, comfyui, attempt: job.attemptsMade + 1, queueMs: Math.max(0, at - job.data.submitted_at) });
    if (WebhookEnqueuer.wants(job.data.webhook, 'running')) {
      const view = this.heldView(job, 'running', at);
      await this.enqueueWebhook(job.data, 'running', at, renderJobResource(view, this.linkBase(job.data), this.linkSigner(this.linkBase(job.data))));
    }
  }

  /** The attempt gives its prompt up: a retry submits afresh. The step reached stays on record. */
  async forgetPrompt(job: GenerationJob): Promise<void> {
    const p = this.currentProgress(job);
    if (!p.prompt_id) return;
    await job.updateProgress({ ...p, prompt_id: undefined, comfyui: undefined }).catch(() => undefined);
  }

  /** A sampling step ended. Not awaited by the GPU path: progress is advisory. */
  stepped(job: GenerationJob, comfyui: string, step: number, totalSteps: number): void {
    const jobId = job.id as string;
    const at = Date.now();
    void job.updateProgress({ ...this.currentProgress(job), step, total_steps: totalSteps, fraction: totalSteps ? step / totalSteps : 0 }).catch(() => undefined);
    void this.bus.publish({ type: 'progress', job_id: jobId, step, total_steps: totalSteps, fraction: totalSteps ? step / totalSteps : 0, at });
    this.emit({ kind: 'progress', jobId, model: job.data.params.model, at, comfyui, step, totalSteps });
  }

  async succeeded(job: GenerationJob, comfyui: string, result: GenerationResult): Promise<void> {
    const steps = job.data.params.num_inference_steps;
    const record = this.terminal(job, 'succeeded', { result, progress: { step: steps, total_steps: steps } });
    await this.end(record, comfyui);
    if (job.data.cache_key) await this.indexResult(job.data.cache_key, record);
  }

  /** The last attempt failed (or the failure cannot be retried). */
  async failed(job: GenerationJob, comfyui: string | undefined, error: JobError): Promise<void> {
    await this.end(this.terminal(job, 'failed', { error }), comfyui);
  }

  /** `started: false`: its prompt never ran (canceled while queued in ComfyUI or before submission). */
  async canceled(job: GenerationJob, comfyui: string | undefined, o: { started?: boolean } = {}): Promise<void> {
    const record = this.terminal(job, 'canceled', { error: CANCELED_ERROR });
    if (o.started === false) {
      record.started_at = null;
      record.progress = null;
    }
    await this.end(record, comfyui);
  }

  /**
   * Puts a held job back in the queue without using an attempt: this worker is shutting down (it
   * waits again at once), or its ComfyUI is down (it waits `delayMs` before any worker looks again).
   */
  async handBack(job: GenerationJob, token: string | undefined, comfyui: string, reason: 'shutdown' | 'comfyui_down', delayMs = 0): Promise<void> {
    if (reason === 'shutdown') await job.moveToWait(token);
    else await job.moveToDelayed(Date.now() + delayMs, token);
    await this.requeued(job, comfyui, reason);
  }

  /** The job went back to the queue (BullMQ already has it there). */
  async requeued(job: GenerationJob, comfyui: string | undefined, reason: 'retry' | 'comfyui_down' | 'shutdown', code?: string): Promise<void> {
    const at = Date.now();
    const jobId = job.id as string;
    await this.bus.publish({ type: 'status', job_id: jobId, status: 'queued', at });
    this.emit({ kind: 'requeued', jobId, model: job.data.params.model, at, comfyui, reason, code });
  }

  /**
   * BullMQ failed a job for good without a processor ending it (given up after stalls): record the
   * failure its reason states, once. A job a processor ended already has its record.
   */
  async failedByQueue(job: GenerationJob, comfyui: string): Promise<void> {
    const jobId = job.id as string;
    if (isTerminalRecord(await this.store.getRecord(jobId))) return;
    const error = decodeFailure(job.failedReason);
    const status = error.code === CANCELED_ERROR.code ? 'canceled' : 'failed';
    await this.end(this.terminal(job, status, { error, attempts: job.attemptsMade }), comfyui);
  }

  // ---------------------------------------------------------------- internals

  private terminal(
    job: GenerationJob,
    status: TerminalRecord['status'],
    o: { result?: GenerationResult; error?: JobError; progress?: StepProgress; attempts?: number },
  ): TerminalRecord {
    const p = asGenerationProgress(job.progress);
    return {
      v: 1,
      id: job.id as string,
      status,
      data: job.data,
      progress: o.progress ?? (p ? { step: p.step, total_steps: p.total_steps } : null),
      attempts: o.attempts ?? job.attemptsMade + 1,
      started_at: p?.started_at ?? job.processedOn ?? null,
      finished_at: Date.now(),
      result: o.result ?? null,
      error: o.error ?? null,
    };
  }

  /**
   * Makes a succeeded job findable by its cache key. Its images were stored during this attempt, so
   * they live at least until the attempt's start plus the retention: the entry dies no later.
   */
  private async indexResult(cacheKey: string, record: TerminalRecord): Promise<void> {
    const expiresAt = Math.min(record.started_at ?? record.finished_at, record.finished_at) + this.env.RESULT_TTL_SECONDS * 1000;
    const ttlMs = expiresAt - Date.now();
    if (ttlMs <= 0) return;
    try {
      await this.redis.set(this.keys.resultCache(cacheKey), JSON.stringify({ job_id: record.id, expires_at: expiresAt }), 'PX', ttlMs);
    } catch (e) {
      // The job succeeded; a cache that misses it only costs a GPU run later.
      this.logger.warn({ job_id: record.id, msg: 'could not index the result for the cache', error: (e as Error).message });
    }
  }

  /**
   * Record first (readers trust it), then the event and the webhook, side by side: both only
   * follow the record, and waiting for one before sending the other is a Redis round trip per job.
   */
  private async end(record: TerminalRecord, comfyui: string | undefined, requestId?: string, ackTries = WORKER_ACK_TRIES): Promise<void> {
    const jobId = record.id;
    // A Redis at maxmemory may get room back within moments (another job's images released): a few quick tries.
    await retryWhileStorageFull(() => this.store.putRecord(jobId, record as unknown as Record<string, unknown>));
    // The record (and the images stored before it, on the same connection) on the replicas before
    // anyone is told the job ended: a failover right after must not forget a reported result.
    await this.replicated(this.redis, ackTries, jobId);
    const published = this.bus.publish({ type: 'status', job_id: jobId, status: record.status, at: record.finished_at });
    this.emit({
      kind: 'ended', jobId, model: record.data.params.model, at: record.finished_at, status: record.status, comfyui, code: record.error?.code,
      result: record.result ?? undefined, ...(record.cached ? { cached: true as const } : {}),
    });
    const hooked = (async () => {
      if (!WebhookEnqueuer.wants(record.data.webhook, record.status)) return;
      const base = this.linkBase(record.data);
      const resource = renderJobResource(viewFromRecord(record, null), base, this.linkSigner(base));
      await this.enqueueWebhook(record.data, record.status, record.finished_at, resource, requestId);
    })().catch((e: Error) => {
      // The job's end is on record; a delivery that cannot be enqueued must not undo it.
      this.logger.error({ job_id: jobId, request_id: requestId, msg: 'could not enqueue the webhook', event: record.status, error: e.message });
    });
    await Promise.all([published, hooked]);
  }

  /** WAIT for REDIS_MIN_REPLICAS_ACK replicas, `tries` times at most; replication_unconfirmed when they never confirm. */
  private async replicated(client: Pick<Redis, 'wait'>, tries: number, jobId: string): Promise<void> {
    const wanted = this.env.replicasToAck;
    if (!(wanted > 0)) return; // also an Env built by hand (tests) without the getter
    for (let i = 1; ; i++) {
      try {
        await confirmReplicated(client, wanted, this.env.REDIS_REPLICA_ACK_TIMEOUT_MS, this.keys.prefix);
        return;
      } catch (e) {
        if (!(e instanceof ReplicationUnconfirmedError)) throw e;
        if (i >= tries) throw new DomainError(ErrorCode.ReplicationUnconfirmed, 'The job store could not confirm the write on its replicas in time; retry shortly with the same Idempotency-Key', { job_id: jobId, replicas_wanted: e.wanted, replicas_confirmed: e.confirmed });
      }
    }
  }

  private heldView(job: GenerationJob, status: 'running', at: number): JobView {
    const p = this.currentProgress(job);
    return {
      id: job.id as string, status, data: job.data, queue_position: null, progress: { step: p.step, total_steps: p.total_steps },
      attempts: job.attemptsMade + 1, created_at: job.data.submitted_at, started_at: p.started_at ?? at, finished_at: null,
      result: null, error: null, webhook: null,
    };
  }

  private currentProgress(job: GenerationJob): GenerationProgress {
    const total = job.data.params.num_inference_steps;
    return asGenerationProgress(job.progress) ?? { step: 0, total_steps: total, fraction: 0 };
  }

  private async enqueueWebhook(data: GenerationJobData, event: WebhookEvent, at: number, resource: JobResource, requestId?: string): Promise<void> {
    const webhookId = await this.webhooks.enqueue({ jobId: resource.id, hook: data.webhook, event, occurredAt: at, resource });
    if (webhookId) this.logger.log({ job_id: resource.id, request_id: requestId, msg: 'webhook enqueued', event, webhook_id: webhookId });
  }

  private rememberFresh(job: GenerationJob): void {
    this.fresh.set(job.id as string, { job, at: Date.now() });
    for (const [id, f] of this.fresh) {
      if (this.fresh.size <= FRESH_MAX && Date.now() - f.at <= FRESH_MS) break;
      this.fresh.delete(id);
    }
  }

  /**
   * The first read of a job this process has just added (the submission's own answer): BullMQ's
   * job object is in hand, so while the job still sits in its priority set, nothing has happened
   * to it (no worker took it, no record, no progress) and one round trip gives its
   * place (behind any held job: see heldCount) and cancel flag, instead of record, state, job and
   * place one after the other. Once
   * taken, or past FRESH_MS, or not prioritized any more, the job is read in full as always.
   */
  private async freshView(jobId: string): Promise<JobView | undefined> {
    const entry = this.fresh.get(jobId);
    if (!entry) return undefined;
    this.fresh.delete(jobId);
    if (Date.now() - entry.at > FRESH_MS) return undefined;
    const { job } = entry;
    const queue = this.queues.forModel(job.data.params.model);
    const prioritized = queue.toKey('prioritized');
    const r = this.redis;
    const [score, len, rank, flag, active] = await Promise.all([
      r.zscore(prioritized, jobId), r.llen(queue.toKey('wait')), r.zrank(prioritized, jobId), r.exists(this.keys.cancelFlag(jobId)), r.lrange(queue.toKey('active'), 0, -1),
    ]);
    if (score === null || rank === null || flag === 1) return undefined;
    const held = await this.heldCount(queue, active);
    const snapshot: QueueSnapshot = {
      id: jobId, state: 'prioritized', data: job.data, progress: job.progress, result: undefined, failedReason: undefined,
      attemptsMade: job.attemptsMade, timestamp: job.timestamp, processedOn: undefined, finishedOn: undefined,
      cancelRequested: false, queuePosition: held + len + rank,
    };
    return viewFromQueue(snapshot, await this.webhookState(jobId, job.data));
  }

  private remember(jobId: string, model: string): void {
    this.modelOf.set(jobId, model);
    if (this.modelOf.size > RECENT_MODELS) this.modelOf.delete(this.modelOf.keys().next().value as string);
  }

  private emit(t: JobTransition): void {
    try {
      this.local.emit('transition', t);
    } catch (e) {
      this.logger.warn({ job_id: t.jobId, msg: 'transition listener failed', error: (e as Error).message });
    }
  }

  private async webhookState(jobId: string, data: GenerationJobData) {
    return data.webhook ? this.webhookStates.read(jobId, data.webhook) : null;
  }

  private async queueSnapshot(jobId: string): Promise<QueueSnapshot | undefined> {
    // State first, then the job: reading the job first can show "completed" without its result.
    const located = await this.queues.locate(jobId, this.modelOf.get(jobId));
    if (!located) return undefined;
    const { queue, state } = located;
    const queued = QUEUED_STATES.has(state);
    // The job, and for a queued one its cancel flag and place, in two concurrent round trips.
    const [job, place] = await Promise.all([queue.getJob(jobId), queued ? this.queuedPlace(queue, jobId, state) : undefined]);
    if (!job) return undefined;
    // BullMQ prunes finished jobs lazily (when later jobs finish): past retention, treat it as gone.
    if (job.finishedOn && Date.now() - job.finishedOn > this.env.RESULT_TTL_SECONDS * 1000) return undefined;
    const cancelRequested = place?.cancelRequested ?? false;
    // Taken by a worker, its prompt next in ComfyUI's queue (pipelined dispatch) or about to be: next to run.
    const held = state === 'active' && !hasStarted(job.progress);
    return {
      id: jobId,
      state,
      data: job.data,
      progress: job.progress,
      result: job.returnvalue,
      failedReason: job.failedReason,
      attemptsMade: job.attemptsMade,
      timestamp: job.timestamp,
      processedOn: job.processedOn,
      finishedOn: job.finishedOn,
      cancelRequested,
      queuePosition: held ? 0 : queued && !cancelRequested ? (place?.position ?? null) : null,
    };
  }

  /**
   * A queued job's cancel flag and queue_position (0 = next to run in its model's queue), in one
   * round trip whose cost does not grow with the queue's depth. Unprioritized waiting
   * jobs go first, then the priority set in score order (BullMQ scores a priority and then the
   * order of arrival): a prioritized job's place is ZRANK (O(log n)) after the wait list's length
   * (O(1)). The API gives every job a priority, so the wait list stays empty but for jobs another
   * producer added without one; a waiting job's place is an LPOS from the list's tail, where its
   * next jobs are, so it costs the jobs ahead of it, not the ones behind.
   */
  private async queuedPlace(queue: GenerationQueue, jobId: string, state: string): Promise<{ cancelRequested: boolean; position: number | null }> {
    const waitKey = queue.toKey('wait');
    const r = this.redis;
    const ahead = state === 'waiting' || state === 'prioritized';
    const [flag, len, at, active] = await Promise.all([
      r.exists(this.keys.cancelFlag(jobId)),
      r.llen(waitKey),
      state === 'waiting' ? r.lpos(waitKey, jobId, 'RANK', -1) : state === 'prioritized' ? r.zrank(queue.toKey('prioritized'), jobId) : undefined,
      ahead ? r.lrange(queue.toKey('active'), 0, -1) : undefined,
    ]);
    const cancelRequested = flag === 1;
    if (!ahead || at === null || at === undefined) return { cancelRequested, position: null };
    const held = await this.heldCount(queue, active ?? []);
    return { cancelRequested, position: held + (state === 'waiting' ? len - 1 - at : len + at) };
  }

  /**
   * Jobs of this model taken by a worker whose prompt has not started (held in ComfyUI's queue by
   * pipelined dispatch): they run before any waiting job. Bounded by the GPUs, not the queue depth.
   * `active` is the active list, read in the caller's round trip.
   */
  private async heldCount(queue: GenerationQueue, active: string[]): Promise<number> {
    if (!active.length) return 0;
    const answers = await Promise.all(active.map((id) => this.redis.hget(queue.toKey(id), 'progress').catch(() => null)));
    let held = 0;
    for (const raw of answers) {
      if (typeof raw !== 'string') continue;
      try {
        if (!hasStarted(JSON.parse(raw))) held++;
      } catch {
        // Not JSON: not ours to judge.
      }
    }
    return held;
  }
}
