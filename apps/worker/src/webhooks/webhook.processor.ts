import { createHash } from 'node:crypto';
import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DelayedError, Job, UnrecoverableError, Worker } from 'bullmq';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import {
  bullConnectionFor, QueueName, RedisKeys, watchBullMq, WebhookEventState, WebhookJobData, WebhookJobResult,
} from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import {
  clampRetryAfterMs, createGuardedAgents, type DeliveryAttempt, type GuardedAgents, type LookupFunction, MAX_RETRY_AFTER_DEFERRALS,
  nextRetryDelayMs, parseAllowedHosts, redactUrl, sendWebhook, WEBHOOK_DNS_LOOKUP, WebhookStateStore,
} from '@app/webhooks';
import { runWithJobContext } from '../logging/job-context';
import { recordWebhookDelivery } from '../metrics/webhook-metrics';

export type WebhookJob = Job<WebhookJobData, WebhookJobResult>;

/** A failed attempt to retry on the schedule. Carries Retry-After to the backoff strategy, which never waits less. */
export class WebhookAttemptError extends Error {
  constructor(
    readonly errorClass: string,
    readonly retryAfterMs?: number,
  ) {
    super(`webhook delivery failed: ${errorClass}`);
    this.name = 'WebhookAttemptError';
  }
}

/** Why a delivery stopped without a request: an earlier 410 from the same URL. */
export const ENDPOINT_GONE = 'endpoint_gone';

/**
 * Delivers webhook events: one BullMQ Worker on the `webhook` queue, apart from the GPU workers and
 * with its own concurrency, so a slow or dead receiver never delays a generation job.
 *
 * One job = one event. Each run is one signed attempt (fresh webhook-timestamp and signature, same
 * webhook-id). 2xx delivers; 410 stops for good (and disables that URL); a blocked destination
 * stops for good; 429/503 with Retry-After is postponed without using an attempt (moveToDelayed +
 * DelayedError, a bounded number of times); anything else is retried on WEBHOOK_RETRY_SCHEDULE_MS
 * through BullMQ attempts and the backoffStrategy below. The outcome of every attempt is written to
 * the job's webhook state, which the API shows on the job resource.
 */
