import { Injectable, Logger } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import { Queue } from 'bullmq';
import { Env } from '@app/config';
import {
  buildJobResource, GenerationResult, JobName, JobStatus, QueueName, WebhookEvent, WebhookJobData,
} from '@app/queue';
import { ResultStore } from '@app/storage';
import type { GenerationJob } from './generation.processor';

/**
 * What happens when a job changes state, inside the processor (not driven by queue events, which
 * can be trimmed): the final record is written to the result store, and webhook deliveries are
 * enqueued with deterministic ids, so a re-run after a crash cannot send an event twice.
 */
@Injectable()
export class JobNotifier {
  private readonly logger = new Logger(JobNotifier.name);

  constructor(
    private readonly env: Env,
    private readonly store: ResultStore,
    @InjectQueue(QueueName.Webhook) private readonly webhooks: Queue<WebhookJobData>,
  ) {}

  private get baseUrl(): string {
    return (this.env.PUBLIC_BASE_URL ?? `http://localhost:${this.env.PORT}`).replace(/\/$/, '');
  }

  async running(job: GenerationJob): Promise<void> {
    await this.enqueueWebhook(job, 'running', 'running');
  }

  async finished(job: GenerationJob, status: Exclude<JobStatus, 'queued' | 'running'>, result?: GenerationResult, failedReason?: string): Promise<void> {
    const resource = this.resource(job, status, result, failedReason);
    await this.store.putRecord(job.id as string, { ...resource, owner: job.data.owner });
    await this.enqueueWebhook(job, status, status, result, failedReason);
  }

  resource(job: GenerationJob, status: JobStatus, result?: GenerationResult, failedReason?: string) {
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
        finishedOn: status === 'running' ? undefined : Date.now(),
      },
      this.baseUrl,
    );
  }

  private async enqueueWebhook(job: GenerationJob, event: WebhookEvent, status: JobStatus, result?: GenerationResult, failedReason?: string): Promise<void> {
    const hook = job.data.webhook;
    if (!hook || !hook.events.includes(event)) return;
    const jobId = job.id as string;
    const webhookId = `msg_${jobId}_${event}`;
    const body = JSON.stringify({
      type: `image.job.${event}`,
      timestamp: new Date().toISOString(),
      data: this.resource(job, status, result, failedReason),
    });
    const data: WebhookJobData = { job_id: jobId, event, webhook_id: webhookId, url: hook.url, body };
    await this.webhooks.add(JobName.DeliverWebhook, data, {
      jobId: `wh-${jobId}-${event}`,
      priority: 1,
      attempts: 1,
      removeOnComplete: { age: this.env.RESULT_TTL_SECONDS },
      removeOnFail: { age: this.env.RESULT_TTL_SECONDS },
    });
    this.logger.log({ job_id: jobId, msg: 'webhook enqueued', event });
  }
}
