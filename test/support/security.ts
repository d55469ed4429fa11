import { Queue } from 'bullmq';
import Redis from 'ioredis';
import { GenerationQueues } from '@app/jobs';
import { QueueName, RedisKeys } from '@app/queue';
import { type ApiKeyLimits, ApiKeyStore } from '../../apps/api/src/auth/api-key.store';
import type { Stack } from './stack';

/** API keys of a stack's deployment, made the way `npm run keys -- create` makes them. */
export class TestKeys {
  readonly redis: Redis;
  readonly store: ApiKeyStore;

  constructor(readonly prefix: string, redisUrl = process.env.REDIS_URL as string) {
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
    this.redis.on('error', () => undefined);
    this.store = new ApiKeyStore(this.redis, new RedisKeys(prefix));
  }

  static of(stack: Stack): TestKeys {
    return new TestKeys(stack.env.QUEUE_PREFIX, stack.env.REDIS_URL);
  }

  async create(name: string, limits: ApiKeyLimits = {}): Promise<{ id: string; key: string; auth: { Authorization: string } }> {
    const { record, key } = await this.store.create({ name, ...limits });
    return { id: record.id, key, auth: { Authorization: `Bearer ${key}` } };
  }

  /** QUIT, not disconnect(): ioredis's disconnect arms a 2 s socket timer that outlives the test run. */
  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Every generation job BullMQ holds for the stack, in any state, in every model's queue. */
export async function jobCount(stack: Stack): Promise<number> {
  const counts = await Promise.all(
    stack.api.get(GenerationQueues).all().map((q) => q.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'waiting-children')),
  );
  return counts.reduce((sum, c) => sum + Object.values(c).reduce((a, b) => a + b, 0), 0);
}

/** The generation queue of the stack, for tests that act on jobs directly (close it after use). */
export function generationQueue(stack: Stack): Queue {
  return new Queue(QueueName.Generation, { connection: { url: stack.env.REDIS_URL }, prefix: stack.env.QUEUE_PREFIX });
}
