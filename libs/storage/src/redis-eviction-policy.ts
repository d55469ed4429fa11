import { Env, EnvValidationError } from '@app/config';
import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { REDIS_CLIENT } from './redis.provider';
import { parseRedisMemoryInfo } from './redis-memory-info';

/** The only policy under which Redis never drops BullMQ's keys (a job, a lock, a queue list) to make room. */
export const REQUIRED_EVICTION_POLICY = 'noeviction';

/**
 * Redis's maxmemory-policy: CONFIG GET where allowed, else INFO memory (managed Redis often
 * disables CONFIG); undefined when neither answers.
 */
export async function readEvictionPolicy(redis: Pick<Redis, 'config' | 'info'>): Promise<string | undefined> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(reply) && typeof reply[1] === 'string') return reply[1];
  } catch {
    // CONFIG renamed away or refused by ACL: INFO carries the same field.
  }
  try {
    const policy = parseRedisMemoryInfo(await redis.info('memory'))?.policy;
    return policy && policy !== 'unknown' ? policy : undefined;
  } catch {
    return undefined;
  }
}

/**
 * At start-up, API and worker alike: an evicting Redis loses jobs silently when it fills, so say
 * it loudly, or refuse to start with REDIS_REQUIRE_NOEVICTION. onModuleInit, so a worker refuses
 * before any of its BullMQ workers takes a job (those start at bootstrap).
 */
@Injectable()
export class RedisEvictionPolicyCheck implements OnModuleInit {
  private readonly logger = new Logger('Redis');

  constructor(
    private readonly env: Env,
    @Inject(REDIS_CLIENT) private readonly redis: Pick<Redis, 'config' | 'info'>,
  ) {}

  async onModuleInit(): Promise<void> {
    const policy = await readEvictionPolicy(this.redis);
    if (policy === REQUIRED_EVICTION_POLICY) return;
    if (policy === undefined) {
      // Redis is down or hides both CONFIG and INFO: health reports the first, and refusing here would turn an outage into a crash loop.
      this.logger.warn({ msg: 'could not read Redis maxmemory-policy; BullMQ needs noeviction', required: REQUIRED_EVICTION_POLICY });
      return;
    }
    if (this.env.REDIS_REQUIRE_NOEVICTION) {
      throw new EnvValidationError([
        `REDIS_REQUIRE_NOEVICTION=true but Redis maxmemory-policy is ${policy}: set it to noeviction (CONFIG SET maxmemory-policy noeviction, or the provider's parameter group)`,
      ]);
    }
    this.logger.warn({
      msg: `REDIS MAXMEMORY-POLICY IS ${policy}, NOT noeviction: a full Redis will evict queued jobs and locks and lose work; set maxmemory-policy noeviction (REDIS_REQUIRE_NOEVICTION=true refuses to start)`,
      policy,
      required: REQUIRED_EVICTION_POLICY,
    });
  }
}
