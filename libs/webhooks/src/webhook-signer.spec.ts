import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { generateWebhookSecret, signWebhook, webhookHeaders, WEBHOOK_USER_AGENT } from './webhook-signer';

// The example secret of the Standard Webhooks spec.
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const BODY = '{"type":"job.succeeded","job_id":"j_1","images":["https://x/1.png?sig=abc"]}';

describe('signWebhook', () => {
  it('matches the reference library byte for byte', () => {
    const ts = 1_700_000_000;
    expect(signWebhook(SECRET, 'msg_1', ts, BODY)).toBe(new Webhook(SECRET).sign('msg_1', new Date(ts * 1000), BODY));
  });

  it('refuses a secret without the whsec_ prefix or without a key', () => {
    expect(() => signWebhook('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'id', 1, BODY)).toThrow(/whsec_/);
    expect(() => signWebhook('whsec_', 'id', 1, BODY)).toThrow();
  });
});

describe('webhookHeaders', () => {
  const now = Math.floor(Date.now() / 1000);

  it('produces headers that standardwebhooks verifies', () => {
    const headers = webhookHeaders(SECRET, 'msg_2', now, BODY);
    expect(headers).toMatchObject({
      'webhook-id': 'msg_2',
      'webhook-timestamp': String(now),
      'content-type': 'application/json',
      'user-agent': WEBHOOK_USER_AGENT,
    });
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(new Webhook(SECRET).verify(BODY, { ...headers })).toEqual(JSON.parse(BODY));
  });

  it('is rejected by standardwebhooks when the body was tampered with', () => {
    const headers = webhookHeaders(SECRET, 'msg_3', now, BODY);
    const tampered = BODY.replace('j_1', 'j_2');
    expect(() => new Webhook(SECRET).verify(tampered, { ...headers })).toThrow(WebhookVerificationError);
    // Whitespace counts too: the signature covers the exact bytes.
    expect(() => new Webhook(SECRET).verify(`${BODY}\n`, { ...headers })).toThrow(WebhookVerificationError);
  });

  it('is rejected under another secret, another id, or a stale timestamp', () => {
    const headers = webhookHeaders(SECRET, 'msg_4', now, BODY);
    expect(() => new Webhook(generateWebhookSecret()).verify(BODY, { ...headers })).toThrow(WebhookVerificationError);
    expect(() => new Webhook(SECRET).verify(BODY, { ...headers, 'webhook-id': 'msg_5' })).toThrow(WebhookVerificationError);
    const stale = webhookHeaders(SECRET, 'msg_4', now - 600, BODY);
    expect(() => new Webhook(SECRET).verify(BODY, { ...stale })).toThrow(WebhookVerificationError);
  });

  it('signs each attempt afresh: same id, new timestamp, new signature', () => {
    const a = webhookHeaders(SECRET, 'msg_6', now, BODY);
    const b = webhookHeaders(SECRET, 'msg_6', now + 5, BODY);
    expect(b['webhook-id']).toBe(a['webhook-id']);
    expect(b['webhook-timestamp']).not.toBe(a['webhook-timestamp']);
    expect(b['webhook-signature']).not.toBe(a['webhook-signature']);
  });
});

describe('generateWebhookSecret', () => {
  it('is whsec_ + base64 of 32 random bytes, accepted by config and by standardwebhooks', () => {
    const s = generateWebhookSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    // The WEBHOOK_SECRET rule of libs/config.
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/=]{32,}$/);
    expect(Buffer.from(s.slice('whsec_'.length), 'base64')).toHaveLength(32);
    expect(generateWebhookSecret()).not.toBe(s);
    const headers = webhookHeaders(s, 'msg_7', Math.floor(Date.now() / 1000), BODY);
    expect(() => new Webhook(s).verify(BODY, { ...headers })).not.toThrow();
  });
});
