import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import { Job, Queue } from 'bullmq';
import type Redis from 'ioredis';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import {
  logQueueErrors, buildJobResource, DEFAULT_WEBHOOK_EVENTS, GenerationJobData, GenerationResult, generationJobOptions, JobEventPublisher,
  JobDataOf, JobName, JobResource, JobResultOf, JobSnapshot, QueueName, RedisKeys, TERMINAL_STATUSES,
} from '@app/queue';
import { REDIS_CLIENT, ResultStore } from '@app/storage';
import { WebhookStateStore } from '@app/webhooks';
import { WorkflowRegistry } from '@app/workflows';
import { ApiError } from '../common/api-error';
import { WebhookEventsService } from '../webhooks/webhook-events.service';
import { ContentPolicy, enforceContentPolicy } from '../policy/content-policy';
import { JobQuota } from '../rate-limit/job-quota.service';
import type { CreateJobDto } from './dto/create-job.dto';
import { JobEventsService } from './job-events.service';

export interface Caller {
  /** API key id, or undefined when the server runs open. */
  owner?: string;
  priority?: number;
  /** The key's concurrency quota (jobs queued or running at once); none when open. */
  maxJobs?: number;
  requestId?: string;
}

const QUEUED_STATES = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children', 'paused']);

/** Submission, lookup, cancel and download of generation jobs. */
@Injectable()
export class JobsService {
  private readonly logger = new Logger(JobsService.name);
  private readonly keys: RedisKeys;
  private readonly events: JobEventPublisher;
  /** Webhook delivery state, written by the webhook worker, shown on the job resource. */
  private readonly webhookStates: WebhookStateStore;

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
    private readonly store: ResultStore,
    private readonly jobEvents: JobEventsService,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @InjectQueue(QueueName.Generation) private readonly queue: Queue<JobDataOf<JobName.Generate>, JobResultOf<JobName.Generate>>,
    @Optional() private readonly contentPolicy?: ContentPolicy,
    @Optional() private readonly quota?: JobQuota,
    @Optional() private readonly webhookEvents?: WebhookEventsService,
  ) {
    this.keys = new RedisKeys(env.QUEUE_PREFIX);
    this.events = new JobEventPublisher(redis, this.keys);
    logQueueErrors(queue, (m) => this.logger.warn(m));
    this.webhookStates = new WebhookStateStore(redis, this.keys, env.RESULT_TTL_SECONDS);
  }

  baseUrl(requestBase: string): string {
    return (this.env.PUBLIC_BASE_URL ?? requestBase).replace(/\/$/, '');
  }

  /** Validates against the model, checks back-pressure, enqueues. Nothing is written on bad input. */
  async submit(dto: CreateJobDto, caller: Caller, opts: { webhookUrl?: string; jobId?: string; requestBase?: string } = {}): Promise<Job<GenerationJobData, GenerationResult>> {
    const params = this.workflows.resolve(dto);
    await enforceContentPolicy(this.contentPolicy, params.prompt, params.negative_prompt);
    await this.assertRoomInQueue();
    const data: GenerationJobData = {
      params,
      owner: caller.owner,
      metadata: dto.metadata,
      submitted_at: Date.now(),
      request_id: caller.requestId,
      // The worker builds absolute links (webhook payloads, the final record) from it.
      ...(opts.requestBase !== undefined ? { base_url: this.baseUrl(opts.requestBase) } : {}),
      ...(opts.webhookUrl ? { webhook: { url: opts.webhookUrl, events: dto.webhook_events ?? [...DEFAULT_WEBHOOK_EVENTS] } } : {}),
    };
    const jobId = opts.jobId ?? randomUUID();
    // A slot of the key's quota first (429 quota_exceeded), given back if the job never gets queued.
    await this.quota?.reserve(caller, jobId);
    const job = await this.queue.add(
      JobName.Generate,
      data,
      generationJobOptions({
        jobId,
        priority: caller.priority,
        attempts: this.env.JOB_ATTEMPTS,
        backoffMs: this.env.JOB_BACKOFF_MS,
        resultTtlSeconds: this.env.RESULT_TTL_SECONDS,
      }),
    ).catch(async (e: unknown) => {
      await this.quota?.release(caller, jobId);
      throw e;
    });
    await this.quota?.confirm(caller, jobId);
    this.logger.log({ request_id: caller.requestId, job_id: jobId, msg: 'job queued', model: params.model, prompt_length: params.prompt.length });
    return job;
  }

  private async assertRoomInQueue(): Promise<void> {
    const counts = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed');
    const waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0);
    if (waiting >= this.env.QUEUE_MAX_WAITING) {
      throw new ApiError(ErrorCode.QueueFull, 'Too many jobs are waiting; try again later', { waiting }, { 'Retry-After': '30' });
    }
  }

  /** The job resource, for its owner only: anyone else gets the same 404 as for a job that never was. */
  async get(jobId: string, caller: Caller, base: string): Promise<JobResource> {
    const snapshot = await this.snapshot(jobId);
    if (snapshot) {
      this.assertOwner(snapshot.data.owner, caller, jobId);
      return buildJobResource(snapshot, this.baseUrl(base), await this.webhookStates.read(jobId, snapshot.data.webhook));
    }
    const record = (await this.store.getRecord(jobId)) as (JobResource & { owner?: string }) | undefined;
    if (record) {
      this.assertOwner(record.owner, caller, jobId);
      const { owner: _owner, ...resource } = record;
      // Deliveries go on after the job ended (retries): the record's copy is as old as the job's end.
      return { ...resource, webhook: (await this.webhookStates.read(jobId)) ?? resource.webhook ?? null };
    }
    if (await this.store.wasExpired(jobId)) {
      throw new ApiError(ErrorCode.JobExpired, `Job ${jobId} has expired; results are kept ${this.env.RESULT_TTL_SECONDS} s`);
    }
    throw this.notFound(jobId);
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

  async snapshot(jobId: string): Promise<JobSnapshot | undefined> {
    // State first, then the job: reading the job first can show "completed" without its result.
    const state = await this.queue.getJobState(jobId);
    if (state === 'unknown') return undefined;
    const job = await this.queue.getJob(jobId);
    if (!job) return undefined;
    // BullMQ prunes finished jobs lazily (when later jobs finish): past retention, treat it as gone.
    if (job.finishedOn && Date.now() - job.finishedOn > this.env.RESULT_TTL_SECONDS * 1000) return undefined;
    const canceled = (await this.redis.exists(this.keys.cancelFlag(jobId))) === 1 && state !== 'completed';
    const snapshot: JobSnapshot = {
      id: jobId,
      state: canceled && state !== 'active' ? 'canceled' : state,
      data: job.data,
      progress: job.progress as JobSnapshot['progress'],
      result: job.returnvalue,
      failedReason: job.failedReason,
      attemptsMade: job.attemptsMade,
      timestamp: job.timestamp,
      processedOn: job.processedOn,
      finishedOn: job.finishedOn,
      canceled: canceled && state !== 'active',
    };
    if (QUEUED_STATES.has(state) && !canceled) snapshot.queuePosition = await this.queuePosition(jobId, state);
    return snapshot;
  }

  /** 0 = next to run. Unprioritized waiting jobs go first, then the priority set in score order. */
  private async queuePosition(jobId: string, state: string): Promise<number | null> {
    const waitKey = this.queue.toKey('wait');
    if (state === 'waiting') {
      const [len, pos] = await Promise.all([this.redis.llen(waitKey), this.redis.lpos(waitKey, jobId)]);
      return pos === null ? null : len - 1 - pos;
    }
    if (state === 'prioritized') {
      const [len, rank] = await Promise.all([this.redis.llen(waitKey), this.redis.zrank(this.queue.toKey('prioritized'), jobId)]);
      return rank === null ? null : len + rank;
    }
    return null;
  }

  /**
   * Cancel: a queued job is removed and never runs; a running one is flagged and its worker is told
   * (through Redis) to interrupt ComfyUI. A finished job cannot be canceled.
   */
  async cancel(jobId: string, caller: Caller, base: string): Promise<JobResource> {
    const snapshot = await this.snapshot(jobId);
    if (!snapshot) {
      const record = (await this.store.getRecord(jobId)) as (JobResource & { owner?: string }) | undefined;
      if (record) {
        this.assertOwner(record.owner, caller, jobId);
        throw new ApiError(ErrorCode.JobFinished, `Job ${jobId} has already ended (${record.status})`);
      }
      throw this.notFound(jobId);
    }
    this.assertOwner(snapshot.data.owner, caller, jobId);
    const resource = buildJobResource(snapshot, this.baseUrl(base));
    if (TERMINAL_STATUSES.includes(resource.status)) {
      throw new ApiError(ErrorCode.JobFinished, `Job ${jobId} has already ended (${resource.status})`);
    }
    await this.redis.set(this.keys.cancelFlag(jobId), '1', 'EX', this.env.RESULT_TTL_SECONDS);
    if (resource.status === 'queued') {
      try {
        await this.queue.remove(jobId);
      } catch {
        // Taken by a worker meanwhile: it sees the flag before it submits, or hears the cancel below.
      }
      const canceled = { ...resource, status: 'canceled' as const, queue_position: null, finished_at: new Date().toISOString(), error: { code: ErrorCode.Canceled, message: 'The job was canceled' } };
      const stillThere = await this.queue.getJobState(jobId);
      if (stillThere === 'unknown') {
        await this.store.putRecord(jobId, { ...canceled, owner: snapshot.data.owner });
        await this.events.publish({ type: 'status', job_id: jobId, status: 'canceled', at: Date.now() });
        // No worker will see this job: the API enqueues its `canceled` webhook itself.
        await this.webhookEvents?.canceledWhileQueued(snapshot.data, canceled, caller.requestId);
        return { ...canceled, webhook: await this.webhookStates.read(jobId, snapshot.data.webhook) };
      }
    }
    await this.redis.publish(this.keys.cancelChannel, jobId);
    const ended = await this.waitForEnd(jobId, 2_000);
    return ended ? await this.get(jobId, caller, base) : resource;
  }

  /** Resolves true once the job is terminal, false after timeoutMs. Events first, polling as the net. */
  async waitForEnd(jobId: string, timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let done = false;
      const finish = (v: boolean) => {
        if (done) return;
        done = true;
        stop();
        clearTimeout(deadline);
        clearInterval(poll);
        resolve(v);
      };
      const check = async () => {
        try {
          const state = await this.queue.getJobState(jobId);
          if (state === 'completed' || state === 'failed') finish(true);
          else if (state === 'unknown' && (await this.store.getRecord(jobId))) finish(true);
        } catch {
          // Redis blinking: the deadline still ends the wait.
        }
      };
      const stop = this.jobEvents.listen(jobId, (e) => {
        if (e.type === 'status' && TERMINAL_STATUSES.includes(e.status)) void check();
      });
      const deadline = setTimeout(() => finish(false), timeoutMs);
      const poll = setInterval(() => void check(), 1_000);
      void check();
    });
  }

  async image(jobId: string, index: number, caller: Caller, base: string): Promise<{ bytes: Buffer; contentType: string; sha256: string }> {
    const job = await this.get(jobId, caller, base);
    const ref = job.images.find((i) => i.index === index);
    if (job.status !== 'succeeded' || !ref) throw new ApiError(ErrorCode.ImageNotFound, `Job ${jobId} has no image ${index}`);
    const stored = await this.store.getImage(jobId, index);
    if (!stored) throw new ApiError(ErrorCode.JobExpired, `The image of job ${jobId} has expired`);
    return { bytes: stored.bytes, contentType: stored.contentType, sha256: ref.sha256 };
  }

  private assertOwner(owner: string | undefined, caller: Caller, jobId: string): void {
    if ((owner ?? undefined) !== (caller.owner ?? undefined)) throw this.notFound(jobId);
  }

  private notFound(jobId: string): ApiError {
    return new ApiError(ErrorCode.JobNotFound, `No job ${jobId}`);
  }
}
