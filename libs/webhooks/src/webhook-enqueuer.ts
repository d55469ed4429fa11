import type { Queue } from 'bullmq';
import {
  JobName, type JobResource, type WebhookEvent, type WebhookJobData, webhookJobOptions,
} from '@app/queue';
import { serializeWebhookPayload } from './webhook-payload';
import type { WebhookStateStore, WebhookSubscription } from './webhook-state.store';

export interface WebhookEventInput {
  jobId: string;
  /** The job's subscription (job data `webhook`); nothing is enqueued without one. */
  hook: WebhookSubscription | undefined;
  event: WebhookEvent;
  /** Epoch ms when the event happened: the payload's `timestamp`. */
  occurredAt: number;
  /** The job resource at that moment, with absolute links. */
  resource: JobResource;
}

/**
 * Puts one event on the webhook queue, if the job asked for it. The body is serialised here, once,
 * so every attempt signs the same bytes; the job id is deterministic, so enqueuing the same event
 * again (a job that runs again after a crash) is a no-op. Used by the worker (running, succeeded,
 * failed, canceled while running) and by the API (canceled while queued).
 */
export class WebhookEnqueuer {
  constructor(
    private readonly queue: Queue<WebhookJobData>,
    private readonly states: WebhookStateStore,
    private readonly opts: { attempts: number; resultTtlSeconds: number },
  ) {}

  static wants(hook: WebhookSubscription | undefined, event: WebhookEvent): boolean {
    return hook?.events.includes(event) ?? false;
  }

  /** Returns the webhook-id, or undefined when the job did not ask for this event. */
  async enqueue(e: WebhookEventInput): Promise<string | undefined> {
    if (!e.hook || !WebhookEnqueuer.wants(e.hook, e.event)) return undefined;
    const data: WebhookJobData = {
      job_id: e.jobId,
      event: e.event,
      webhook_id: `msg_${e.jobId}_${e.event}`,
      url: e.hook.url,
      body: serializeWebhookPayload(e.event, e.occurredAt, { ...e.resource, webhook: null }),
    };
    // 'pending' first: once the delivery job exists, its processor may record an outcome at any moment.
    await this.states.enqueued(e.jobId, e.hook, e.event);
    await this.queue.add(
      JobName.DeliverWebhook,
      data,
      webhookJobOptions({ generationJobId: e.jobId, event: e.event, attempts: this.opts.attempts, resultTtlSeconds: this.opts.resultTtlSeconds }),
    );
    return data.webhook_id;
  }
}
