import { Inject, Injectable, Logger } from '@nestjs/common';
import type Redis from 'ioredis';
import { ErrorCode } from '@app/common';
import { JobLifecycle } from '@app/jobs';
import { RedisKeys } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import { ApiError } from '../common/api-error';

/** A reservation not yet confirmed this recently may be an add still in flight: never pruned. */
export const RESERVATION_GRACE_MS = 30_000;
/** An idle key's set expires on its own; every reservation renews it. */
const SET_TTL_SECONDS = 7 * 24 * 3600;

// Admit atomically: two submissions racing for the last slot cannot both win. A job that already
// holds a slot (an idempotent retry of the same submission) keeps it. The score is -reserved_at
// while the job is being added, +reserved_at once confirmed in BullMQ.
const RESERVE = `
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], -tonumber(ARGV[2]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0`;

/** Who is submitting, as far as the quota cares (a Caller from the job routes). */
export interface QuotaSubject {
  owner?: string;
  maxJobs?: number;
}

/**
 * Per-key concurrency quota: at most maxJobs jobs queued or running at once. Each key has a Redis
 * sorted set of its live job ids, scored by reservation time (negative until the job is confirmed
 * in BullMQ). A slot frees however a job ends (succeeded, failed, canceled, removed, or lost to a
 * crash) because admission prunes the members whose BullMQ state is no longer live, instead of
 * trusting completion events that a crash can swallow: the set is its own reconciler, asking the
 * job owner whether each member still lives.
 */
@Injectable()
export class JobQuota {
  private readonly logger = new Logger(JobQuota.name);
  constructor(
    private readonly keys: RedisKeys,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    private readonly lifecycle: JobLifecycle,
  ) {}

  /** Takes a slot for jobId, or throws 429 quota_exceeded. No-op without an owner (open server). */
  async reserve(subject: QuotaSubject, jobId: string): Promise<void> {
    if (!subject.owner || !subject.maxJobs) return;
    const key = this.keys.keyJobs(subject.owner);
    if (await this.tryReserve(key, subject.maxJobs, jobId)) return;
    await this.prune(key);
    if (await this.tryReserve(key, subject.maxJobs, jobId)) return;
    throw new ApiError(
      ErrorCode.QuotaExceeded,
      `This API key already has ${subject.maxJobs} jobs queued or running; wait for one to end or cancel one`,
      { max_jobs: subject.maxJobs },
    );
  }

  /** The job is in BullMQ now: from here on, its BullMQ state alone decides whether it holds the slot. */
  async confirm(subject: QuotaSubject, jobId: string): Promise<void> {
    if (!subject.owner || !subject.maxJobs) return;
    // Best effort: an unconfirmed reservation is still reclaimed, only after the grace period.
    await this.redis.zadd(this.keys.keyJobs(subject.owner), 'XX', Date.now(), jobId).catch(() => undefined);
  }

  /** Gives the slot back (the job was never enqueued). */
  async release(subject: QuotaSubject, jobId: string): Promise<void> {
    if (!subject.owner) return;
    await this.redis.zrem(this.keys.keyJobs(subject.owner), jobId).catch(() => undefined);
  }

  private async tryReserve(key: string, max: number, jobId: string): Promise<boolean> {
    return (await this.redis.eval(RESERVE, 1, key, String(max), String(Date.now()), jobId, String(SET_TTL_SECONDS))) === 1;
  }

  /** Drops the members that no longer hold a slot: finished, failed, removed, or never enqueued. */
  private async prune(key: string): Promise<void> {
    const members = await this.redis.zrange(key, 0, -1, 'WITHSCORES');
    const now = Date.now();
    const dead: string[] = [];
    await Promise.all(
      Array.from({ length: members.length / 2 }, async (_, i) => {
        const jobId = members[2 * i];
        const score = Number(members[2 * i + 1]);
        const liveness = await this.lifecycle.liveness(jobId);
        if (liveness === 'live') return;
        // Not in the queue: gone (removed, canceled, pruned) if confirmed; maybe still being added if not.
        if (liveness === 'unknown' && score < 0 && now + score < RESERVATION_GRACE_MS) return;
        dead.push(jobId);
      }),
    );
    if (dead.length) {
      await this.redis.zrem(key, ...dead);
      this.logger.debug(`quota ${key}: freed ${dead.length} slot(s)`);
    }
  }
}
