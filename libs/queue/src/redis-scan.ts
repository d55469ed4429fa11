import type { Cluster, Redis } from 'ioredis';
import { isRedisCluster } from './redis-connection';

/**
 * Every key matching a glob, on one Redis or across a Cluster: SCAN sees only the node it runs on,
 * so on a Cluster each master is scanned (the service's keys share one slot, but which master holds
 * it is the Cluster's business). Keys may repeat or vanish between pages; callers tolerate both.
 */
export async function scanKeys(client: Redis | Cluster, match: string, count = 500): Promise<string[]> {
  // A Cluster client knows its masters once connected: a lazy one is connected by its first command.
  if (isRedisCluster(client) && !client.nodes('master').length) await client.ping();
  const nodes: Redis[] = isRedisCluster(client) ? client.nodes('master') : [client];
  const found = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', count);
      for (const k of batch) found.add(k);
      cursor = next;
    } while (cursor !== '0');
  }
  return [...found];
}
