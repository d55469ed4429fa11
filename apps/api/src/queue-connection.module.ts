import { Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { Env } from '@app/config';
import { closeRedisClient, createRedisClient, REDIS_READY_TIMEOUT_MS, waitUntilReady } from '@app/storage';
import type { Redis } from 'ioredis';

/**
 * The connection the API's BullMQ queues share: fail-fast like REDIS_CLIENT, but apart from it.
 * BullMQ defines its ~50 Lua scripts on the connection it is given, and ioredis copies every script
 * a client has onto each pipeline or MULTI made from it; on REDIS_CLIENT that cost ~8 % of a
 * submission's CPU (bench/edge.js --cpu-prof), paid by every pipelined read of the API.
 */
export const QUEUE_REDIS_CLIENT = Symbol('QUEUE_REDIS_CLIENT');

/** BullMQ never QUITs a connection it was handed: this closes it once the queues are closed. */
@Injectable()
class QueueRedisClientShutdown implements OnApplicationShutdown {
  constructor(@Inject(QUEUE_REDIS_CLIENT) private readonly client: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await closeRedisClient(this.client);
  }
}

@Module({
  providers: [
    {
      provide: QUEUE_REDIS_CLIENT,
      inject: [Env],
      useFactory: async (env: Env) => {
        const client = createRedisClient(env);
        // As REDIS_CLIENT: a moment to connect (no offline queue), never a refusal to start.
        await waitUntilReady(client, REDIS_READY_TIMEOUT_MS);
        return client;
      },
    },
    QueueRedisClientShutdown,
  ],
  exports: [QUEUE_REDIS_CLIENT],
})
export class QueueConnectionModule {}
