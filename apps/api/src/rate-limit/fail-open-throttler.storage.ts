import { Logger } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { isRedisUnavailable } from '../common/api-error';

/**
 * Wraps the Redis throttler storage so that a Redis outage does not turn every request into an
 * error: while Redis is away the limit is not enforced (fail open) and the outage is logged once.
 * Nothing is lost by it: authentication and every job route need Redis themselves and answer 503,
 * so only Redis-free routes (the model list) go unthrottled for the length of the outage.
 */
export class FailOpenThrottlerStorage implements ThrottlerStorage {
  private readonly logger = new Logger('RateLimit');
  private failing = false;

  constructor(private readonly inner: ThrottlerStorage) {}

  async increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerStorageRecord> {
    try {
      const record = await this.inner.increment(key, ttl, limit, blockDuration, throttlerName);
      if (this.failing) {
        this.failing = false;
        this.logger.log('rate limiting restored (Redis is back)');
      }
      return record;
    } catch (e) {
      if (!isRedisUnavailable(e)) throw e;
      if (!this.failing) {
        this.failing = true;
        this.logger.warn(`rate limiting suspended: Redis unavailable (${(e as Error).message}); requests pass unthrottled`);
      }
      return { totalHits: 0, timeToExpire: Math.ceil(ttl / 1000), isBlocked: false, timeToBlockExpire: 0 };
    }
  }
}
