import { randomUUID } from 'node:crypto';
import { Injectable, Logger, Optional } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { FleetMonitor } from '@app/health';
import { isTerminal, JobLifecycle, type JobView, renderJobResource, resultCacheKey } from '@app/jobs';
import { DEFAULT_WEBHOOK_EVENTS, type GenerationJobData, type GenerationParams, type JobResource, type StoredImageRef } from '@app/queue';
import { type ImageStream, ResultStore } from '@app/storage';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError, STATUS_BY_CODE, STORAGE_FULL_RETRY_AFTER_S } from '../common/api-error';
import { RedisMemoryProbe } from '../metrics/redis-memory';
import { ContentPolicy, enforceContentPolicy } from '../policy/content-policy';
import { JobQuota } from '../rate-limit/job-quota.service';
import { InputImagesService, type ResolvedEdit } from '../uploads/input-images.service';
import type { CreateJobDto } from './dto/create-job.dto';
import { SignedLinks } from './signed-links.service';

export interface Caller {
  /** API key id, or undefined when the server runs open. */
  owner?: string;
  priority?: number;
  /** The key's concurrency quota (jobs queued or running at once); none when open. */
  maxJobs?: number;
  requestId?: string;
}

/** How long a waiting count read for admission may stand in for a fresh one (see refuseWhenQueueFull). */
const WAITING_REUSE_MS = 250;

/**
 * The API's edge of generation jobs: validation against the model, back-pressure, ownership, and the
 * rendering of the public resource. Every read and write of a job's state goes through JobLifecycle.
 */
