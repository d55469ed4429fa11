import { Env } from '@app/config';
import { RedisKeys } from '@app/queue';
import { DynamicModule, FactoryProvider, Module, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { FsResultStore } from './fs-result.store';
import { REDIS_CLIENT, redisClientProvider, RedisClientShutdown } from './redis.provider';
import { RedisResultStore } from './redis-result.store';
import { ResultStore } from './result-store';

/** Sweep often enough that disk is reclaimed within ~10% of the TTL, but not more than once a minute. */
export function sweepIntervalMs(ttlSeconds: number): number {
  return Math.min(Math.max((ttlSeconds * 1000) / 10, 60_000), 60 * 60_000);
}

export const resultStoreProvider: FactoryProvider<ResultStore> = {
  provide: ResultStore,
  inject: [Env, REDIS_CLIENT],
  useFactory: (env: Env, redis: Redis): ResultStore => {
    if (env.RESULT_STORE === 'fs') {
      const store = new FsResultStore(env.RESULT_DIR, env.RESULT_TTL_SECONDS);
      store.startSweeper(sweepIntervalMs(env.RESULT_TTL_SECONDS));
      return store;
    }
    return new RedisResultStore(redis, new RedisKeys(env.QUEUE_PREFIX), env.RESULT_TTL_SECONDS);
  },
};

/**
 * Provides ResultStore (adapter chosen from Env.RESULT_STORE when the app starts) and REDIS_CLIENT.
 * Global: import forRoot() once, in the app's root module, next to ConfigModule.forRoot().
 */
@Module({})
export class StorageModule implements OnApplicationShutdown {
  constructor(private readonly store: ResultStore) {}

  static forRoot(): DynamicModule {
    return {
      module: StorageModule,
      global: true,
      providers: [redisClientProvider, RedisClientShutdown, resultStoreProvider],
      exports: [REDIS_CLIENT, ResultStore],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
