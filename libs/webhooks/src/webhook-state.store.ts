import type Redis from 'ioredis';
import type { RedisKeys, WebhookEvent, WebhookEventState, WebhookState } from '@app/queue';
import { redactUrl } from './redact-url';

const URL_FIELD = 'url';
const EVENTS_FIELD = 'events';
const EVENT_PREFIX = 'event:';

/** The webhook a job was submitted with, as its job data holds it. */
export interface WebhookSubscription {
  url: string;
  events: readonly string[];
}

/**
 * Delivery state of one job's webhook, kept in one Redis hash (RedisKeys.webhookState) for
 * RESULT_TTL_SECONDS after its last change, so it outlives the BullMQ jobs that produced it.
 * Fields: `url` (already redacted), `events` (JSON), and `event:<name>` (JSON WebhookEventState)
 * per event. Each event field has a single writer at a time (its delivery job), so plain HSETs suffice.
 */
export class WebhookStateStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
  ) {}

  /**
   * Marks an event pending when its delivery is enqueued. HSETNX: a generation job that runs again
   * after a crash must not turn a delivered event back into a pending one.
   */
  async enqueued(jobId: string, hook: WebhookSubscription, event: WebhookEvent): Promise<void> {
    const key = this.keys.webhookState(jobId);
    const pending: WebhookEventState = { status: 'pending', attempts: 0, last_status_code: null, last_error: null, delivered_at: null };
    await this.redis
      .multi()
      .hsetnx(key, URL_FIELD, redactUrl(hook.url))
      .hsetnx(key, EVENTS_FIELD, JSON.stringify(hook.events))
      .hsetnx(key, EVENT_PREFIX + event, JSON.stringify(pending))
      .expire(key, this.ttlSeconds)
      .exec();
  }

  /** Records the state of an event after an attempt (and refreshes the TTL). */
  async record(jobId: string, url: string, event: WebhookEvent, state: WebhookEventState): Promise<void> {
    const key = this.keys.webhookState(jobId);
    await this.redis
      .multi()
      .hsetnx(key, URL_FIELD, redactUrl(url))
      .hset(key, EVENT_PREFIX + event, JSON.stringify(state))
      .expire(key, this.ttlSeconds)
      .exec();
  }

  async get(jobId: string, event: WebhookEvent): Promise<WebhookEventState | undefined> {
    const raw = await this.redis.hget(this.keys.webhookState(jobId), EVENT_PREFIX + event);
    return raw ? parseEventState(raw) : undefined;
  }

  /**
   * The state as the job resource shows it. Without a hash yet (no event has happened), the
   * subscription from the job data gives url and events with no deliveries; without either, null.
   */
  async read(jobId: string, subscription?: WebhookSubscription): Promise<WebhookState | null> {
    const fields = await this.redis.hgetall(this.keys.webhookState(jobId));
    if (Object.keys(fields).length === 0) {
      return subscription ? { url: redactUrl(subscription.url), events: [...subscription.events], deliveries: {} } : null;
    }
    const deliveries: Record<string, WebhookEventState> = {};
    for (const [field, value] of Object.entries(fields)) {
      if (!field.startsWith(EVENT_PREFIX)) continue;
      const state = parseEventState(value);
      if (state) deliveries[field.slice(EVENT_PREFIX.length)] = state;
    }
    return {
      url: fields[URL_FIELD] ?? (subscription ? redactUrl(subscription.url) : ''),
      events: parseEvents(fields[EVENTS_FIELD]) ?? [...(subscription?.events ?? [])],
      deliveries,
    };
  }
}

function parseEventState(raw: string): WebhookEventState | undefined {
  try {
    const v = JSON.parse(raw) as WebhookEventState;
    return v && typeof v === 'object' && typeof v.status === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

function parseEvents(raw: string | undefined): string[] | undefined {
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as unknown;
    return Array.isArray(v) ? v.filter((e): e is string => typeof e === 'string') : undefined;
  } catch {
    return undefined;
  }
}
