import { createIORedisClient, RedisConnection, type RedisOptions as BullRedisOptions } from 'bullmq';
import Redis, { Cluster, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Env } from '@app/config';

/** ioredis options from a redis:// or rediss:// URL (user, password, db, TLS). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isInteger(db) ? db : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

/** Reconnect quickly after an outage (BullMQ's default backs off to 20 s between attempts). */
export const reconnectBackoff = (times: number): number => Math.min(250 * times, 2_000);

/**
 * BullMQ connection options. Workers need maxRetriesPerRequest null (blocking reads); producers in
 * the API fail fast (no offline queue) so a Redis outage is a quick 503, never a hanging request.
 */
export function bullConnection(
  url: string,
  role: 'worker' | 'producer',
): { url: string; maxRetriesPerRequest: number | null; enableOfflineQueue?: boolean; retryStrategy: (times: number) => number } {
  return role === 'worker'
    ? { url, maxRetriesPerRequest: null, retryStrategy: reconnectBackoff }
    : { url, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: reconnectBackoff };
}

// ------------------------------------------------------------------------ one factory for every client

/**
 * What a connection is for, which fixes how it behaves while Redis is away:
 * - producer: the API's shared client; fails fast (no offline queue, one retry) so requests answer 503 at once;
 * - worker: BullMQ workers and the worker's queues; waits for Redis forever (blocking reads need maxRetriesPerRequest null);
 * - subscriber: pub/sub; waits for Redis and resubscribes by itself;
 * - cli: one-shot commands (npm run keys); connects once, never retries.
 */
export type RedisRole = 'producer' | 'worker' | 'subscriber' | 'cli';

export interface HostPort {
  host: string;
  port: number;
}

export type RedisTopology =
  | { kind: 'standalone'; url: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; sentinelPassword?: string; password?: string }
  | { kind: 'cluster'; nodes: HostPort[]; password?: string };

export type RedisEnv = Pick<Env, 'REDIS_URL' | 'REDIS_SENTINELS' | 'REDIS_SENTINEL_NAME' | 'REDIS_SENTINEL_PASSWORD' | 'REDIS_PASSWORD' | 'REDIS_CLUSTER_NODES'>;

