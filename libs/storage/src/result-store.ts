/** Opaque JSON object: the final job resource snapshot, written by the worker. */
export interface JobRecord {
  [k: string]: unknown;
}

export interface StoredImage {
  bytes: Buffer;
  contentType: string;
}

/** How much longer than the results a job's tombstone lives (so an old id answers 410, not 404). */
export const TOMBSTONE_TTL_FACTOR = 7;

/**
 * Port for finished job results: the job record and its images, kept for RESULT_TTL_SECONDS.
 * Adapters: RedisResultStore (shared by every API and worker instance) and FsResultStore (one host).
 */
export abstract class ResultStore {
  abstract putImage(jobId: string, index: number, bytes: Buffer, contentType: string): Promise<void>;
  abstract getImage(jobId: string, index: number): Promise<StoredImage | undefined>;
  /** Overwrites the record; refreshes its TTL and the tombstone. */
  abstract putRecord(jobId: string, record: JobRecord): Promise<void>;
  abstract getRecord(jobId: string): Promise<JobRecord | undefined>;
  /** True when the job existed but its retention ran out (tombstone kept ~ 7× TTL, small). */
  abstract wasExpired(jobId: string): Promise<boolean>;
  /** Forgets the job entirely: record, images and tombstone. */
  abstract delete(jobId: string): Promise<void>;
  abstract close(): Promise<void>;
}
