import type { RedisOptions } from 'ioredis';

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
