import { loadEnv } from '@app/config';
import { bullConnectionFor, confirmReplicated, describeRedis, redisTopology, ReplicationUnconfirmedError } from './redis-connection';

describe('the Redis connection factory', () => {
  it('reads one topology: REDIS_URL, else Sentinel, else Cluster', () => {
    expect(redisTopology(loadEnv({ REDIS_URL: 'redis://h:1/2' }))).toEqual({ kind: 'standalone', url: 'redis://h:1/2' });
    expect(redisTopology(loadEnv({ REDIS_SENTINELS: 's1:26379,[::1]:26380', REDIS_SENTINEL_NAME: 'm', REDIS_PASSWORD: 'pw', REDIS_SENTINEL_PASSWORD: 'spw' }))).toEqual({
      kind: 'sentinel', sentinels: [{ host: 's1', port: 26379 }, { host: '::1', port: 26380 }], name: 'm', password: 'pw', sentinelPassword: 'spw',
    });
    expect(redisTopology(loadEnv({ REDIS_CLUSTER_NODES: 'a:7000,b:7001', QUEUE_PREFIX: '{f}' }))).toEqual({
      kind: 'cluster', nodes: [{ host: 'a', port: 7000 }, { host: 'b', port: 7001 }], password: undefined,
    });
  });

  it('never shows a password when it says where Redis is', () => {
    expect(describeRedis(loadEnv({ REDIS_URL: 'redis://u:secret@h:1/0' }))).not.toContain('secret');
    expect(describeRedis(loadEnv({ REDIS_SENTINELS: 's:1', REDIS_SENTINEL_NAME: 'm', REDIS_PASSWORD: 'secret' }))).toBe('Redis primary "m" of sentinels s:1');
  });

  it('keeps each role: workers wait for Redis, producers fail fast, on every topology', () => {
    const url = loadEnv({});
    expect(bullConnectionFor(url, 'worker')).toMatchObject({ url: url.REDIS_URL, maxRetriesPerRequest: null });
    expect(bullConnectionFor(url, 'producer')).toMatchObject({ maxRetriesPerRequest: 1, enableOfflineQueue: false });
    const sentinel = bullConnectionFor(loadEnv({ REDIS_SENTINELS: 's:1', REDIS_SENTINEL_NAME: 'm' }), 'worker');
    expect(sentinel).toMatchObject({ sentinels: [{ host: 's', port: 1 }], name: 'm', role: 'master', maxRetriesPerRequest: null });
    expect(sentinel.url).toBeUndefined();
    expect(typeof sentinel.reconnectOnError).toBe('function');
    expect(bullConnectionFor(loadEnv({ REDIS_CLUSTER_NODES: 'a:7000', QUEUE_PREFIX: '{f}' }), 'worker')).toMatchObject({ maxRetriesPerRequest: null, ficturesCluster: { role: 'worker' } });
  });

  it('WAIT: passes with enough replicas, throws with too few, does nothing for 0', async () => {
    const calls: [number, number][] = [];
    const replicas = (n: number) => ({ wait: async (want: number, ms: number) => (calls.push([want, ms]), n) });
    await expect(confirmReplicated(replicas(1), 1, 500, '{f}')).resolves.toBeUndefined();
    await expect(confirmReplicated(replicas(0), 1, 500, '{f}')).rejects.toBeInstanceOf(ReplicationUnconfirmedError);
    await expect(confirmReplicated(replicas(1), 2, 250, '{f}')).rejects.toThrow('only 1 of 2');
    await confirmReplicated(replicas(0), 0, 500, '{f}');
    expect(calls).toEqual([[1, 500], [1, 500], [2, 250]]);
  });
});
