import { Env } from '@app/config';
import { RedisKeys } from '@app/queue';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamicModule, FactoryProvider, Module, OnApplicationShutdown } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { FsResultStore } from './fs-result.store';
import { REDIS_CLIENT, redisClientProvider, RedisClientShutdown } from './redis.provider';
import { RedisEvictionPolicyCheck } from './redis-eviction-policy';
import { RedisResultStore } from './redis-result.store';
import { ResultStore } from './result-store';
import { s3ClientConfig, S3ResultStore } from './s3-result.store';

/** Sweep often enough that disk is reclaimed within ~10% of the TTL, but not more than once a minute. */
export function sweepIntervalMs(ttlSeconds: number): number {
  return Math.min(Math.max((ttlSeconds * 1000) / 10, 60_000), 60 * 60_000);
}

export const resultStoreProvider: FactoryProvider<ResultStore> = {
  provide: ResultStore,
  inject: [Env, REDIS_CLIENT],
  useFactory: (env: Env, redis: Redis): ResultStore => {
    if (env.RESULT_STORE === 's3') return s3ResultStore(env, redis);
    if (env.RESULT_STORE === 'fs') {
      const store = new FsResultStore(env.RESULT_DIR, env.RESULT_TTL_SECONDS);
      store.startSweeper(sweepIntervalMs(env.RESULT_TTL_SECONDS));
      return store;
    }
    return new RedisResultStore(redis, new RedisKeys(env.QUEUE_PREFIX), env.RESULT_TTL_SECONDS);
  },
};

/** Images in the bucket, records in Redis; the sweeper runs in one process per interval (a Redis lock). */
function s3ResultStore(env: Env, redis: Redis): S3ResultStore {
  const keys = new RedisKeys(env.QUEUE_PREFIX);
  const s3 = new S3Client(
    s3ClientConfig({ endpoint: env.RESULT_S3_ENDPOINT, region: env.RESULT_S3_REGION, forcePathStyle: env.RESULT_S3_FORCE_PATH_STYLE, timeoutMs: env.RESULT_S3_TIMEOUT_MS }),
  );
  const store = new S3ResultStore(s3, new RedisResultStore(redis, keys, env.RESULT_TTL_SECONDS), {
    bucket: env.RESULT_S3_BUCKET as string, // required by Env validation when RESULT_STORE=s3
    prefix: env.RESULT_S3_PREFIX,
    ttlSeconds: env.RESULT_TTL_SECONDS,
    timeoutMs: env.RESULT_S3_TIMEOUT_MS,
    publicBaseUrl: env.RESULT_PUBLIC_BASE_URL,
    signedUrlTtlSeconds: env.RESULT_S3_SIGNED_URL_TTL_SECONDS,
  });
  const intervalMs = env.RESULT_S3_SWEEP_INTERVAL_SECONDS === undefined ? sweepIntervalMs(env.RESULT_TTL_SECONDS) : env.RESULT_S3_SWEEP_INTERVAL_SECONDS * 1000;
  if (intervalMs > 0) {
    // The lock lives a little less than the interval, so the next round is free for whoever comes first.
    const claim = async () => (await redis.set(keys.resultSweepLock, '1', 'PX', Math.max(1, intervalMs - 1000), 'NX')) === 'OK';
    store.startSweeper(intervalMs, claim);
  }
  return store;
}

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
      providers: [redisClientProvider, RedisClientShutdown, RedisEvictionPolicyCheck, resultStoreProvider],
      exports: [REDIS_CLIENT, ResultStore],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.store.close();
  }
}
