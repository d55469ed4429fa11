import { DynamicModule, type ExecutionContext, Logger, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ThrottlerModule, type ThrottlerModuleOptions } from '@nestjs/throttler';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import { RedisKeys } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { ApiKeyStore } from '../auth/api-key.store';
import type { AuthenticatedRequest } from '../auth/auth.types';
import { BlocklistContentPolicy } from '../policy/blocklist.content-policy';
import { ContentPolicy } from '../policy/content-policy';
import { FailOpenThrottlerStorage } from '../rate-limit/fail-open-throttler.storage';
import { JobQuota } from '../rate-limit/job-quota.service';
import { RedisThrottlerStorage } from '../rate-limit/redis-throttler.storage';
import { RATE_LIMIT_KINDS, type RateLimitKind } from '../rate-limit/rate-limit-kind';
import { RATE_LIMIT_WINDOW_MS, RateLimitGuard } from '../rate-limit/rate-limit.guard';

function throttlerOptions(env: Env, redis: Redis): ThrottlerModuleOptions {
  const keys = new RedisKeys(env.QUEUE_PREFIX);
  if (env.RATE_LIMIT_PER_MINUTE !== undefined) {
    new Logger('RateLimit').warn('RATE_LIMIT_PER_MINUTE is deprecated: set RATE_LIMIT_SUBMIT_PER_MINUTE and RATE_LIMIT_READ_PER_MINUTE');
  }
  const budget: Record<RateLimitKind, (ctx: ExecutionContext) => number> = {
    // A key's own --rpm is its submission budget: submissions are what a key is sized by.
    submit: (ctx) => ctx.switchToHttp().getRequest<AuthenticatedRequest>().apiKey?.rpm ?? env.RATE_LIMIT_SUBMIT_PER_MINUTE,
    read: () => env.RATE_LIMIT_READ_PER_MINUTE,
  };
  return {
    // RateLimitGuard applies only the throttler of the route's kind.
    throttlers: RATE_LIMIT_KINDS.map((kind) => ({ name: kind, ttl: RATE_LIMIT_WINDOW_MS, limit: budget[kind] })),
    // One counter per key id (or client IP) for the whole API, under the deployment's prefix; the
    // storage appends the throttler's name, so each budget has its own.
    generateKey: (_ctx, tracker) => keys.rateLimit(tracker),
    // The shared fail-fast client: a Redis outage is an error at once, never a hanging request.
    storage: new FailOpenThrottlerStorage(new RedisThrottlerStorage(redis)),
  };
}

/**
 * Everything that makes the API safe to expose: API keys (global guard), the rate limit (global
 * guard, after authentication), the per-key job quota and the content policy (both used by
 * JobsService at submission). Guards are global so that every route, including ones added later,
 * is covered; health, docs and metrics are public by path (auth/public-route.ts).
 */
@Module({})
export class SecurityModule {
  static forRoot(): DynamicModule {
    return {
      module: SecurityModule,
      imports: [
        ThrottlerModule.forRootAsync({
          inject: [Env, REDIS_CLIENT],
          useFactory: throttlerOptions,
        }),
      ],
      providers: [
        {
          provide: ApiKeyStore,
          inject: [REDIS_CLIENT, RedisKeys],
          useFactory: (redis: Redis, keys: RedisKeys) => new ApiKeyStore(redis, keys),
        },
        {
          provide: ContentPolicy,
          inject: [Env],
          useFactory: (env: Env): ContentPolicy => {
            const policy = BlocklistContentPolicy.fromConfig({ file: env.CONTENT_POLICY_FILE, list: env.CONTENT_POLICY_BLOCKLIST });
            if (policy.size) new Logger('ContentPolicy').log(`blocklist content policy: ${policy.size} rule(s)`);
            return policy;
          },
        },
        JobQuota,
        // Order matters: authentication first, so the rate limit counts per key id.
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_GUARD, useClass: RateLimitGuard },
      ],
      exports: [ApiKeyStore, ContentPolicy, JobQuota],
    };
  }
}
