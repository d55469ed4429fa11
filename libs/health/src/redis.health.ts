import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type Redis from 'ioredis';
import { Env } from '@app/config';
import { REDIS_CLIENT } from '@app/storage';
import { CachedProbe } from './cached-probe';
import { healthSettings } from './health-settings';
import { withTimeout } from './with-timeout';

export type RedisPing = { up: true; latency_ms: number } | { up: false; message: string };

/** PING within the budget; never throws. */
export async function pingRedis(redis: Redis, timeoutMs: number): Promise<RedisPing> {
  const started = Date.now();
  try {
    const pong = await withTimeout(redis.ping(), timeoutMs, 'redis ping');
    return pong === 'PONG' ? { up: true, latency_ms: Date.now() - started } : { up: false, message: `unexpected reply ${pong}` };
  } catch (e) {
    return { up: false, message: (e as Error).message };
  }
}

/** Redis answers PING within the budget (500 ms at most). */
@Injectable()
export class RedisHealthIndicator {
  private readonly ping: CachedProbe<RedisPing>;

  constructor(
    private readonly health: HealthIndicatorService,
    @Inject(REDIS_CLIENT) redis: Redis,
    env: Env,
  ) {
    const { redisTimeoutMs, cacheMs } = healthSettings(env);
    this.ping = new CachedProbe(() => pingRedis(redis, redisTimeoutMs), cacheMs);
  }

  async isHealthy(key = 'redis') {
    const indicator = this.health.check(key);
    const r = await this.ping.get();
    return r.up ? indicator.up({ latency_ms: r.latency_ms }) : indicator.down({ message: r.message });
  }
}
