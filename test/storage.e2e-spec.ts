import { ConfigModule, loadEnv } from '@app/config';
import { DomainError, ErrorCode } from '@app/common';
import { RedisKeys } from '@app/queue';
import { REDIS_CLIENT, RedisResultStore, ResultStore, StorageModule, TOMBSTONE_TTL_FACTOR } from '@app/storage';
import { Test } from '@nestjs/testing';
import Redis from 'ioredis';
import { randomBytes, randomUUID } from 'node:crypto';

const TTL_S = 300;

/** Bytes that break any accidental text round trip: NULs, lone continuation bytes, overlongs, a bad surrogate. */
function hostileBytes(): Buffer {
  return Buffer.concat([
    Buffer.from([0x00, 0x00, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    Buffer.from([0x80, 0xbf, 0xc0, 0xaf, 0xc3, 0x28, 0xe2, 0x28, 0xa1, 0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80, 0xff, 0xfe]),
    randomBytes(256 * 1024),
    Buffer.from([0x00]),
  ]);
}

describe('RedisResultStore (real Redis)', () => {
  const url = process.env.REDIS_URL;
  const keys = new RedisKeys(`t-storage-${randomUUID()}`);
  let redis: Redis;
  let store: RedisResultStore;

  beforeAll(async () => {
    if (!url) throw new Error('REDIS_URL is not set: run through the e2e project (its global setup starts Redis)');
    redis = new Redis(url, { maxRetriesPerRequest: 1 });
    await redis.ping();
    store = new RedisResultStore(redis, keys, TTL_S);
  });
  afterAll(async () => {
    if (!redis) return;
    const leftovers = await redis.keys(`${keys.prefix}:*`);
    if (leftovers.length) await redis.del(...leftovers);
    await store.close();
    await redis.quit();
  });

  const jobId = () => `job-${randomUUID()}`;

  it('round-trips binary images byte for byte, stored as raw bytes (not base64)', async () => {
    const id = jobId();
    const bytes = hostileBytes();
    await store.putImage(id, 0, bytes, 'image/png');
    await store.putImage(id, 1, Buffer.alloc(0), 'image/webp');

    const got = await store.getImage(id, 0);
    expect(got?.contentType).toBe('image/png');
    expect(Buffer.isBuffer(got?.bytes)).toBe(true);
    expect(got!.bytes.equals(bytes)).toBe(true);
    expect(await store.getImage(id, 1)).toEqual({ bytes: Buffer.alloc(0), contentType: 'image/webp' });
    expect(await store.getImage(id, 2)).toBeUndefined();

    // the stored value is the raw bytes: same length, same content
    expect(await redis.hstrlen(keys.image(id, 0), 'b')).toBe(bytes.length);
    expect((await redis.hgetBuffer(keys.image(id, 0), 'b'))!.equals(bytes)).toBe(true);
  });

  it('rewriting an image replaces both bytes and content type', async () => {
    const id = jobId();
    await store.putImage(id, 0, Buffer.from([1, 2, 3]), 'image/png');
    await store.putImage(id, 0, Buffer.from([4, 5]), 'image/jpeg');
    expect(await store.getImage(id, 0)).toEqual({ bytes: Buffer.from([4, 5]), contentType: 'image/jpeg' });
  });

  it('sets a TTL on every key it writes: TTL for image and record, 7× TTL for the tombstone', async () => {
    const id = jobId();
    await store.putImage(id, 0, randomBytes(10), 'image/png');
    await store.putRecord(id, { id, status: 'succeeded' });

    const written = await redis.keys(`${keys.prefix}:*${id}*`);
    expect(written.sort()).toEqual([keys.image(id, 0), keys.jobRecord(id), keys.jobTombstone(id)].sort());
    for (const key of written) expect(await redis.pttl(key)).toBeGreaterThan(0);

    const ttlMs = TTL_S * 1000;
    for (const key of [keys.image(id, 0), keys.jobRecord(id)]) {
      const pttl = await redis.pttl(key);
      expect(pttl).toBeGreaterThan(ttlMs - 5000);
      expect(pttl).toBeLessThanOrEqual(ttlMs);
    }
    const tomb = await redis.pttl(keys.jobTombstone(id));
    expect(tomb).toBeGreaterThan(ttlMs * TOMBSTONE_TTL_FACTOR - 5000);
    expect(tomb).toBeLessThanOrEqual(ttlMs * TOMBSTONE_TTL_FACTOR);
  });

  it('putRecord overwrites and refreshes the TTL', async () => {
    const id = jobId();
    await store.putRecord(id, { v: 1 });
    await redis.pexpire(keys.jobRecord(id), 1000);
    await store.putRecord(id, { v: 2, nested: { list: [1, 'ü', null] } });
    expect(await store.getRecord(id)).toEqual({ v: 2, nested: { list: [1, 'ü', null] } });
    expect(await redis.pttl(keys.jobRecord(id))).toBeGreaterThan(TTL_S * 1000 - 5000);
  });

  it('wasExpired: false while live or unknown, true once the record is gone but the tombstone remains', async () => {
    const id = jobId();
    expect(await store.wasExpired(id)).toBe(false);
    await store.putImage(id, 0, randomBytes(10), 'image/png');
    expect(await store.wasExpired(id)).toBe(false);
    await store.putRecord(id, { id });
    expect(await store.wasExpired(id)).toBe(false);

    await redis.del(keys.jobRecord(id)); // what the record's TTL does
    expect(await store.getRecord(id)).toBeUndefined();
    expect(await store.wasExpired(id)).toBe(true);

    await redis.del(keys.jobTombstone(id));
    expect(await store.wasExpired(id)).toBe(false);
  });

  it('delete removes the record, every image and the tombstone, and nothing of other jobs', async () => {
    const id = jobId();
    const other = jobId();
    for (let i = 0; i < 12; i++) await store.putImage(id, i, randomBytes(8), 'image/png');
    await store.putRecord(id, { id });
    await store.putImage(other, 0, randomBytes(8), 'image/png');
    await store.putRecord(other, { id: other });

    await store.delete(id);
    expect(await redis.keys(`${keys.prefix}:*${id}*`)).toEqual([]);
    expect(await store.wasExpired(id)).toBe(false);
    expect(await store.getRecord(other)).toEqual({ id: other });
    expect(await store.getImage(other, 0)).toBeDefined();
  });

  it('a prefix with glob characters is matched literally on delete', async () => {
    const odd = new RedisResultStore(redis, new RedisKeys(`{t-storage}*?[x]-${randomUUID()}`), TTL_S);
    const id = jobId();
    await odd.putImage(id, 0, randomBytes(8), 'image/png');
    await store.putImage(id, 0, randomBytes(8), 'image/png');
    await odd.delete(id);
    expect(await odd.getImage(id, 0)).toBeUndefined();
    expect(await store.getImage(id, 0)).toBeDefined();
  });

  it('rejects traversal-like ids and bad content types before touching Redis', async () => {
    for (const bad of ['', '../x', 'a:b', 'a*', 'a b']) {
      await expect(store.getRecord(bad)).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
      await expect(store.putImage(bad, 0, Buffer.from('x'), 'image/png')).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
    }
    await expect(store.putImage(jobId(), 0, Buffer.from('x'), 'image/png\r\nX: y')).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
  });

  it('an unreachable Redis surfaces as redis_unavailable', async () => {
    const dead = new Redis(url!, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    try {
      const s = new RedisResultStore(dead, keys, TTL_S);
      const err = await s.getRecord(jobId()).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).code).toBe(ErrorCode.RedisUnavailable);
    } finally {
      dead.disconnect();
    }
  });
});

describe('StorageModule.forRoot() with RESULT_STORE=redis (real Redis)', () => {
  it('provides a RedisResultStore under QUEUE_PREFIX and closes its client on shutdown', async () => {
    const prefix = `t-storage-mod-${randomUUID()}`;
    const env = loadEnv({ REDIS_URL: process.env.REDIS_URL, QUEUE_PREFIX: prefix, RESULT_STORE: 'redis' });
    const moduleRef = await Test.createTestingModule({ imports: [ConfigModule.forRoot(env), StorageModule.forRoot()] }).compile();
    const app = moduleRef.createNestApplication();
    await app.init();
    const client = app.get<Redis>(REDIS_CLIENT);
    try {
      const store = app.get(ResultStore);
      expect(store).toBeInstanceOf(RedisResultStore);
      await store.putRecord('job-1', { ok: true });
      expect(await client.get(new RedisKeys(prefix).jobRecord('job-1'))).toBe('{"ok":true}');
      await store.delete('job-1');
    } finally {
      await app.close();
    }
    expect(client.status).toBe('end');
  });
});