@Injectable()
export class JobsService {
  private readonly logger = new Logger(JobsService.name);
  /** The last waiting count read for admission, plus the submissions admitted against it since. */
  private waitingSeen?: { count: number; at: number };

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
    private readonly store: ResultStore,
    private readonly lifecycle: JobLifecycle,
    private readonly inputImages: InputImagesService,
    private readonly fleet: FleetMonitor,
    @Optional() private readonly contentPolicy?: ContentPolicy,
    @Optional() private readonly quota?: JobQuota,
    @Optional() private readonly redisMemory?: RedisMemoryProbe,
    @Optional() private readonly signedLinks?: SignedLinks,
  ) {}

  baseUrl(requestBase: string): string {
    return (this.env.PUBLIC_BASE_URL ?? requestBase).replace(/\/$/, '');
  }

  /** Validates against the model, checks back-pressure, enqueues. Nothing is written on bad input. Returns the job id. */
  /**
   * `requireCapacity` (the synchronous route): refuse with 503 no_capacity when no live worker can
   * run the model now, after validation, the policy and the cache (a cached answer needs no GPU).
   */
  async submit(dto: CreateJobDto, caller: Caller, opts: { webhookUrl?: string; jobId?: string; requestBase: string; requireCapacity?: boolean }): Promise<string> {
    // An edit's image and mask are checked (decoded, sized, URL judged) before anything is written.
    const edit = await this.inputImages.resolve(dto, caller.owner);
    const params = this.workflows.resolve(edit ? { ...dto, mode: edit.mode, input_size: edit.inputSize } : dto);
    await enforceContentPolicy(this.contentPolicy, params.prompt, params.negative_prompt);
    // An edit's pixels depend on its inputs too: their hashes join the key; a URL's bytes are unknown here, so no cache.
    const cacheKey = edit && !edit.inputHashes ? undefined : this.cacheKey(edit ? { ...params, ...{ input_sha256: edit.inputHashes } } : params, dto.seed !== undefined, caller);
    const jobId = opts.jobId ?? randomUUID();
    // A new job's admission checks read Redis side by side with the cache lookup (one round trip, not
    // several in a row); their refusals are still told in this order, and none counts for a cached answer.
    const checks = [
      this.requireServed(params.model),
      opts.requireCapacity ? this.requireCapacity(params.model) : undefined,
      this.refuseWhenRedisNearlyFull(),
      this.refuseWhenQueueFull(),
    ].map((check) => check?.then(() => undefined, (e: unknown) => ({ refused: e })));
    const source = cacheKey && dto.cache !== false ? await this.lifecycle.cachedResult(cacheKey) : undefined;
    if (source) {
      // An identical seeded request succeeded before: its images answer, no queue, no quota slot, no GPU.
      const cached = this.jobData(dto, params, caller, opts, cacheKey, edit);
      await Promise.all([this.lifecycle.completeFromCache(jobId, cached, source, caller.requestId), this.lifecycle.addToOwnerList(jobId, cached)]);
      this.logger.log({ request_id: caller.requestId, job_id: jobId, msg: 'job answered from the result cache', model: params.model, source_job_id: source.id });
      return jobId;
    }
    for (const outcome of await Promise.all(checks)) if (outcome) throw outcome.refused;
    await edit?.commit();
    const data = this.jobData(dto, params, caller, opts, cacheKey, edit);
    // The owner's list (GET /api/v1/images/jobs) is written alongside the add, not after it; it never throws.
    const listed = this.lifecycle.addToOwnerList(jobId, data);
    // A slot of the key's quota first (429 quota_exceeded), given back if the job never gets queued.
    await this.quota?.reserve(caller, jobId);
    try {
      await this.lifecycle.enqueue(jobId, data, caller.priority);
    } catch (e) {
      // replication_unconfirmed: the job is queued (only its copy on the replicas is in doubt), so it keeps its slot.
      if (isReplicationUnconfirmed(e)) await this.quota?.confirm(caller, jobId);
      else await this.quota?.release(caller, jobId);
      throw e;
    }
    await this.quota?.confirm(caller, jobId);
    await listed;
    this.logger.log({ request_id: caller.requestId, job_id: jobId, msg: 'job queued', model: params.model, prompt_length: params.prompt.length });
    return jobId;
  }

  private jobData(dto: CreateJobDto, params: GenerationParams, caller: Caller, opts: { webhookUrl?: string; requestBase: string }, cacheKey?: string, edit?: ResolvedEdit): GenerationJobData {
    return {
      params,
      owner: caller.owner,
      metadata: dto.metadata,
      ...(edit ? { inputs: edit.inputs } : {}),
      submitted_at: Date.now(),
      request_id: caller.requestId,
      // Absolute links made without a request (webhook payloads) use the origin the client used.
      base_url: this.baseUrl(opts.requestBase),
      ...(opts.webhookUrl ? { webhook: { url: opts.webhookUrl, events: dto.webhook_events ?? [...DEFAULT_WEBHOOK_EVENTS] } } : {}),
      ...(cacheKey ? { cache_key: cacheKey } : {}),
    };
  }

  /**
   * 503 no_capacity when the heartbeats show no worker with a live ComfyUI for the model, so a
   * synchronous caller is told at once instead of waiting SYNC_TIMEOUT_MS. Unreadable heartbeats
   * are left to the enqueue's own Redis error.
   */
  private async requireCapacity(model: string): Promise<void> {
    if ((await this.fleet.workersServing(model).catch(() => undefined)) !== 0) return;
    const retryAfterS = Math.max(1, Math.ceil((this.env.WORKER_HEARTBEAT_INTERVAL_MS + this.env.HEALTH_CACHE_MS) / 1000));
    throw new ApiError(
      ErrorCode.NoCapacity,
      'No GPU worker can take a job right now; retry later, or submit it to POST /api/v1/images/jobs, where it waits for one',
      undefined,
      { 'Retry-After': String(retryAfterS) },
    );
  }

  /** Only a seed the client chose makes a request repeatable: a random one never matches, so it is not indexed. */
  private cacheKey(params: GenerationParams, seeded: boolean, caller: Caller): string | undefined {
    if (!seeded || this.env.RESULT_CACHE === 'off') return undefined;
    const scope = this.env.RESULT_CACHE === 'global' ? ({ kind: 'global' } as const) : ({ kind: 'owner', owner: caller.owner } as const);
    return resultCacheKey(params, this.workflows.fingerprint(params.model), scope);
  }

  /**
   * 503 model_unavailable when workers are live and none has the model's files: its job would
   * wait for a GPU box that may never come. QUEUE_UNSERVED_MODELS=true accepts it (fleets that
   * start boxes on backlog). Read through the health cache; unreadable heartbeats are left to
   * the enqueue's own Redis error.
   */
  async requireServed(model: string): Promise<void> {
    if (this.env.QUEUE_UNSERVED_MODELS) return;
    if (await this.fleet.modelServed(model).catch(() => true)) return;
    const retryAfterS = Math.max(1, Math.ceil((this.env.WORKER_HEARTBEAT_INTERVAL_MS + this.env.HEALTH_CACHE_MS) / 1000));
    throw new ApiError(ErrorCode.ModelUnavailable, `No GPU worker has the files of model ${model} right now; retry later`, { model }, { 'Retry-After': String(retryAfterS) });
  }

  /**
   * 503 queue_full past QUEUE_MAX_WAITING waiting jobs (every model's queue counted). Counting is
   * three commands per model's queue, the largest share of a submission's Redis work, so while a
   * count read moments ago (WAITING_REUSE_MS) is below 90 % of the limit, that count plus the jobs
   * this process has admitted since decides instead; near the limit every submission counts afresh.
   * Other API instances' submissions of those moments are not in it: a soft limit, as before.
   */
  private async refuseWhenQueueFull(): Promise<void> {
    const max = this.env.QUEUE_MAX_WAITING;
    const recent = this.waitingSeen;
    if (recent && Date.now() - recent.at < WAITING_REUSE_MS && recent.count < max * 0.9) {
      recent.count++;
      return;
    }
    const waiting = await this.lifecycle.waitingCount();
    if (waiting >= max) {
      throw new ApiError(ErrorCode.QueueFull, 'Too many jobs are waiting; try again later', { waiting }, { 'Retry-After': '30' });
    }
    this.waitingSeen = { count: waiting + 1, at: Date.now() };
  }

  /**
   * With images in Redis, a job accepted now needs room for its images later: past the watermark,
   * refuse new work (503) while the headroom still takes the images of jobs already accepted.
   * The probe's cached INFO (a few seconds old at most) is precise enough for a share of maxmemory.
   */
  private async refuseWhenRedisNearlyFull(): Promise<void> {
    if (this.env.RESULT_STORE !== 'redis' || !this.redisMemory) return;
    const memory = await this.redisMemory.read();
    // No maxmemory: Redis grows until the machine runs out, and there is no line to stay under.
    if (!memory || memory.max_bytes === 0) return;
    if (memory.used_bytes < memory.max_bytes * this.env.REDIS_MEMORY_HIGH_WATERMARK) return;
    throw new ApiError(ErrorCode.StorageFull, 'Storage is nearly full; try again once older results have expired', undefined, { 'Retry-After': String(STORAGE_FULL_RETRY_AFTER_S) });
  }

  /** The job as data, for its owner only: anyone else gets the same 404 as for a job that never was. */
  async view(jobId: string, caller: Caller): Promise<JobView> {
    const view = await this.viewOfAnyOwner(jobId);
    if ((view.data.owner ?? undefined) !== (caller.owner ?? undefined)) throw this.notFound(jobId);
    return view;
  }

  private async viewOfAnyOwner(jobId: string): Promise<JobView> {
    const read = await this.lifecycle.read(jobId);
    if (!read.found) {
      if (read.expired) throw new ApiError(ErrorCode.JobExpired, `Job ${jobId} has expired; results are kept ${this.env.RESULT_TTL_SECONDS} s`);
      throw this.notFound(jobId);
    }
    return read.view;
  }

  render(view: JobView, base: string): JobResource {
    const origin = this.baseUrl(base);
    const links = this.signedLinks;
    return renderJobResource(view, origin, links ? (jobId, index) => links.url(origin, jobId, index) : undefined);
  }

  async get(jobId: string, caller: Caller, base: string): Promise<JobResource> {
    return this.render(await this.view(jobId, caller), base);
  }

  /** The caller's jobs, newest first, a page at a time (`cursor` from the previous page's next_cursor). */
  async list(caller: Caller, base: string, limit: number, cursor?: { at: number; id: string }): Promise<{ data: JobResource[]; next_cursor: string | null }> {
    const { views, next } = await this.lifecycle.listForOwner(caller.owner, limit, cursor);
    return { data: views.map((v) => this.render(v, base)), next_cursor: next === null ? null : `${next.at}.${next.id}` };
  }

  /** For an idempotent replay: whether the claimed job exists, giving its first request a moment to add it. */
  async claimedJobExists(jobId: string, caller: Caller, base: string): Promise<boolean> {
    try {
      await this.getWhenVisible(jobId, caller, base);
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === ErrorCode.JobNotFound) return false;
      throw e;
    }
  }

  /**
   * An idempotent replay's answer: the first try's job once it is visible and, with
   * REDIS_MIN_REPLICAS_ACK, confirmed on the replicas like any acknowledged job (the first try's own
   * WAIT may be what failed). It is read again after the WAIT: a failover between the first read and
   * the probe write would have sent the probe to a primary that may not hold the job, and then it is
   * not found there — replication_unconfirmed, so the client's retry claims the key afresh.
   */
  async getReplayed(jobId: string, caller: Caller, base: string): Promise<JobResource> {
    const seen = await this.getWhenVisible(jobId, caller, base);
    if (!(await this.lifecycle.confirmReplayed(jobId))) return seen;
    try {
      return await this.get(jobId, caller, base);
    } catch (e) {
      if (!(e instanceof ApiError && e.code === ErrorCode.JobNotFound)) throw e;
      throw new DomainError(ErrorCode.ReplicationUnconfirmed, 'The job store could not confirm the job on its replicas; retry shortly with the same Idempotency-Key', { job_id: jobId });
    }
  }

  /** For an idempotent replay: the first request may still be adding the job; wait for it briefly. */
  async getWhenVisible(jobId: string, caller: Caller, base: string, timeoutMs = 3_000): Promise<JobResource> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.get(jobId, caller, base);
      } catch (e) {
        if (!(e instanceof ApiError && e.code === ErrorCode.JobNotFound) || Date.now() > deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /**
   * Cancel: a queued job is removed and never runs; a running one is interrupted on its GPU (this
   * answers once it has stopped, or after 2 s with its state then). A finished job cannot be canceled.
   */
  async cancel(jobId: string, caller: Caller, base: string): Promise<JobResource> {
    const view = await this.view(jobId, caller);
    if (isTerminal(view.status)) throw new ApiError(ErrorCode.JobFinished, `Job ${jobId} has already ended (${view.status})`);
    if (!(await this.lifecycle.cancel(view, caller.requestId))) await this.lifecycle.waitForEnd(jobId, 2_000);
    return this.get(jobId, caller, base);
  }

  waitForEnd(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return this.lifecycle.waitForEnd(jobId, timeoutMs, signal);
  }

  /** Long-poll: the job once it has ended, or after waitMs with its state then. */
  async getAfterWait(jobId: string, caller: Caller, base: string, waitMs: number, signal?: AbortSignal): Promise<JobResource> {
    const view = await this.view(jobId, caller);
    if (waitMs <= 0 || isTerminal(view.status)) return this.render(view, base);
    await this.lifecycle.waitForEnd(jobId, waitMs, signal);
    return this.get(jobId, caller, base);
  }

  /**
   * An ended job, for the answers that carry its images (the sync route, OpenAI's): its resource and the
   * view it was rendered from (one read, handed to imageOfView). A job that did not succeed answers with
   * its own failure (502 comfyui_*, 409 canceled…; a code the API does not know as 500), with `details`.
   */
  async succeeded(jobId: string, caller: Caller, base: string, details: Record<string, unknown>): Promise<{ view: JobView; resource: JobResource }> {
    const view = await this.view(jobId, caller);
    const resource = this.render(view, base);
    if (resource.status !== 'succeeded') {
      const error = resource.error ?? { code: ErrorCode.InternalError, message: 'The job failed' };
      throw new ApiError(STATUS_BY_CODE[error.code] ? error.code : ErrorCode.InternalError, error.message, details);
    }
    return { view, resource };
  }

  /** The whole image, for answers that embed it (data URLs, b64_json), from a view the caller already read (and may see). */
  async imageOfView(view: JobView, index: number): Promise<{ bytes: Buffer; contentType: string; sha256: string }> {
    const ref = this.refOf(view, index);
    const stored = await this.store.getImage(ref.stored_by, index);
    if (!stored) throw this.imageExpired(view.id);
    return { bytes: stored.bytes, contentType: stored.contentType, sha256: ref.sha256 };
  }

  /**
   * The record's entry for one image of the caller's succeeded job (404 and 410 come from here), and
   * the job whose stored bytes they are: itself, or the earlier job a cached answer points at.
   */
  async imageRef(jobId: string, index: number, caller: Caller | 'signed-link'): Promise<StoredImageRef & { stored_by: string }> {
    // A verified signed link is the owner's permission, handed on: no key to compare.
    return this.refOf(caller === 'signed-link' ? await this.viewOfAnyOwner(jobId) : await this.view(jobId, caller), index);
  }

  private refOf(view: JobView, index: number): StoredImageRef & { stored_by: string } {
    const ref = view.result?.images.find((i) => i.index === index);
    if (view.status !== 'succeeded' || !ref) throw new ApiError(ErrorCode.ImageNotFound, `Job ${view.id} has no image ${index}`);
    return { ...ref, stored_by: view.result?.source_job_id ?? view.id };
  }

  /** Where a download comes from: a link the client follows (CDN, signed URL), or a stream from the store. */
  async imageSource(jobId: string, index: number): Promise<{ link: { url: string; expires: boolean } } | { stream: ImageStream }> {
    const link = await this.store.imageLink(jobId, index);
    if (link) return { link };
    const stream = await this.store.openImage(jobId, index);
    if (!stream) throw this.imageExpired(jobId);
    return { stream };
  }

  private imageExpired(jobId: string): ApiError {
    return new ApiError(ErrorCode.JobExpired, `The image of job ${jobId} has expired`);
  }

  private notFound(jobId: string): ApiError {
    return new ApiError(ErrorCode.JobNotFound, `No job ${jobId}`);
  }
}

/** The job was written but its replication is unconfirmed: it exists, and a retry must find it, not make another. */
export function isReplicationUnconfirmed(e: unknown): boolean {
  return e instanceof DomainError && e.code === ErrorCode.ReplicationUnconfirmed;
}
