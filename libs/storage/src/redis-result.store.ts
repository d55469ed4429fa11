import { DomainError, ErrorCode } from '@app/common';
import { type RedisKeys, scanKeys } from '@app/queue';
import type { ChainableCommander, Redis } from 'ioredis';
import { type InputImageMeta, JobRecord, ResultStore, StoredImage, type StoredInput, TOMBSTONE_TTL_FACTOR } from './result-store';
import {
  assertContentType, assertImageBytes, assertImageIndex, assertJobId, assertJobRecord, isJobRecord,
} from './storage-validation';
import { isRedisOutOfMemory, storageFullError } from './storage-full';

const CT_FIELD = 'ct';
const BYTES_FIELD = 'b';
const META_FIELD = 'm';

/** Escapes Redis glob metacharacters so a prefix is matched literally by SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Results in Redis, shared by every API and worker instance. Each image is one hash holding the raw
 * bytes (binary-safe, never base64) and the content type, so both appear or neither does. Every key
 * carries a TTL; the tombstone outlives the record so an expired job can be told from an unknown one.
 */
export class RedisResultStore extends ResultStore {
  private readonly tombstoneTtlSeconds: number;

  /** The client belongs to the caller (one connection per process); close() leaves it open. */
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly ttlSeconds: number,
  ) {
    super();
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError(`ttlSeconds must be a positive integer, got ${ttlSeconds}`);
    this.tombstoneTtlSeconds = ttlSeconds * TOMBSTONE_TTL_FACTOR;
  }

  async putImage(jobId: string, index: number, bytes: Buffer, contentType: string): Promise<void> {
    assertJobId(jobId);
    assertImageIndex(index);
    assertImageBytes(bytes);
    assertContentType(contentType);
    const key = this.keys.image(jobId, index);
    await this.exec(
      this.redis.multi()
        .del(key) // a rewrite must not inherit fields of an older value
        .hset(key, CT_FIELD, contentType, BYTES_FIELD, bytes)
        .expire(key, this.ttlSeconds),
    );
  }

  async getImage(jobId: string, index: number): Promise<StoredImage | undefined> {
    assertJobId(jobId);
    assertImageIndex(index);
    const [ct, bytes] = await this.call(() => this.redis.hmgetBuffer(this.keys.image(jobId, index), CT_FIELD, BYTES_FIELD));
    if (!ct || !bytes) return undefined;
    return { bytes, contentType: ct.toString('utf8') };
  }

  async putInput(id: string, input: StoredInput): Promise<void> {
    assertJobId(id);
    assertImageBytes(input.bytes);
    const key = this.keys.inputImage(id);
    await this.exec(
      this.redis.multi()
        .del(key)
        .hset(key, META_FIELD, JSON.stringify(input.meta), BYTES_FIELD, input.bytes)
        .expire(key, this.ttlSeconds),
    );
  }

  async getInput(id: string): Promise<StoredInput | undefined> {
    assertJobId(id);
    const [meta, bytes] = await this.call(() => this.redis.hmgetBuffer(this.keys.inputImage(id), META_FIELD, BYTES_FIELD));
    if (!meta || !bytes) return undefined;
    return { bytes, meta: JSON.parse(meta.toString('utf8')) as InputImageMeta };
  }

  async putRecord(jobId: string, record: JobRecord): Promise<void> {
    assertJobId(jobId);
    assertJobRecord(record);
    const json = JSON.stringify(record);
    await this.exec(
      this.redis.multi()
        .set(this.keys.jobRecord(jobId), json, 'EX', this.ttlSeconds)
        .set(this.keys.jobTombstone(jobId), '1', 'EX', this.tombstoneTtlSeconds),
    );
  }

  async getRecord(jobId: string): Promise<JobRecord | undefined> {
    assertJobId(jobId);
    const json = await this.call(() => this.redis.get(this.keys.jobRecord(jobId)));
    if (json === null) return undefined;
    const value: unknown = JSON.parse(json);
    if (!isJobRecord(value)) throw new Error(`Stored record of job ${jobId} is not a JSON object`);
    return value;
  }

  async wasExpired(jobId: string): Promise<boolean> {
    assertJobId(jobId);
    const [record, tombstone] = await this.exec(
      this.redis.multi().exists(this.keys.jobRecord(jobId)).exists(this.keys.jobTombstone(jobId)),
    );
    return record === 0 && tombstone === 1;
  }

  async delete(jobId: string): Promise<void> {
    assertJobId(jobId);
    const imageKeys = await this.scanImageKeys(jobId);
    const all = [this.keys.jobRecord(jobId), this.keys.jobTombstone(jobId), ...imageKeys];
    for (let i = 0; i < all.length; i += 500) {
      const batch = all.slice(i, i + 500);
      await this.call(() => this.redis.unlink(...batch));
    }
  }

  async close(): Promise<void> {
    // The Redis client is owned by whoever created it.
  }

  /** Image keys of one job. The image count is not stored, so they are found by SCAN. */
  private async scanImageKeys(jobId: string): Promise<string[]> {
    // image(jobId, 0) = "<prefix>:img:<jobId>:0" -> match "<prefix>:img:<jobId>:*"
    const sample = this.keys.image(jobId, 0);
    const match = `${globEscape(sample.slice(0, -1))}*`;
    return this.call(() => scanKeys(this.redis, match, 1000));
  }

  /** Runs a MULTI and unwraps its replies, surfacing the first command error. */
  private async exec(multi: ChainableCommander): Promise<unknown[]> {
    const replies = await this.call(() => multi.exec());
    if (!replies) throw new Error('Redis transaction was aborted');
    return replies.map(([err, value]) => {
      if (err) throw isRedisOutOfMemory(err) ? storageFullError(err) : err;
      return value;
    });
  }

  /**
   * Connection failures and a Redis over its maxmemory become domain errors the API answers with
   * 503 and the worker retries; other Redis replies pass through.
   */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isRedisOutOfMemory(err)) throw storageFullError(err);
      // Structural check: socket errors come from node core, not always `instanceof Error` here (Jest realms).
      if (typeof err === 'object' && err !== null && (err as Error).name !== 'ReplyError') {
        // The message names hosts and ports, so it rides on `cause` for logs, not in the details.
        const unavailable = new DomainError(ErrorCode.RedisUnavailable, 'Result store is unavailable');
        unavailable.cause = err;
        throw unavailable;
      }
      throw err;
    }
  }
}
