import type Redis from 'ioredis';
import type { RedisKeys } from './redis-keys';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];

/** A live job event on Redis pub/sub; any API instance relays them (SSE, sync wait). */
export type JobEvent =
  | { type: 'status'; job_id: string; status: JobStatus; at: number }
  | { type: 'progress'; job_id: string; step: number; total_steps: number; fraction: number; at: number };

/** Publishes job events. Best effort: readers also poll, so a lost message only costs latency. */
export class JobEventPublisher {
  constructor(private readonly redis: Redis, private readonly keys: RedisKeys) {}

  async publish(event: JobEvent): Promise<void> {
    try {
      await this.redis.publish(this.keys.jobEvents(event.job_id), JSON.stringify(event));
    } catch {
      // Redis blinking: subscribers fall back to polling the job.
    }
  }
}
