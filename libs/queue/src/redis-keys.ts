import { Env } from '@app/config';

/**
 * Redis keys and channels the service owns besides BullMQ's, all under the queue prefix so one
 * Redis can host several deployments (and a {hash tag} prefix keeps them on one Cluster slot).
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** Written before a WAIT that must vouch for what an answer only read (an idempotent replay's job). */
  get replicationProbe(): string {
    return `${this.prefix}:replication-probe`;
  }
  /** Pub/sub channel the API publishes cancel requests on; workers subscribe. */
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
  /** Marks a job as canceled by the user (read by the worker that holds it, and on recovery). */
  cancelFlag(jobId: string): string {
    return `${this.prefix}:canceled:${jobId}`;
  }
  /** Pub/sub channel for live job events (status, progress) read by SSE on any API instance. */
  jobEvents(jobId: string): string {
    return `${this.prefix}:events:${jobId}`;
  }
  /** Final job record kept for RESULT_TTL_SECONDS after BullMQ prunes the job. */
  jobRecord(jobId: string): string {
    return `${this.prefix}:job:${jobId}`;
  }
  /** Tombstone so a job past retention answers 410 instead of 404. */
  jobTombstone(jobId: string): string {
    return `${this.prefix}:gone:${jobId}`;
  }
  image(jobId: string, index: number): string {
    return `${this.prefix}:img:${jobId}:${index}`;
  }
  /** An input image (upload or data: URL) for an edit: bytes, content type and metadata in one hash. */
  inputImage(id: string): string {
    return `${this.prefix}:input:${id}`;
  }
  /** Held by the one process that sweeps expired objects from the bucket this interval. */
  get resultSweepLock(): string {
    return `${this.prefix}:result-sweep`;
  }
  /** Result cache: SHA-256 of a resolved request → the succeeded job that answers it, while its images live. */
  resultCache(requestHash: string): string {
    return `${this.prefix}:rcache:${requestHash}`;
  }
  idempotency(owner: string, key: string): string {
    return `${this.prefix}:idem:${owner}:${key}`;
  }
  workerHeartbeat(workerId: string): string {
    return `${this.prefix}:worker:${workerId}`;
  }
  get workerHeartbeatPattern(): string {
    return `${this.prefix}:worker:*`;
  }
  webhookState(jobId: string): string {
    return `${this.prefix}:webhook:${jobId}`;
  }
  /** Set when a webhook URL answered 410 Gone: no more deliveries go to it while the key lives. */
  webhookGone(urlSha256: string): string {
    return `${this.prefix}:webhook-gone:${urlSha256}`;
  }
  /** API key record (a hash: name, display prefix, SHA-256 of the key, limits; never the key). */
  apiKey(keyId: string): string {
    return `${this.prefix}:apikey:${keyId}`;
  }
  /** Index SHA-256(key) → key id, for lookup by hash. */
  get apiKeyIndex(): string {
    return `${this.prefix}:apikey-index`;
  }
  /** Every key id ever created (revoked ones too), scored by creation time. */
  get apiKeys(): string {
    return `${this.prefix}:apikeys`;
  }
  /** The live (queued or running) job ids of one key, for its concurrency quota. */
  keyJobs(keyId: string): string {
    return `${this.prefix}:quota:${keyId}`;
  }
  /** One owner's jobs (a key id, or `-` on an open server), scored by submission time, for GET /api/v1/images/jobs. */
  ownerJobs(owner: string | undefined): string {
    return `${this.prefix}:owner-jobs:${owner ?? '-'}`;
  }
  /** Rate-limit counter base for one tracker (key id or client IP). */
  rateLimit(tracker: string): string {
    return `${this.prefix}:rl:${tracker}`;
  }
}

/** RedisKeys for the deployment's QUEUE_PREFIX, injected wherever keys are named. */
export const redisKeysProvider = {
  provide: RedisKeys,
  inject: [Env],
  useFactory: (env: Env): RedisKeys => new RedisKeys(env.QUEUE_PREFIX),
};
