import { Inject, Injectable, Logger } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import { type GenerationJobData, type JobResource, logQueueErrors, QueueName, RedisKeys, type WebhookJobData } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import { maxWebhookAttempts, WebhookEnqueuer, WebhookStateStore } from '@app/webhooks';

/**
 * Webhook events the API itself is the witness of. Every other event is enqueued by the worker
 * that ran the job; a job canceled while still queued never reaches a worker.
 */
@Injectable()
export class WebhookEventsService {
  private readonly logger = new Logger(WebhookEventsService.name);
  private readonly enqueuer: WebhookEnqueuer;

  constructor(env: Env, @Inject(REDIS_CLIENT) redis: Redis, @InjectQueue(QueueName.Webhook) queue: Queue<WebhookJobData>) {
    logQueueErrors(queue, (m) => this.logger.warn(m));
    const states = new WebhookStateStore(redis, new RedisKeys(env.QUEUE_PREFIX), env.RESULT_TTL_SECONDS);
    this.enqueuer = new WebhookEnqueuer(queue, states, { attempts: maxWebhookAttempts(env.webhookRetryScheduleMs), resultTtlSeconds: env.RESULT_TTL_SECONDS });
  }

  /** The `canceled` event of a job removed from the queue before it ran. Never fails the cancel itself. */
  async canceledWhileQueued(data: GenerationJobData, resource: JobResource, requestId?: string): Promise<void> {
    try {
      const webhookId = await this.enqueuer.enqueue({ jobId: resource.id, hook: data.webhook, event: 'canceled', occurredAt: Date.now(), resource });
      if (webhookId) this.logger.log({ request_id: requestId, job_id: resource.id, msg: 'webhook enqueued', event: 'canceled', webhook_id: webhookId });
    } catch (e) {
      this.logger.error({ request_id: requestId, job_id: resource.id, msg: 'could not enqueue the canceled webhook', error: (e as Error).message });
    }
  }
}
