import type { ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import type Redis from 'ioredis';

const COMMAND = 'ficturesThrottle';
type Throttle = Record<typeof COMMAND, (hitKey: string, blockKey: string, name: string, ttl: number, limit: number, blockDuration: number) => Promise<unknown>>;

/**
 * @nest-lab/throttler-storage-redis's counters (same script, keys and answers), run as a defined
 * command: EVALSHA of a loaded script instead of sending and hashing the whole script with EVAL on
 * every request that is rate limited.
 */
export class RedisThrottlerStorage implements ThrottlerStorage {
  constructor(private readonly redis: Redis) {
    if (!(COMMAND in redis)) {
      // The library's script, taken from it so the two cannot drift apart.
      const lua = (ThrottlerStorageRedisService.prototype as unknown as { getScriptSrc(): string }).getScriptSrc();
      redis.defineCommand(COMMAND, { numberOfKeys: 2, lua });
    }
  }

  async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    const hitKey = `{${key}:${throttlerName}}:hits`;
    const blockKey = `{${key}:${throttlerName}}:blocked`;
    const results = await (this.redis as unknown as Throttle)[COMMAND](hitKey, blockKey, throttlerName, ttl, limit, blockDuration);
    if (!Array.isArray(results) || results.length !== 4 || !results.every((n) => typeof n === 'number')) {
      throw new TypeError(`Expected four numbers from the rate limit script, got ${JSON.stringify(results)}`);
    }
    const [totalHits, timeToExpire, isBlocked, timeToBlockExpire] = results as number[];
    return { totalHits, timeToExpire: Math.ceil(timeToExpire / 1000), isBlocked: isBlocked === 1, timeToBlockExpire: Math.ceil(timeToBlockExpire / 1000) };
  }
}
