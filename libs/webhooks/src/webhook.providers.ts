import type { FactoryProvider, ValueProvider } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Env } from '@app/config';
import { QueueName, RedisKeys, type WebhookJobData } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import { maxWebhookAttempts } from './retry-schedule';
import { WebhookEnqueuer } from './webhook-enqueuer';
import { WebhookStateStore } from './webhook-state.store';
import { dnsHostResolver, dnsLookup, type HostResolver, type LookupFunction } from './ssrf-guard';

/**
 * Name resolution is injected, never imported, so tests can stand in a resolver that answers a
 * public address at registration and 127.0.0.1 at delivery (DNS rebinding) without real DNS.
 */
export const WEBHOOK_HOST_RESOLVER = Symbol('WEBHOOK_HOST_RESOLVER');
export const WEBHOOK_DNS_LOOKUP = Symbol('WEBHOOK_DNS_LOOKUP');

/** The API's resolver for judging a webhook URL at submission (HostResolver). */
export const webhookHostResolverProvider: ValueProvider<HostResolver> = { provide: WEBHOOK_HOST_RESOLVER, useValue: dnsHostResolver };

/** The lookup the delivery sockets connect with; the guarded agents check every address it returns. */
export const webhookDnsLookupProvider: ValueProvider<LookupFunction> = { provide: WEBHOOK_DNS_LOOKUP, useValue: dnsLookup };

/** Delivery state of each job's webhook (written by deliveries, read by the job owner). */
export const webhookStateStoreProvider: FactoryProvider<WebhookStateStore> = {
  provide: WebhookStateStore,
  inject: [REDIS_CLIENT, RedisKeys, Env],
  useFactory: (redis: Redis, keys: RedisKeys, env: Env) => new WebhookStateStore(redis, keys, env.RESULT_TTL_SECONDS),
};

/** Puts webhook events on their queue; the webhook queue must be registered where this is provided. */
export const webhookEnqueuerProvider: FactoryProvider<WebhookEnqueuer> = {
  provide: WebhookEnqueuer,
  inject: [getQueueToken(QueueName.Webhook), WebhookStateStore, Env],
  useFactory: (queue: Queue<WebhookJobData>, states: WebhookStateStore, env: Env) =>
    new WebhookEnqueuer(queue, states, { attempts: maxWebhookAttempts(env.webhookRetryScheduleMs), resultTtlSeconds: env.RESULT_TTL_SECONDS }),
};
