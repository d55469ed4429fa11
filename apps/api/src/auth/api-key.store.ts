import type Redis from 'ioredis';
import { RedisKeys } from '@app/queue';
import { displayPrefix, generateApiKey, hashApiKey, PRIORITY_MAX, PRIORITY_MIN, sameDigest } from './api-key';

/** Per-key overrides; absent = the deployment default (RATE_LIMIT_SUBMIT_PER_MINUTE, QUOTA_MAX_JOBS_PER_KEY, priority 100). */
export interface ApiKeyLimits {
  rpm?: number;
  max_jobs?: number;
  priority?: number;
}

/** What is stored about a key: never the key itself, only its SHA-256 and a display prefix. */
export interface ApiKeyRecord extends ApiKeyLimits {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  revoked_at: string | null;
}

export class ApiKeyInputError extends Error {}

/**
 * The record of the key whose SHA-256 is ARGV[1] (HGET on the index, then HGETALL of the record
 * under ARGV[2] .. id), as a flat field/value list; nil when the index has no such hash.
 */
const KEY_BY_HASH = 'ficturesApiKeyByHash';
const KEY_BY_HASH_LUA = `
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return redis.call('HGETALL', ARGV[2] .. id)
`;
type KeyByHash = Record<typeof KEY_BY_HASH, (index: string, hash: string, recordPrefix: string) => Promise<string[] | null>>;

const LIMIT_RANGES: Record<keyof ApiKeyLimits, [number, number]> = {
  rpm: [1, 1_000_000],
  max_jobs: [1, 100_000],
  priority: [PRIORITY_MIN, PRIORITY_MAX],
};

export function checkLimits(limits: ApiKeyLimits): void {
  for (const [field, [min, max]] of Object.entries(LIMIT_RANGES) as Array<[keyof ApiKeyLimits, [number, number]]>) {
    const v = limits[field];
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new ApiKeyInputError(`${field} must be a whole number from ${min} to ${max}`);
  }
}

function toRecord(h: Record<string, string>): ApiKeyRecord {
  const num = (s: string | undefined) => (s === undefined || s === '' ? undefined : Number(s));
  return {
    id: h.id,
    name: h.name,
    prefix: h.prefix,
    created_at: h.created_at,
    revoked_at: h.revoked_at || null,
    ...(num(h.rpm) !== undefined ? { rpm: num(h.rpm) } : {}),
    ...(num(h.max_jobs) !== undefined ? { max_jobs: num(h.max_jobs) } : {}),
    ...(num(h.priority) !== undefined ? { priority: num(h.priority) } : {}),
  };
}

/**
 * API keys in Redis, under the queue prefix: a hash per key id, an index SHA-256 → id for lookup,
 * and a sorted set of every id ever created. Revoking keeps the record (and so keeps the server
 * closed); only the index entry goes, so the key stops matching at once on every API instance.
 */
export class ApiKeyStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {
    // Every authenticated request looks its key up: index and record in one round trip.
    if (!(KEY_BY_HASH in redis)) redis.defineCommand(KEY_BY_HASH, { numberOfKeys: 1, lua: KEY_BY_HASH_LUA });
  }

  async create(input: { name: string } & ApiKeyLimits): Promise<{ record: ApiKeyRecord; key: string }> {
    const name = input.name?.trim();
    if (!name || name.length > 64 || /[\u0000-\u001f\u007f]/.test(name)) throw new ApiKeyInputError('name must be 1 to 64 printable characters');
    const limits: ApiKeyLimits = { rpm: input.rpm, max_jobs: input.max_jobs, priority: input.priority };
    checkLimits(limits);
    const { id, key } = generateApiKey();
    const hash = hashApiKey(key);
    const now = new Date();
    const fields: Record<string, string> = { id, name, prefix: displayPrefix(key), hash, created_at: now.toISOString(), revoked_at: '' };
    for (const [k, v] of Object.entries(limits)) if (v !== undefined) fields[k] = String(v);
    await this.redis
      .multi()
      .hset(this.keys.apiKey(id), fields)
      .hset(this.keys.apiKeyIndex, hash, id)
      .zadd(this.keys.apiKeys, now.getTime(), id)
      .exec();
    return { record: toRecord(fields), key };
  }

  async get(id: string): Promise<ApiKeyRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.apiKey(id));
    return h.id ? toRecord(h) : undefined;
  }

  async list(): Promise<ApiKeyRecord[]> {
    const ids = await this.redis.zrange(this.keys.apiKeys, 0, -1);
    if (!ids.length) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.apiKey(id));
    const rows = (await pipe.exec()) ?? [];
    return rows.map(([, h]) => h as Record<string, string>).filter((h) => h && h.id).map(toRecord);
  }

  /** Revokes a key; undefined when there is no such id. Revoking twice keeps the first date. */
  async revoke(id: string): Promise<ApiKeyRecord | undefined> {
    const h = await this.redis.hgetall(this.keys.apiKey(id));
    if (!h.id) return undefined;
    const revokedAt = h.revoked_at || new Date().toISOString();
    await this.redis.multi().hset(this.keys.apiKey(id), 'revoked_at', revokedAt).hdel(this.keys.apiKeyIndex, h.hash).exec();
    return toRecord({ ...h, revoked_at: revokedAt });
  }

  /**
   * The active key matching `key`, else undefined. Looks up by hash whatever is presented (even
   * nothing), so missing, malformed, unknown and revoked keys all take the same path.
   */
  async verify(key: string): Promise<ApiKeyRecord | undefined> {
    const hash = hashApiKey(key);
    const flat = await (this.redis as unknown as KeyByHash)[KEY_BY_HASH](this.keys.apiKeyIndex, hash, this.keys.apiKey(''));
    if (!flat) return undefined;
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i]] = flat[i + 1];
    // The index is only a pointer: the record's own digest must match, in constant time.
    if (!h.id || !sameDigest(h.hash ?? '', hash) || h.revoked_at) return undefined;
    return toRecord(h);
  }

  /** True once any key was ever created (revoked ones count: revoking the last key does not reopen the server). */
  async anyKeyExists(): Promise<boolean> {
    return (await this.redis.exists(this.keys.apiKeys)) === 1;
  }
}
