import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { CachedProbe, withTimeout } from '@app/health';
import { REDIS_CLIENT } from '@app/storage';

export interface RedisMemory {
  used_bytes: number;
  /** 0 when Redis has no `maxmemory` (it may grow until the machine runs out). */
  max_bytes: number;
  policy: string;
}

/** The fields of `INFO memory` that the metrics need; undefined when the reply lacks `used_memory`. */
export function parseRedisMemoryInfo(info: string): RedisMemory | undefined {
  const fields = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const used = Number(fields.get('used_memory'));
  if (!fields.has('used_memory') || !Number.isFinite(used)) return undefined;
  const max = Number(fields.get('maxmemory') ?? 0);
  return { used_bytes: used, max_bytes: Number.isFinite(max) ? max : 0, policy: fields.get('maxmemory_policy') ?? 'unknown' };
}

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
