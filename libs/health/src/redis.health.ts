import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type Redis from 'ioredis';
import { REDIS_CLIENT } from '@app/storage';
import { withTimeout } from './with-timeout';

/** Redis answers PING within the budget. */
@Injectable()
export class RedisHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
  ) {}

  async isHealthy(key = 'redis', timeoutMs = 500) {
    const indicator = this.health.check(key);
    const started = Date.now();
    try {
      const pong = await withTimeout(this.redis.ping(), timeoutMs, 'redis ping');
      return pong === 'PONG' ? indicator.up({ latency_ms: Date.now() - started }) : indicator.down({ message: `unexpected reply ${pong}` });
    } catch (e) {
      return indicator.down({ message: (e as Error).message });
    }
  }
}
