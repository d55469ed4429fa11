import { createHmac, randomBytes } from 'node:crypto';

/** Headers of one delivery attempt, as Standard Webhooks v1 names them. */
export interface WebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
  'content-type': 'application/json';
  'user-agent': string;
}

export const WEBHOOK_USER_AGENT = 'Fictures-Webhooks/1';

const SECRET_PREFIX = 'whsec_';

function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('webhook secret must start with whsec_');
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
  if (key.length === 0) throw new Error('webhook secret has no key after whsec_');
  return key;
}

/**
 * Standard Webhooks v1 signature: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`, keyed by the
 * base64-decoded part of the secret after `whsec_`. The body must be the exact bytes sent.
 */
export function signWebhook(secret: string, webhookId: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${webhookId}.${timestampSeconds}.${body}`, 'utf8').digest('base64');
  return `v1,${mac}`;
}

/** Every header of one attempt. Call it per attempt: the timestamp (and so the signature) is fresh each time. */
export function webhookHeaders(secret: string, webhookId: string, timestampSeconds: number, body: string): WebhookHeaders {
  return {
    'webhook-id': webhookId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': signWebhook(secret, webhookId, timestampSeconds, body),
    'content-type': 'application/json',
    'user-agent': WEBHOOK_USER_AGENT,
  };
}

/** A new secret: `whsec_` + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}
