import { Injectable, Logger, OnModuleDestroy } from '@nestjs/common';
import Redis from 'ioredis';
import { Env } from '@app/config';
import { JobEvent, RedisKeys, redisOptionsFromUrl } from '@app/queue';

type Listener = (event: JobEvent) => void;

/**
 * Live job events from Redis pub/sub, so a client connected to any API instance hears what any
 * worker did. One subscriber connection per process; channels are (un)subscribed as listeners come
 * and go. Best effort by nature: callers pair it with polling the job.
 */
@Injectable()
export class JobEventsService implements OnModuleDestroy {
  private readonly logger = new Logger(JobEventsService.name);
  private readonly keys: RedisKeys;
  private readonly listeners = new Map<string, Set<Listener>>();
  private subscriber?: Redis;

  constructor(env: Env) {
    this.keys = new RedisKeys(env.QUEUE_PREFIX);
    this.url = env.REDIS_URL;
  }

  private readonly url: string;

  private connection(): Redis {
    if (!this.subscriber) {
      this.subscriber = new Redis({ ...redisOptionsFromUrl(this.url), maxRetriesPerRequest: null, lazyConnect: false });
      this.subscriber.on('error', () => undefined); // reconnects and resubscribes on its own
      this.subscriber.on('message', (channel: string, message: string) => {
        const set = this.listeners.get(channel);
        if (!set) return;
        let event: JobEvent;
        try {
          event = JSON.parse(message) as JobEvent;
        } catch {
          return;
        }
        for (const l of set) {
          try {
            l(event);
          } catch (e) {
            this.logger.warn(`job event listener failed: ${(e as Error).message}`);
          }
        }
      });
    }
    return this.subscriber;
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
      if (!s) return;
      s.delete(listener);
      if (!s.size) {
        this.listeners.delete(channel);
        this.subscriber?.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  onModuleDestroy(): void {
    this.subscriber?.disconnect();
  }
}
