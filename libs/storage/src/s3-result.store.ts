import { DomainError, ErrorCode } from '@app/common';
import {
  DeleteObjectCommand, GetObjectCommand, type GetObjectCommandOutput, ListObjectsV2Command, type ListObjectsV2CommandOutput,
  PutObjectCommand, S3Client, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Logger } from '@nestjs/common';
import { Readable } from 'node:stream';
import { ImageStream, JobRecord, ResultStore, StoredImage, type StoredInput } from './result-store';
import { assertContentType, assertImageBytes, assertImageIndex, assertJobId, JOB_ID_PATTERN } from './storage-validation';

/** Object metadata (x-amz-meta-expires-at) holding the end of the job's retention, ISO 8601. */
export const EXPIRES_AT_META = 'expires-at';

/** Deletes in flight at once while sweeping: enough to keep up, few enough not to be throttled. */
const SWEEP_CONCURRENCY = 8;

export interface S3ClientSettings {
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  timeoutMs: number;
}

/**
 * Client options for any S3-compatible store. Credentials are left to the SDK's default chain
 * (AWS_ACCESS_KEY_ID…, profiles, instance roles): this code never sees them.
 */
export function s3ClientConfig(s: S3ClientSettings): S3ClientConfig {
  return {
    region: s.region,
    ...(s.endpoint ? { endpoint: s.endpoint } : {}),
    forcePathStyle: s.forcePathStyle,
    // Connect and first-byte deadlines per attempt, and an idle deadline that also covers a download's body.
    requestHandler: { connectionTimeout: s.timeoutMs, requestTimeout: s.timeoutMs, throwOnRequestTimeout: true, socketTimeout: s.timeoutMs },
    // The SDK's default CRC32 checksums on every call are refused by several S3-compatible stores
    // (GCS interop, older MinIO and R2 releases); only send them where the API requires one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  };
}

export interface S3ResultStoreOptions {
  bucket: string;
  /** '' or a prefix; a trailing / is added when missing. */
  prefix: string;
  ttlSeconds: number;
  /** Deadline of one store call, SDK retries included. */
  timeoutMs: number;
  /** Public origin of the bucket (CDN): links are <publicBaseUrl>/<key>. */
  publicBaseUrl?: string;
  /** > 0 and no public base URL: links are presigned GETs valid this long. */
  signedUrlTtlSeconds?: number;
  now?: () => number;
}

function errorName(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && typeof (err as Error).name === 'string' ? (err as Error).name : undefined;
}

/**
 * Images in an S3-compatible bucket as `<prefix><jobId>/<index>`, with their content type, cache
 * headers and the job's expiry (the `Expires` header and x-amz-meta-expires-at). Job records and
 * tombstones stay in the records store (Redis): they are small, change often and must be shared
 * without a bucket round trip.
 *
 * Retention: reads refuse an object past its expiry, and sweep() deletes such objects (from one
 * process at a time, see startSweeper); a bucket lifecycle rule may do the deleting instead.
 * Every failure to reach the bucket — down, hung, refusing our credentials, no such bucket — is a
 * DomainError `storage_unavailable`; every call has a deadline.
 */
export class S3ResultStore extends ResultStore {
  private readonly logger = new Logger(S3ResultStore.name);
  private readonly prefix: string;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private sweeper?: NodeJS.Timeout;
  private sweeping?: Promise<number>;

  /** The S3 client and the records store are owned by the caller's factory; close() closes them. */
  constructor(
    private readonly s3: S3Client,
    private readonly records: ResultStore,
    private readonly opts: S3ResultStoreOptions,
  ) {
    super();
    if (!Number.isSafeInteger(opts.ttlSeconds) || opts.ttlSeconds < 1) throw new RangeError(`ttlSeconds must be a positive integer, got ${opts.ttlSeconds}`);
    this.prefix = opts.prefix && !opts.prefix.endsWith('/') ? `${opts.prefix}/` : opts.prefix;
    this.ttlMs = opts.ttlSeconds * 1000;
    this.now = opts.now ?? Date.now;
  }

  /** The object key of an image. */
  key(jobId: string, index: number): string {
    return `${this.prefix}${jobId}/${index}`;
  }

  async putImage(jobId: string, index: number, bytes: Buffer, contentType: string): Promise<void> {
    assertJobId(jobId);
    assertImageIndex(index);
    assertImageBytes(bytes);
    assertContentType(contentType);
    const expiresAt = new Date(this.now() + this.ttlMs);
    await this.call('put', (abortSignal) =>
      this.s3.send(
        new PutObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.key(jobId, index),
          Body: bytes,
          ContentLength: bytes.length,
          ContentType: contentType,
          // What a CDN or a browser reading the bucket directly sees; a job's image never changes.
          CacheControl: `${this.opts.publicBaseUrl ? 'public' : 'private'}, max-age=${this.opts.ttlSeconds}, immutable`,
          Expires: expiresAt,
          Metadata: { [EXPIRES_AT_META]: expiresAt.toISOString() },
        }),
        { abortSignal },
      ),
    );
  }

  async getImage(jobId: string, index: number): Promise<StoredImage | undefined> {
    const image = await this.openImage(jobId, index);
    if (!image) return undefined;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of image.body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
      return { bytes: Buffer.concat(chunks), contentType: image.contentType };
    } catch (err) {
      throw this.unavailable('get', err);
    }
  }

  override async openImage(jobId: string, index: number): Promise<ImageStream | undefined> {
    assertJobId(jobId);
    assertImageIndex(index);
    let out: GetObjectCommandOutput;
    try {
      // The deadline covers the answer's headers; the body then has the client's idle timeout.
      out = await this.call('get', (abortSignal) =>
        this.s3.send(new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(jobId, index) }), { abortSignal }),
      );
    } catch (err) {
      if (err instanceof DomainError && errorName(err.cause) === 'NoSuchKey') return undefined;
      throw err;
    }
    const body = out.Body instanceof Readable ? out.Body : undefined;
    if (!body) throw this.unavailable('get', new Error('GetObject answered without a readable body'));
    const expiresAt = Date.parse(out.Metadata?.[EXPIRES_AT_META] ?? '');
    if (Number.isFinite(expiresAt) && expiresAt <= this.now()) {
      // Past retention but not swept yet: gone, as in the other stores.
      body.destroy();
      return undefined;
    }
    return { contentType: out.ContentType ?? 'application/octet-stream', contentLength: out.ContentLength, body };
  }

  override async imageLink(jobId: string, index: number): Promise<{ url: string; expires: boolean } | undefined> {
    assertJobId(jobId);
    assertImageIndex(index);
    const key = this.key(jobId, index);
    if (this.opts.publicBaseUrl) {
      const path = key.split('/').map(encodeURIComponent).join('/');
      return { url: `${this.opts.publicBaseUrl.replace(/\/$/, '')}/${path}`, expires: false };
    }
    const ttl = this.opts.signedUrlTtlSeconds ?? 0;
    if (ttl <= 0) return undefined;
    // No request to the bucket, but credentials may have to be resolved (and fail).
    const url = await this.call('sign', () =>
      getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.opts.bucket, Key: key }), { expiresIn: ttl, signingDate: new Date(this.now()) }),
    );
    return { url, expires: true };
  }

  putRecord(jobId: string, record: JobRecord): Promise<void> {
    return this.records.putRecord(jobId, record);
  }

  getRecord(jobId: string): Promise<JobRecord | undefined> {
    return this.records.getRecord(jobId);
  }

  /** The bytes go to the bucket (expired by the same sweep as images), the metadata beside the records. */
  async putInput(id: string, input: StoredInput): Promise<void> {
    await this.putImage(`input_${id}`, 0, input.bytes, input.meta.content_type);
    await this.records.putInput(id, { bytes: Buffer.alloc(0), meta: input.meta });
  }

  async getInput(id: string): Promise<StoredInput | undefined> {
    const meta = await this.records.getInput(id);
    if (!meta) return undefined;
    const image = await this.getImage(`input_${id}`, 0);
    return image ? { bytes: image.bytes, meta: meta.meta } : undefined;
  }

  wasExpired(jobId: string): Promise<boolean> {
    return this.records.wasExpired(jobId);
  }

  async delete(jobId: string): Promise<void> {
    assertJobId(jobId);
    const keys: string[] = [];
    await this.list(`${this.prefix}${jobId}/`, (o) => void keys.push(o.key));
    await this.deleteKeys(keys);
    await this.records.delete(jobId);
  }

  /** Deletes the images whose retention has ended. Returns how many objects it deleted. */
  async sweep(): Promise<number> {
    const run = (this.sweeping ?? Promise.resolve(0)).catch(() => 0).then(() => this.sweepOnce());
    this.sweeping = run;
    try {
      return await run;
    } finally {
      if (this.sweeping === run) this.sweeping = undefined;
    }
  }

  /**
   * Sweeps every intervalMs (the first one right away). `claim` decides whether this process does a
   * given round, so a fleet of API and worker processes lists the bucket once per interval, not once each.
   */
  startSweeper(intervalMs: number, claim: () => Promise<boolean> = async () => true): void {
    this.stopSweeper();
    const tick = () => {
      claim()
        .then((mine) => (mine ? this.sweep() : 0))
        .then((n) => n && this.logger.log(`Deleted ${n} expired result object(s)`))
        .catch((err: unknown) => this.logger.warn(`Result sweep failed: ${err instanceof Error ? err.message : String(err)}`));
    };
    this.sweeper = setInterval(tick, intervalMs);
    this.sweeper.unref();
    tick();
  }

  async close(): Promise<void> {
    this.stopSweeper();
    await this.sweeping?.catch(() => undefined);
    await this.records.close();
    this.s3.destroy();
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private async sweepOnce(): Promise<number> {
    const now = this.now();
    const expired: string[] = [];
    // LastModified + TTL is the expiry written at upload; listing does not return metadata.
    // Only keys of our own shape are touched: other objects under the prefix are not ours.
    const ours = new RegExp(`^${this.prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^/]+)/\\d+$`);
    await this.list(this.prefix, (o) => {
      const m = ours.exec(o.key);
      if (m && JOB_ID_PATTERN.test(m[1]) && o.lastModified + this.ttlMs <= now) expired.push(o.key);
    });
    await this.deleteKeys(expired);
    return expired.length;
  }

  private async list(prefix: string, each: (o: { key: string; lastModified: number }) => void): Promise<void> {
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await this.call('list', (abortSignal) =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal }),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key) each({ key: o.Key, lastModified: o.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** One DeleteObject per key: multi-object delete is missing from some S3-compatible stores (GCS interop). */
  private async deleteKeys(keys: string[]): Promise<void> {
    let next = 0;
    const lane = async () => {
      while (next < keys.length) {
        const Key = keys[next++];
        await this.call('delete', (abortSignal) => this.s3.send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key }), { abortSignal }));
      }
    };
    await Promise.all(Array.from({ length: Math.min(SWEEP_CONCURRENCY, keys.length) }, lane));
  }

  /**
   * Runs one store call under a deadline (SDK retries included). The race is the guarantee: the
   * abort asks the SDK to stop, and the call answers at the deadline even if something ignores it.
   */
  private async call<T>(op: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`S3 ${op} timed out after ${this.opts.timeoutMs} ms`);
        err.name = 'TimeoutError';
        ac.abort(err);
        reject(err);
      }, this.opts.timeoutMs);
    });
    try {
      return await Promise.race([fn(ac.signal), deadline]);
    } catch (err) {
      throw this.unavailable(op, err);
    } finally {
      clearTimeout(timer);
    }
  }

  private unavailable(op: string, err: unknown): DomainError {
    if (err instanceof DomainError) return err;
    // Endpoint, bucket and the bucket's own words ride on `cause` for the logs, never in the details.
    const e = new DomainError(ErrorCode.StorageUnavailable, 'Object storage is unavailable', { operation: op });
    e.cause = err;
    return e;
  }
}
