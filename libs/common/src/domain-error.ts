/**
 * An error a lib throws on purpose: a stable code for programs, a message for people, optional
 * details that are safe to show. Only the API maps codes to HTTP statuses.
 */
export class DomainError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Stable error codes of the public API. Never rename a value once deployed. */
export enum ErrorCode {
  ValidationFailed = 'validation_failed',
  InvalidJson = 'invalid_json',
  PayloadTooLarge = 'payload_too_large',
  UnsupportedMediaType = 'unsupported_media_type',
  UnknownModel = 'unknown_model',
  JobNotFound = 'job_not_found',
  JobExpired = 'job_expired',
  ImageNotFound = 'image_not_found',
  JobFinished = 'job_finished',
  QueueFull = 'queue_full',
  NoCapacity = 'no_capacity',
  /** No live worker has the files of the requested model. */
  ModelUnavailable = 'model_unavailable',
  RedisUnavailable = 'redis_unavailable',
  /** The job was written, but WAIT did not see it reach REDIS_MIN_REPLICAS_ACK replicas in time: retry with the same Idempotency-Key. */
  ReplicationUnconfirmed = 'replication_unconfirmed',
  /** The object store (S3 bucket) does not answer or refuses our credentials. */
  StorageUnavailable = 'storage_unavailable',
  /** Redis is at (or near) its maxmemory: new work is refused until results expire or are removed. */
  StorageFull = 'storage_full',
  SyncTimeout = 'sync_timeout',
  IdempotencyKeyReused = 'idempotency_key_reused',
  InvalidWebhookUrl = 'invalid_webhook_url',
  /** An edit's image or mask is not a PNG, JPEG or WebP that decodes, or its upload is unknown. */
  InvalidImage = 'invalid_image',
  /** An input image over 20 MB or 4096 px a side. */
  ImageTooLarge = 'image_too_large',
  MaskSizeMismatch = 'mask_size_mismatch',
  /** An image URL that is not https on a public host, or that could not be fetched. */
  InvalidImageUrl = 'invalid_image_url',
  WebhooksDisabled = 'webhooks_disabled',
  Unauthorized = 'unauthorized',
  RateLimited = 'rate_limited',
  QuotaExceeded = 'quota_exceeded',
  ContentPolicy = 'content_policy',
  NotFound = 'not_found',
  /** A signed image link whose signature does not match (tampered, or signed with another secret). */
  SignedUrlInvalid = 'signed_url_invalid',
  /** A signed image link past its expiry. */
  SignedUrlExpired = 'signed_url_expired',
  /** A feature of a compatible API (OpenAI's) this server does not offer: said plainly, never faked. */
  NotSupported = 'not_supported',
  MethodNotAllowed = 'method_not_allowed',
  InternalError = 'internal_error',
  // failures recorded on a job
  ComfyUiRejected = 'comfyui_rejected',
  ComfyUiExecutionError = 'comfyui_execution_error',
  ComfyUiUnavailable = 'comfyui_unavailable',
  ComfyUiTimeout = 'comfyui_timeout',
  PromptLost = 'prompt_lost',
  OutputFetchFailed = 'output_fetch_failed',
  JobStalled = 'job_stalled',
  Canceled = 'canceled',
}