function hostPort(s: string): HostPort {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

/** Which Redis the deployment runs on: REDIS_CLUSTER_NODES, else REDIS_SENTINELS, else REDIS_URL (validated together by loadEnv). */
export function redisTopology(env: RedisEnv): RedisTopology {
  if (env.REDIS_CLUSTER_NODES.length) return { kind: 'cluster', nodes: env.REDIS_CLUSTER_NODES.map(hostPort), password: env.REDIS_PASSWORD };
  if (env.REDIS_SENTINELS.length) {
    return {
      kind: 'sentinel',
      sentinels: env.REDIS_SENTINELS.map(hostPort),
      name: env.REDIS_SENTINEL_NAME as string, // required with REDIS_SENTINELS by Env validation
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      password: env.REDIS_PASSWORD,
    };
  }
  return { kind: 'standalone', url: env.REDIS_URL };
}

/** Where the data lives, for log lines and messages: never a password. */
export function describeRedis(env: RedisEnv): string {
  const t = redisTopology(env);
  const list = (nodes: HostPort[]) => nodes.map((n) => `${n.host}:${n.port}`).join(',');
  if (t.kind === 'cluster') return `Redis Cluster ${list(t.nodes)}`;
  if (t.kind === 'sentinel') return `Redis primary "${t.name}" of sentinels ${list(t.sentinels)}`;
  const u = new URL(t.url);
  u.password = '';
  return u.toString();
}

/** Each role's behaviour (the same on a single Redis, a Sentinel primary or Cluster nodes). */
function roleOptions(role: RedisRole): RedisOptions {
  switch (role) {
    case 'producer':
      return { maxRetriesPerRequest: 1, enableOfflineQueue: false };
    case 'worker':
      return { maxRetriesPerRequest: null, retryStrategy: reconnectBackoff };
    case 'subscriber':
      return { maxRetriesPerRequest: null };
    case 'cli':
      return { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5_000, retryStrategy: () => null };
  }
}

/**
 * A primary that was demoted under a connection (a failover the connection has not noticed yet)
 * answers writes with READONLY: reconnect (asking the sentinels again) and resend the command.
 */
export const reconnectOnReadOnly = (err: Error): 2 | false => (err.message.startsWith('READONLY') ? 2 : false);

function sentinelOptions(t: Extract<RedisTopology, { kind: 'sentinel' }>, role: RedisRole): RedisOptions {
  return {
    sentinels: t.sentinels,
    name: t.name,
    role: 'master',
    sentinelPassword: t.sentinelPassword,
    password: t.password,
    // No failoverDetector: ioredis 5.11 leaves its sentinel subscriptions open after quit(). A crashed
    // primary drops the sockets (reconnect = ask the sentinels again); a demoted one answers READONLY.
    reconnectOnError: reconnectOnReadOnly,
    ...(role === 'cli' ? { sentinelRetryStrategy: () => null } : {}),
    ...roleOptions(role),
  };
}

function clusterOptions(t: Extract<RedisTopology, { kind: 'cluster' }>, role: RedisRole): ClusterOptions {
  const { enableOfflineQueue, retryStrategy, lazyConnect, ...node } = roleOptions(role);
  return {
    redisOptions: { ...node, password: t.password, reconnectOnError: reconnectOnReadOnly },
    enableOfflineQueue: enableOfflineQueue ?? true,
    lazyConnect,
    clusterRetryStrategy: retryStrategy ? (times: number) => retryStrategy(times) ?? null : reconnectBackoff,
  };
}

/**
 * The one way the service makes a Redis client: a single Redis (REDIS_URL), the primary of a
 * Sentinel group, or a Cluster. A Cluster answers the same commands for keys of one slot, which the
 * queue prefix's hash tag guarantees; code that needs the nodes themselves checks isRedisCluster().
 */
export function redisClient(env: RedisEnv, role: RedisRole): Redis {
  const t = redisTopology(env);
  if (t.kind === 'cluster') return new Cluster(t.nodes, clusterOptions(t, role)) as unknown as Redis;
  if (t.kind === 'sentinel') return new Redis(sentinelOptions(t, role));
  if (role === 'subscriber') return new Redis({ ...redisOptionsFromUrl(t.url), ...roleOptions(role) });
  return new Redis(t.url, { ...roleOptions(role), ...(role === 'producer' ? { lazyConnect: false } : {}) });
}

export function isRedisCluster(client: Redis | Cluster): client is Cluster {
  return (client as Cluster).isCluster === true;
}

/** Marks BullMQ connection options whose client must be a Cluster (see useClusterClients); ioredis ignores it. */
const CLUSTER = 'ficturesCluster';
type ClusterMarked = BullRedisOptions & { [CLUSTER]?: { topology: Extract<RedisTopology, { kind: 'cluster' }>; role: RedisRole } };

/**
 * BullMQ builds a plain ioredis client from connection options; for Cluster options it must build a
 * Cluster, and only options (not a client instance) leave the client's life to BullMQ, which closes
 * what it made. Installed once, the first time Cluster options are asked for; other options are
 * built exactly as BullMQ does.
 */
let clusterFactoryInstalled = false;
function useClusterClients(): void {
  if (clusterFactoryInstalled) return;
  clusterFactoryInstalled = true;
  const previous = RedisConnection.clientFactory;
  RedisConnection.clientFactory = (opts: BullRedisOptions) => {
    const cluster = (opts as ClusterMarked)[CLUSTER];
    if (cluster) {
      const options = clusterOptions(cluster.topology, cluster.role);
      // BullMQ asks for maxRetriesPerRequest null on its blocking connections, whatever the role.
      if (opts.maxRetriesPerRequest === null) options.redisOptions = { ...options.redisOptions, maxRetriesPerRequest: null };
      return createIORedisClient(new Cluster(cluster.topology.nodes, options));
    }
    if (previous) return previous(opts);
    const { url, ...rest } = opts as RedisOptions & { url?: string };
    return createIORedisClient(url ? new Redis(url, rest) : new Redis(rest));
  };
}

/**
 * BullMQ connection options for a role (`worker` or `producer`), on whichever topology the
 * deployment runs: each Queue or Worker then owns its connections, as BullMQ expects.
 */
export function bullConnectionFor(env: RedisEnv, role: 'worker' | 'producer'): BullRedisOptions {
  const t = redisTopology(env);
  const base = bullConnection(env.REDIS_URL, role);
  if (t.kind === 'standalone') return base;
  const { url: _url, ...behaviour } = base;
  if (t.kind === 'sentinel') return { ...(sentinelOptions(t, role) as BullRedisOptions), ...behaviour };
  useClusterClients();
  const marked: ClusterMarked = { ...behaviour, [CLUSTER]: { topology: t, role } };
  return marked;
}

// ------------------------------------------------------------------------ acknowledged means replicated

/** WAIT could not confirm the writes on enough replicas in time. */
export class ReplicationUnconfirmedError extends Error {
  constructor(
    readonly wanted: number,
    readonly confirmed: number,
  ) {
    super(`only ${confirmed} of ${wanted} Redis replica(s) confirmed the write in time`);
    this.name = 'ReplicationUnconfirmedError';
  }
}

/** `WAIT` on one connection: resolves the number of replicas that have every write it made so far. */
type Waiter = Pick<Redis, 'wait'>;

const slotCache = new WeakMap<Cluster, Map<string, number>>();

/** The master connection that holds a key's slot, whose writes WAIT then covers. */
async function clusterOwner(cluster: Cluster, key: string): Promise<Redis | undefined> {
  let slots = slotCache.get(cluster);
  if (!slots) slotCache.set(cluster, (slots = new Map()));
  let slot = slots.get(key);
  if (slot === undefined) {
    slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', key));
    slots.set(key, slot);
  }
  const owner = cluster.slots[slot]?.[0];
  return cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
}

/**
 * Makes a write durable beyond one Redis: `WAIT replicas timeoutMs` on the connection that made it
 * (WAIT only covers the calling connection's writes). On a Cluster, the connection is the master of
 * `slotKey`'s slot (the queue prefix: every key of the service lives there). Throws
 * ReplicationUnconfirmedError when fewer replicas answered in time; does nothing for 0 replicas.
 */
export async function confirmReplicated(client: Redis | Cluster | Waiter, replicas: number, timeoutMs: number, slotKey: string): Promise<void> {
  if (replicas <= 0) return;
  const target: Waiter | undefined = isRedisCluster(client as Redis | Cluster) ? await clusterOwner(client as Cluster, slotKey) : (client as Waiter);
  const confirmed = target ? await target.wait(replicas, timeoutMs) : 0;
  if (confirmed < replicas) throw new ReplicationUnconfirmedError(replicas, confirmed);
}