@Injectable()
export class WebhookProcessor implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(WebhookProcessor.name);
  private readonly agents: GuardedAgents;
  private readonly schedule: number[];
  private worker?: Worker<WebhookJobData, WebhookJobResult>;

  constructor(
    private readonly env: Env,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly states: WebhookStateStore,
    @Inject(WEBHOOK_DNS_LOOKUP) lookup: LookupFunction,
  ) {
    this.schedule = env.webhookRetryScheduleMs;
    // Every connection goes through these: each resolved address is checked at connect time.
    this.agents = createGuardedAgents({ allowedHosts: parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS), lookup });
  }

  onApplicationBootstrap(): void {
    if (!this.env.WEBHOOK_SECRET) {
      // Deliveries wait in the queue for a worker that can sign them; the API refuses new webhook_urls.
      this.logger.warn('WEBHOOK_SECRET is not set: this worker delivers no webhooks');
      return;
    }
    this.worker = new Worker<WebhookJobData, WebhookJobResult>(QueueName.Webhook, (job, token) => runWithJobContext(job.data.job_id, () => this.process(job, token)), {
      connection: bullConnectionFor(this.env, 'worker'),
      prefix: this.env.QUEUE_PREFIX,
      concurrency: this.env.WEBHOOK_CONCURRENCY,
      lockDuration: this.env.WORKER_LOCK_DURATION_MS,
      stalledInterval: this.env.WORKER_STALLED_INTERVAL_MS,
      maxStalledCount: this.env.WORKER_MAX_STALLED_COUNT,
      name: 'webhooks',
      settings: { backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => this.backoffMs(attemptsMade, err) },
    });
    this.worker.on('failed', (job, err) => void this.onFailed(job, err));
    // Connection errors are the process's Redis state's to report (once per outage); the rest are ours.
    watchBullMq(this.worker, (err) => this.logger.error({ msg: 'webhook worker error', error: err.message }));
    this.logger.log(`webhook worker: concurrency ${this.env.WEBHOOK_CONCURRENCY}, ${this.schedule.length + 1} attempts`);
  }

  /** Lets in-flight attempts finish (each ends within WEBHOOK_TIMEOUT_MS) while Redis is still there. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.worker?.close();
  }

  /** Delay before the next attempt: the schedule with jitter, never less than the receiver's Retry-After. -1: no more. */
  backoffMs(attemptsMade: number, err?: Error): number {
    const delay = nextRetryDelayMs(attemptsMade, this.schedule);
    if (delay === null) return -1;
    const retryAfterMs = (err as Partial<WebhookAttemptError> | undefined)?.retryAfterMs;
    return retryAfterMs === undefined ? delay : Math.max(delay, clampRetryAfterMs(retryAfterMs));
  }

  async process(job: WebhookJob, token: string | undefined): Promise<WebhookJobResult> {
    const d = job.data;
    const secret = this.env.WEBHOOK_SECRET;
    // Checked at start-up; a job can only get here through the worker created with a secret.
    if (!secret) throw new Error('WEBHOOK_SECRET is not set');
    // Every start is one request, including starts after a Retry-After postponement.
    const attempts = Math.max(job.attemptsStarted, job.attemptsMade + 1);

    const goneKey = this.keys.webhookGone(sha256(d.url));
    if (await this.redis.exists(goneKey)) {
      await this.record(job, { status: 'failed', attempts: attempts - 1, last_status_code: null, last_error: ENDPOINT_GONE, delivered_at: null });
      this.log(job, attempts, 'skipped', { error: ENDPOINT_GONE });
      throw new UnrecoverableError(ENDPOINT_GONE);
    }

    const attempt = await sendWebhook({ url: d.url, webhookId: d.webhook_id, body: d.body, secret, timeoutMs: this.env.WEBHOOK_TIMEOUT_MS, agents: this.agents });
    const state: WebhookEventState = { status: 'pending', attempts, last_status_code: attempt.status ?? null, last_error: attempt.error ?? null, delivered_at: null };

    switch (attempt.outcome) {
      case 'delivered':
        recordWebhookDelivery('delivered');
        await this.record(job, { ...state, status: 'delivered', delivered_at: new Date().toISOString() });
        this.log(job, attempts, 'delivered', attempt);
        return { status: attempt.status ?? 0, attempts };

      case 'gone':
        recordWebhookDelivery('gone');
        // Standard Webhooks: 410 means the endpoint is gone; nothing more goes to this URL for a while.
        await this.redis.set(goneKey, '1', 'EX', this.env.RESULT_TTL_SECONDS);
        await this.record(job, { ...state, status: 'failed' });
        this.log(job, attempts, 'gone', attempt);
        throw new UnrecoverableError(attempt.error ?? 'http_410');

      case 'blocked':
        recordWebhookDelivery('blocked');
        // The destination is not allowed (SSRF guard): a retry must never turn it into a success.
        await this.record(job, { ...state, status: 'failed' });
        this.log(job, attempts, 'blocked', attempt);
        throw new UnrecoverableError(attempt.error ?? 'blocked_destination');

      case 'retry': {
        const deferrals = job.attemptsStarted - 1 - job.attemptsMade;
        if (attempt.retryAfterMs !== undefined && deferrals < MAX_RETRY_AFTER_DEFERRALS && token) {
          const delayMs = clampRetryAfterMs(attempt.retryAfterMs);
          recordWebhookDelivery('retry');
          await this.record(job, state);
          this.log(job, attempts, 'postponed', { ...attempt, retry_in_ms: delayMs });
          await job.moveToDelayed(Date.now() + delayMs, token);
          throw new DelayedError();
        }
        const final = job.attemptsMade + 1 >= (job.opts.attempts ?? 1) || nextRetryDelayMs(job.attemptsMade + 1, this.schedule) === null;
        recordWebhookDelivery(final ? 'exhausted' : 'retry');
        await this.record(job, { ...state, status: final ? 'gave_up' : 'pending' });
        this.log(job, attempts, final ? 'gave_up' : 'retry', attempt);
        throw new WebhookAttemptError(attempt.error ?? 'failed', attempt.retryAfterMs);
      }
    }
  }

  /** A job BullMQ failed for good without our say (stalled too often, Redis trouble mid-attempt): show it. */
  private async onFailed(job: WebhookJob | undefined, err: Error): Promise<void> {
    if (!job || job.finishedOn === undefined || job.finishedOn === null) return;
    try {
      const current = await this.states.get(job.data.job_id, job.data.event);
      if (current && current.status !== 'pending') return;
      await this.record(job, {
        status: 'gave_up',
        attempts: current?.attempts ?? job.attemptsMade,
        last_status_code: current?.last_status_code ?? null,
        last_error: current?.last_error ?? 'internal_error',
        delivered_at: null,
      });
      this.logger.warn({ job_id: job.data.job_id, webhook_job_id: job.id, msg: 'webhook delivery failed for good', event: job.data.event, error: err.message });
    } catch (e) {
      this.logger.error({ job_id: job.data.job_id, webhook_job_id: job.id, msg: 'could not record webhook state', error: (e as Error).message });
    }
  }

  private record(job: WebhookJob, state: WebhookEventState): Promise<void> {
    return this.states.record(job.data.job_id, job.data.url, job.data.event, state);
  }

  private log(job: WebhookJob, attempt: number, outcome: string, extra: Partial<DeliveryAttempt> & { retry_in_ms?: number }): void {
    const line = {
      job_id: job.data.job_id,
      webhook_job_id: job.id,
      webhook_id: job.data.webhook_id,
      event: job.data.event,
      url: redactUrl(job.data.url),
      attempt,
      msg: `webhook ${outcome}`,
      status: extra.status,
      error: extra.error,
      duration_ms: extra.durationMs,
      retry_in_ms: extra.retry_in_ms,
    };
    if (outcome === 'delivered') this.logger.log(line);
    else this.logger.warn(line);
  }
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
