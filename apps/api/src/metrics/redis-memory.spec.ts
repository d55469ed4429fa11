import type Redis from 'ioredis';
import { parseRedisMemoryInfo, RedisMemoryProbe } from './redis-memory';

// The shape Redis 7 answers to INFO memory (trimmed), CRLF line ends as on the wire.
const INFO = [
  '# Memory',
  'used_memory:1234567',
  'used_memory_human:1.18M',
  'used_memory_rss:9876543',
  'maxmemory:268435456',
  'maxmemory_human:256.00M',
  'maxmemory_policy:noeviction',
  '',
].join('\r\n');

function fakeRedis(reply: () => Promise<string>): { redis: Pick<Redis, 'info'>; calls: string[] } {
  const calls: string[] = [];
  const info = ((section: string) => {
    calls.push(section);
    return reply();
  }) as unknown as Redis['info'];
  return { redis: { info }, calls };
}

describe('parseRedisMemoryInfo', () => {
  it('reads used_memory, maxmemory and the policy', () => {
    expect(parseRedisMemoryInfo(INFO)).toEqual({ used_bytes: 1234567, max_bytes: 268435456, policy: 'noeviction' });
  });

  it('reports no limit as 0 and an unknown policy when Redis leaves them out', () => {
    expect(parseRedisMemoryInfo('# Memory\nused_memory:42\n')).toEqual({ used_bytes: 42, max_bytes: 0, policy: 'unknown' });
  });

  it('refuses a reply without used_memory (another section, or a proxy that hides INFO)', () => {
    expect(parseRedisMemoryInfo('# Server\nredis_version:7.2.4\n')).toBeUndefined();
    expect(parseRedisMemoryInfo('used_memory:lots\n')).toBeUndefined();
  });
});

describe('RedisMemoryProbe', () => {
  it('asks Redis for the memory section once per window, however many scrapes', async () => {
    const { redis, calls } = fakeRedis(async () => INFO);
    const probe = new RedisMemoryProbe(redis);
    const reads = await Promise.all([probe.read(), probe.read(), probe.read()]);
    expect(await probe.read()).toEqual({ used_bytes: 1234567, max_bytes: 268435456, policy: 'noeviction' });
    expect(reads.every((r) => r?.used_bytes === 1234567)).toBe(true);
    expect(calls).toEqual(['memory']);
  });

  it('answers undefined, never throws, while Redis refuses', async () => {
    const { redis } = fakeRedis(async () => {
      throw new Error('Connection is closed.');
    });
    await expect(new RedisMemoryProbe(redis).read()).resolves.toBeUndefined();
  });
});
