import { Webhook } from 'standardwebhooks';
import type { components } from './generated/schema';
import { FicturesError } from './errors';

export type WebhookPayload = components['schemas']['WebhookPayloadDto'];

/**
 * Verifies a webhook delivery of the service (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature` over the exact body bytes, with the server's WEBHOOK_SECRET `whsec_…`) and
 * returns its parsed payload. Throws FicturesError `invalid_webhook_signature` when the signature
 * does not match or the timestamp is more than five minutes away. Pass the raw body, not a parsed
 * and re-serialised one.
 */
export function verifyWebhook(body: string | Uint8Array, headers: Headers | Record<string, string | string[] | undefined>, secret: string): WebhookPayload {
  const raw = typeof body === 'string' ? body : new TextDecoder().decode(body);
  const get = (name: string): string => {
    if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? '';
    const rec = headers as Record<string, string | string[] | undefined>;
    const key = Object.keys(rec).find((k) => k.toLowerCase() === name);
    const v = key === undefined ? undefined : rec[key];
    return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
  };
  try {
    return new Webhook(secret).verify(raw, {
      'webhook-id': get('webhook-id'),
      'webhook-timestamp': get('webhook-timestamp'),
      'webhook-signature': get('webhook-signature'),
    }) as WebhookPayload;
  } catch (e) {
    throw new FicturesError('invalid_webhook_signature', `The webhook could not be verified: ${(e as Error).message}`, 0, { cause: e });
  }
}
