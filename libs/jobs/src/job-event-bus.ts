import { Inject, Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import Redis from 'ioredis';
import { Env } from '@app/config';
import { type JobEvent, redisClient, RedisKeys, watchRedisClient } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';

type Listener = (event: JobEvent) => void;

/**
 * Job events and cancel requests over Redis pub/sub, so whatever happens on any worker reaches any
 * API instance and a cancel sent to any API instance reaches the worker holding the job. One
 * subscriber connection per process, opened on first use; channels come and go with listeners.
 * Best effort by nature: readers pair it with reading the job.
 */
@Injectable()
export class JobEventBus implements OnModuleDestroy {
  private readonly logger = new Logger(JobEventBus.name);
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly cancelHandlers = new Set<(jobId: string) => void>();
  private subscriber?: Redis;

  constructor(
    private readonly env: Env,
    private readonly keys: RedisKeys,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
  ) {}

  async publish(event: JobEvent): Promise<void> {
    try {
      await this.redis.publish(this.keys.jobEvents(event.job_id), JSON.stringify(event));
    } catch {
      // Redis blinking: readers fall back to reading the job.
    }
  }

  /** Listens to one job's events; returns the function that stops listening. */
  listen(jobId: string, listener: Listener): () => void {
    const channel = this.keys.jobEvents(jobId);
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      this.connection().subscribe(channel).catch(() => undefined);
    }
    set.add(listener);
    return () => {
      const s = this.listeners.get(channel);
      if (!s?.delete(listener) || s.size) return;
      this.listeners.delete(channel);
      this.subscriber?.unsubscribe(channel).catch(() => undefined);
    };
  }

  /** Asks whichever worker holds the job to stop it. */
  async requestCancel(jobId: string): Promise<void> {
    await this.redis.publish(this.keys.cancelChannel, jobId);
  }

  /** A worker process hears every cancel request (it checks whether it holds the job). */
  async onCancelRequest(handler: (jobId: string) => void): Promise<void> {
    this.cancelHandlers.add(handler);
    if (this.cancelHandlers.size === 1) await this.connection().subscribe(this.keys.cancelChannel);
  }

  private connection(): Redis {
    if (this.subscriber) return this.subscriber;
    const sub = redisClient(this.env, 'subscriber');
    watchRedisClient(sub); // ioredis reconnects and resubscribes by itself; outages are logged once
    sub.on('message', (channel: string, message: string) => {
      if (channel === this.keys.cancelChannel) {
        for (const h of this.cancelHandlers) this.safely(() => h(message));
        return;
      }
      const set = this.listeners.get(channel);
      if (!set) return;
      let event: JobEvent;
      try {
        event = JSON.parse(message) as JobEvent;
      } catch {
        return;
      }
      for (const l of set) this.safely(() => l(event));
    });
    this.subscriber = sub;
    return sub;
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.logger.warn(`job event listener failed: ${(e as Error).message}`);
    }
  }

  async onModuleDestroy(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = undefined;
    if (!sub) return;
    // QUIT while connected: disconnect() leaves ioredis's socket timer running after the process is done.
    if (sub.status === 'ready') await sub.quit().catch(() => sub.disconnect());
    else sub.disconnect();
  }
}
