import { Counter } from 'prom-client';
import type { DeliveryOutcome } from '@app/webhooks';

/**
 * Outcome of one webhook delivery attempt: the sender's outcomes ('delivered', 'retry', 'gone',
 * 'blocked'), plus 'exhausted' when the last retry has failed.
 */
export type WebhookDeliveryOutcome = DeliveryOutcome | 'exhausted';

/**
 * Module-level so the webhook processor can count without injecting anything; WorkerMetrics adds
 * it to the worker's registry (and so to the worker's /metrics).
 */
export const webhookDeliveries = new Counter<'outcome'>({
  name: 'fictures_webhook_deliveries_total',
  help: 'Webhook delivery attempts by outcome (delivered, retry, gone, blocked, exhausted)',
  labelNames: ['outcome'],
  registers: [],
});

/** Call once per delivery attempt, from the webhook processor. */
export function recordWebhookDelivery(outcome: WebhookDeliveryOutcome): void {
  webhookDeliveries.inc({ outcome });
}
