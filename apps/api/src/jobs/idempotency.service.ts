import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { RedisKeys } from '@app/queue';
import { REDIS_CLIENT } from '@app/storage';
import { ApiError } from '../common/api-error';

const TTL_SECONDS = 24 * 60 * 60;
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export type IdempotencyClaim = { kind: 'new'; jobId: string; release: () => Promise<void> } | { kind: 'replay'; jobId: string };

/** Whether a claimed job exists (after giving its first request a moment to add it). */
export type JobExists = (jobId: string) => Promise<boolean>;

/** Compare-and-set: replace the claim only if it still names the job found there. */
const TAKE_OVER = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end return 0`;
/** Delete the claim only while it is still this request's (a retry may have taken it over). */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** Stable JSON: object keys sorted, so the same body always has the same fingerprint. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Idempotency-Key on job submission: the same key and body within 24 h return the same job, even
 * when the duplicates arrive at once (SET NX decides the one that creates it); the same key with
 * another body is refused.
 */
@Injectable()
export class IdempotencyService {
  constructor(
    private readonly keys: RedisKeys,
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
  ) {}

  /**
   * ttlSeconds: how long the key holds (24 h for Idempotency-Key; the OpenAI routes' body window is shorter).
   * `exists`: asked on a replay; a claim whose job never came to exist (its request failed during a
   * Redis outage and could not free the key either) is taken over for this request's new job, so a
   * key is never stuck answering 404.
   */
  async claim(owner: string | undefined, key: string, body: unknown, newJobId: string, ttlSeconds = TTL_SECONDS, exists?: JobExists): Promise<IdempotencyClaim> {
    if (!KEY_PATTERN.test(key)) throw new ApiError(ErrorCode.ValidationFailed, 'Idempotency-Key must be 1-255 visible ASCII characters');
    const redisKey = this.keys.idempotency(owner ?? '-', createHash('sha256').update(key).digest('hex'));
    const fingerprint = createHash('sha256').update(canonical(body)).digest('hex');
    const mine = JSON.stringify({ fp: fingerprint, job_id: newJobId });
    const set = await this.redis.set(redisKey, mine, 'EX', ttlSeconds, 'NX');
    if (set === 'OK') {
      return this.fresh(redisKey, mine, newJobId);
    }
    const existing = await this.redis.get(redisKey);
    if (!existing) return this.claim(owner, key, body, newJobId, ttlSeconds, exists); // expired between SET and GET
    const prior = JSON.parse(existing) as { fp: string; job_id: string };
    if (prior.fp !== fingerprint) {
      throw new ApiError(ErrorCode.IdempotencyKeyReused, 'This Idempotency-Key was used with a different request body');
    }
    if (exists && !(await exists(prior.job_id))) {
      const taken = await this.redis.eval(TAKE_OVER, 1, redisKey, existing, mine, String(ttlSeconds));
      if (taken === 1) return this.fresh(redisKey, mine, newJobId);
      return this.claim(owner, key, body, newJobId, ttlSeconds, exists); // another retry took it over first
    }
    return { kind: 'replay', jobId: prior.job_id };
  }

  private fresh(redisKey: string, mine: string, jobId: string): IdempotencyClaim {
    return { kind: 'new', jobId, release: async () => void (await this.redis.eval(RELEASE, 1, redisKey, mine).catch(() => undefined)) };
  }
}
