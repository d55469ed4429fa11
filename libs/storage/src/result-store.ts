import { Readable } from 'node:stream';

/** Opaque JSON object: the final job resource snapshot, written by the worker. */
export interface JobRecord {
  [k: string]: unknown;
}

export interface StoredImage {
  bytes: Buffer;
  contentType: string;
}

/** An image being read: the body is consumed (or destroyed) by the caller. */
export interface ImageStream {
  contentType: string;
  /** Known for every adapter here; a foreign object may not say. */
  contentLength?: number;
  body: Readable;
}

/** What is known of an input image (an upload or a data: URL), checked and decoded by the API. */
export interface InputImageMeta {
  /** API key id of the uploader; absent when the server runs open. */
  owner?: string;
  content_type: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  created_at: number;
}

export interface StoredInput {
  bytes: Buffer;
  meta: InputImageMeta;
}

/** How much longer than the results a job's tombstone lives (so an old id answers 410, not 404). */
export const TOMBSTONE_TTL_FACTOR = 7;

/**
 * Port for finished job results: the job record and its images, kept for RESULT_TTL_SECONDS.
 * Adapters: RedisResultStore (shared by every API and worker instance), FsResultStore (one host) and
 * S3ResultStore (images in a bucket, records in Redis).
 */
export abstract class ResultStore {
  abstract putImage(jobId: string, index: number, bytes: Buffer, contentType: string): Promise<void>;
  abstract getImage(jobId: string, index: number): Promise<StoredImage | undefined>;

  /**
   * For downloads: the image as a stream, so a large one is never held whole in memory where the
   * adapter can avoid it. Adapters that keep images in memory anyway answer from getImage.
   */
  async openImage(jobId: string, index: number): Promise<ImageStream | undefined> {
    const image = await this.getImage(jobId, index);
    if (!image) return undefined;
    return { contentType: image.contentType, contentLength: image.bytes.length, body: Readable.from([image.bytes]) };
  }

  /**
   * A URL the client may fetch the image from itself (a CDN, a public bucket, a signed link), or
   * undefined: serve it through the API. `expires` says the link stops working before the job does.
   */
  async imageLink(_jobId: string, _index: number): Promise<{ url: string; expires: boolean } | undefined> {
    return undefined;
  }
  /** An input image for img2img/inpainting, kept as long as results (RESULT_TTL_SECONDS). */
  abstract putInput(id: string, input: StoredInput): Promise<void>;
  abstract getInput(id: string): Promise<StoredInput | undefined>;

  /** Overwrites the record; refreshes its TTL and the tombstone. */
  abstract putRecord(jobId: string, record: JobRecord): Promise<void>;
  abstract getRecord(jobId: string): Promise<JobRecord | undefined>;
  /** True when the job existed but its retention ran out (tombstone kept ~ 7× TTL, small). */
  abstract wasExpired(jobId: string): Promise<boolean>;
  /** Forgets the job entirely: record, images and tombstone. */
  abstract delete(jobId: string): Promise<void>;
  abstract close(): Promise<void>;
}
