import { Env } from '@app/config';
import { FactoryProvider, Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { redisClient, redisDependency, type RedisEnv, watchRedisClient } from '@app/queue';

/** The process's one general-purpose ioredis connection (BullMQ keeps its own). */
export const REDIS_CLIENT = Symbol('REDIS_CLIENT');

export function createRedisClient(env: RedisEnv): Redis {
  // Fail fast instead of queueing commands while Redis is away: callers answer 503 and retry.
  const client = redisClient(env, 'producer');
  // One line per outage for the whole process, however many connections notice it.
  watchRedisClient(client);
  return client;
}

/** QUIT when the connection is up (lets replies drain) and wait for the socket to close; otherwise drop it. */
export async function closeRedisClient(client: Redis, timeoutMs = 2_000): Promise<void> {
  if (client.status === 'end') return;
  if (client.status === 'ready') {
    const ended = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      timer.unref();
      client.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    try {
      await client.quit();
      await ended;
      if ((client.status as string) === 'end') return;
    } catch {
      // fall through to a hard disconnect
    }
  }
  client.disconnect();
}

/** Resolves true once the client is ready, false on timeout or when it gives up for good. */
export function waitUntilReady(client: Redis, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      resolve(ready);
    };
    const onReady = () => done(true);
    const onEnd = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    timer.unref();
    client.once('ready', onReady);
    client.once('end', onEnd);
  });
}

export const REDIS_READY_TIMEOUT_MS = 5_000;

export const redisClientProvider: FactoryProvider<Promise<Redis>> = {
  provide: REDIS_CLIENT,
  inject: [Env],
  useFactory: async (env: Env) => {
    const client = createRedisClient(env);
    // With the offline queue off, a command sent before the first connect fails; give the connection a
    // moment so start-up is not a race. A Redis that stays down does not stop the app: health reports it.
    // A refused connection was already reported as "redis unavailable"; a silent one (a Redis that
    // accepts and never answers) was not.
    if (!(await waitUntilReady(client, REDIS_READY_TIMEOUT_MS)) && redisDependency().available) {
      new Logger('Redis').warn(`Redis not ready after ${REDIS_READY_TIMEOUT_MS} ms; starting anyway`);
    }
    return client;
  },
};

/** Closes REDIS_CLIENT at application shutdown (a factory-made client has no hooks of its own). */
@Injectable()
export class RedisClientShutdown implements OnApplicationShutdown {
  constructor(@Inject(REDIS_CLIENT) private readonly client: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await closeRedisClient(this.client);
  }
}
