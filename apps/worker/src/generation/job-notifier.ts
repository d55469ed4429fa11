import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import {
  buildJobResource, GenerationResult, JobResource, JobStatus, logQueueErrors, QueueName, RedisKeys, WebhookEvent, WebhookJobData,
} from '@app/queue';
import { REDIS_CLIENT, ResultStore } from '@app/storage';
import { maxWebhookAttempts, WebhookEnqueuer, WebhookStateStore } from '@app/webhooks';
import type { GenerationJob } from './generation.processor';

/**
 * What happens when a job changes state, inside the processor (not driven by queue events, which
 * can be trimmed): the final record is written to the result store, and webhook deliveries are
 * enqueued with deterministic ids, so a re-run after a crash cannot send an event twice. Enqueuing
 * is all the GPU worker does for a webhook; the webhook worker sends it.
 */
@Injectable()
export class JobNotifier {
  private readonly logger = new Logger(JobNotifier.name);
  private readonly webhooks: WebhookEnqueuer;

  constructor(
    private readonly env: Env,
    private readonly store: ResultStore,
    @InjectQueue(QueueName.Webhook) queue: Queue<WebhookJobData>,
    @Inject(REDIS_CLIENT) redis: Redis,
  ) {
    logQueueErrors(queue, (m) => this.logger.warn(m));
    const states = new WebhookStateStore(redis, new RedisKeys(env.QUEUE_PREFIX), env.RESULT_TTL_SECONDS);
    this.webhooks = new WebhookEnqueuer(queue, states, { attempts: maxWebhookAttempts(env.webhookRetryScheduleMs), resultTtlSeconds: env.RESULT_TTL_SECONDS });
  }

  /**
   * Origin of absolute links: PUBLIC_BASE_URL, else the origin the API was reached at when the job
   * was submitted (recorded in the job), so links in a webhook work from the receiver's side.
   */
  private baseUrl(job: GenerationJob): string {
    return (this.env.PUBLIC_BASE_URL ?? job.data.base_url ?? `http://localhost:${this.env.PORT}`).replace(/\/$/, '');
  }

  async running(job: GenerationJob): Promise<void> {
    const at = Date.now();
    if (!WebhookEnqueuer.wants(job.data.webhook, 'running')) return;
    await this.enqueueWebhook(job, 'running', at, this.resource(job, 'running', undefined, undefined, at));
  }

  async finished(job: GenerationJob, status: Exclude<JobStatus, 'queued' | 'running'>, result?: GenerationResult, failedReason?: string): Promise<void> {
    const at = Date.now();
    const resource = this.resource(job, status, result, failedReason, at);
    await this.store.putRecord(job.id as string, { ...resource, owner: job.data.owner });
    await this.enqueueWebhook(job, status, at, resource);
  }

  resource(job: GenerationJob, status: JobStatus, result?: GenerationResult, failedReason?: string, at: number = Date.now()): JobResource {
    const state = { queued: 'waiting', running: 'active', succeeded: 'completed', failed: 'failed', canceled: 'canceled' }[status];
    return buildJobResource(
      {
        id: job.id as string,
        state,
        data: job.data,
        progress: job.progress,
        result: result ?? null,
        failedReason,
        attemptsMade: job.attemptsMade + (status === 'running' ? 0 : 1),
        timestamp: job.timestamp,
        processedOn: job.processedOn,
        finishedOn: status === 'running' ? undefined : at,
      },
      this.baseUrl(job),
    );
  }

  /** Only a Redis write and a queue add: the GPU worker never waits for a receiver. */
  private async enqueueWebhook(job: GenerationJob, event: WebhookEvent, at: number, resource: JobResource): Promise<void> {
    const jobId = job.id as string;
    const webhookId = await this.webhooks.enqueue({ jobId, hook: job.data.webhook, event, occurredAt: at, resource });
    if (webhookId) this.logger.log({ job_id: jobId, msg: 'webhook enqueued', event, webhook_id: webhookId });
  }
}
