import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { CachedProbe, withTimeout } from '@app/health';
import { parseRedisMemoryInfo, REDIS_CLIENT, type RedisMemory } from '@app/storage';

// Shared with the workers' start-up check (libs/storage); re-exported for the API's metrics and admission.
export { parseRedisMemoryInfo, type RedisMemory };

/** How long one INFO answer is reused: several scrapers (and API replicas) cost Redis one call per window. */
export const REDIS_MEMORY_CACHE_MS = 5_000;
const REDIS_MEMORY_TIMEOUT_MS = 500;

/**
 * Redis memory as the API's metrics report it. Every API instance sees the same Redis, so the
 * figure is fleet-wide; the cache keeps a scrape storm from turning into an INFO storm.
 */
@Injectable()
export class RedisMemoryProbe {
  private readonly probe: CachedProbe<RedisMemory | undefined>;

  constructor(@Inject(REDIS_CLIENT) redis: Pick<Redis, 'info'>) {
    this.probe = new CachedProbe(
      () => withTimeout(redis.info('memory'), REDIS_MEMORY_TIMEOUT_MS, 'redis INFO memory').then(parseRedisMemoryInfo),
      REDIS_MEMORY_CACHE_MS,
    );
  }

  /** Undefined while Redis does not answer: the gauges then carry no sample rather than a stale one. */
  read(): Promise<RedisMemory | undefined> {
    return this.probe.get().catch(() => undefined);
  }
}
