import { Logger } from '@nestjs/common';
import { EnvValidationError, loadEnv } from '@app/config';
import type { Redis } from 'ioredis';
import { readEvictionPolicy, RedisEvictionPolicyCheck } from './redis-eviction-policy';

type FakeRedis = Pick<Redis, 'config' | 'info'>;

function fakeRedis(o: { config?: () => Promise<unknown>; info?: () => Promise<string> }): FakeRedis {
  const refuse = () => Promise.reject(new Error("ERR unknown command 'CONFIG'"));
  return {
    config: ((..._args: unknown[]) => (o.config ?? refuse)()) as unknown as Redis['config'],
    info: ((..._args: unknown[]) => (o.info ?? (() => Promise.reject(new Error('NOPERM'))))()) as unknown as Redis['info'],
  };
}

const INFO = (policy: string) => `# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:${policy}\r\n`;

describe('readEvictionPolicy', () => {
  it('reads CONFIG GET maxmemory-policy', async () => {
    await expect(readEvictionPolicy(fakeRedis({ config: async () => ['maxmemory-policy', 'allkeys-lru'] }))).resolves.toBe('allkeys-lru');
  });

  it('falls back to INFO memory when CONFIG is disabled (managed Redis)', async () => {
    await expect(readEvictionPolicy(fakeRedis({ info: async () => INFO('volatile-lru') }))).resolves.toBe('volatile-lru');
  });

  it('is undefined when neither answers', async () => {
    await expect(readEvictionPolicy(fakeRedis({}))).resolves.toBeUndefined();
    await expect(readEvictionPolicy(fakeRedis({ info: async () => '# Memory\r\nused_memory:1\r\n' }))).resolves.toBeUndefined();
  });
});

describe('RedisEvictionPolicyCheck', () => {
  let warnings: unknown[];
  beforeEach(() => {
    warnings = [];
    jest.spyOn(Logger.prototype, 'warn').mockImplementation((m: unknown) => {
      warnings.push(m);
    });
  });
  afterEach(() => jest.restoreAllMocks());

  it('says nothing under noeviction, even when required', async () => {
    await new RedisEvictionPolicyCheck(loadEnv({ REDIS_REQUIRE_NOEVICTION: 'true' }), fakeRedis({ info: async () => INFO('noeviction') })).onModuleInit();
    expect(warnings).toEqual([]);
  });

  it('warns in one line naming the policy when it evicts', async () => {
    await new RedisEvictionPolicyCheck(loadEnv({}), fakeRedis({ config: async () => ['maxmemory-policy', 'allkeys-lru'] })).onModuleInit();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ policy: 'allkeys-lru', required: 'noeviction' });
  });

  it('refuses to start with REDIS_REQUIRE_NOEVICTION as a configuration error', async () => {
    const check = new RedisEvictionPolicyCheck(loadEnv({ REDIS_REQUIRE_NOEVICTION: 'true' }), fakeRedis({ config: async () => ['maxmemory-policy', 'allkeys-lru'] }));
    const refused = check.onModuleInit();
    await expect(refused).rejects.toBeInstanceOf(EnvValidationError);
    await expect(refused).rejects.toThrow(/REDIS_REQUIRE_NOEVICTION=true but Redis maxmemory-policy is allkeys-lru/);
  });

  it('only warns when the policy cannot be read (Redis down at start-up is for health to report)', async () => {
    await new RedisEvictionPolicyCheck(loadEnv({ REDIS_REQUIRE_NOEVICTION: 'true' }), fakeRedis({})).onModuleInit();
    expect(warnings).toHaveLength(1);
  });
});
