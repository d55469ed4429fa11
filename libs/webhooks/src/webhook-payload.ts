import type { JobResource, WebhookEvent } from '@app/queue';

/** Event types, one per job event: image.job.running, image.job.succeeded, image.job.failed, image.job.canceled. */
export type WebhookEventType = `image.job.${WebhookEvent}`;

/**
 * The body of every delivery, as Standard Webhooks recommends: `type`, `timestamp` (ISO 8601, when
 * the event happened; each attempt's own time is the webhook-timestamp header) and `data`, the job
 * resource at that moment, with absolute image links and no image bytes.
 */
export interface WebhookPayload {
  type: WebhookEventType;
  timestamp: string;
  data: JobResource;
}

export function webhookEventType(event: WebhookEvent): WebhookEventType {
  return `image.job.${event}`;
}

/** Serialised once, when the event happens: every attempt then signs and sends these same bytes. */
export function serializeWebhookPayload(event: WebhookEvent, occurredAtMs: number, data: JobResource): string {
  const payload: WebhookPayload = { type: webhookEventType(event), timestamp: new Date(occurredAtMs).toISOString(), data };
  return JSON.stringify(payload);
}
