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

/**
 * BullMQ connection options. Workers need maxRetriesPerRequest null (blocking reads); producers in
 * the API fail fast (no offline queue) so a Redis outage is a quick 503, never a hanging request.
 */
export function bullConnection(url: string, role: 'worker' | 'producer'): { url: string; maxRetriesPerRequest: number | null; enableOfflineQueue?: boolean } {
  return role === 'worker' ? { url, maxRetriesPerRequest: null } : { url, maxRetriesPerRequest: 1, enableOfflineQueue: false };
}
