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
    @Inject(REDIS_CLIENT) private readonly redis: Pick<Redis, 'config' | 'info'> & { status?: string; once?: Redis['once'] },
  ) {}

  async onModuleInit(): Promise<void> {
    await this.check(true);
  }

  private async check(starting: boolean): Promise<void> {
    const policy = await readEvictionPolicy(this.redis);
    if (policy === REQUIRED_EVICTION_POLICY) return;
    if (policy === undefined) {
      if (this.redis.status !== undefined && this.redis.status !== 'ready' && this.redis.once) {
        // Redis is down: the outage is already logged once for the process, and refusing here would
        // turn it into a crash loop. Look again when it is back.
        this.redis.once('ready', () => void this.check(false).catch(() => undefined));
        return;
      }
      // Redis answers but hides both CONFIG and INFO.
      this.logger.warn({ msg: 'could not read Redis maxmemory-policy; BullMQ needs noeviction', required: REQUIRED_EVICTION_POLICY });
      return;
    }
    if (this.env.REDIS_REQUIRE_NOEVICTION && starting) {
      throw new EnvValidationError([
        `REDIS_REQUIRE_NOEVICTION=true but Redis maxmemory-policy is ${policy}: set it to noeviction (CONFIG SET maxmemory-policy noeviction, or the provider's parameter group)`,
      ]);
    }
    if (this.env.REDIS_REQUIRE_NOEVICTION) {
      // Found only after start-up (Redis was down then): too late to refuse, so as loud as it gets.
      this.logger.error({ msg: `REDIS MAXMEMORY-POLICY IS ${policy}, NOT noeviction, and REDIS_REQUIRE_NOEVICTION=true: fix it now`, policy, required: REQUIRED_EVICTION_POLICY });
      return;
    }
    this.logger.warn({
      msg: `REDIS MAXMEMORY-POLICY IS ${policy}, NOT noeviction: a full Redis will evict queued jobs and locks and lose work; set maxmemory-policy noeviction (REDIS_REQUIRE_NOEVICTION=true refuses to start)`,
      policy,
      required: REQUIRED_EVICTION_POLICY,
    });
  }
}
