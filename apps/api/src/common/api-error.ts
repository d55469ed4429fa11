import { DomainError, ErrorCode } from '@app/common';

/** HTTP status for each stable error code. The one place where codes meet HTTP. */
export const STATUS_BY_CODE: Record<string, number> = {
  [ErrorCode.ValidationFailed]: 400,
  [ErrorCode.InvalidJson]: 400,
  [ErrorCode.UnknownModel]: 400,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.SignedUrlInvalid]: 403,
  [ErrorCode.SignedUrlExpired]: 403,
  [ErrorCode.NotSupported]: 400,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.JobNotFound]: 404,
  [ErrorCode.ImageNotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.JobFinished]: 409,
  [ErrorCode.Canceled]: 409,
  [ErrorCode.JobExpired]: 410,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.IdempotencyKeyReused]: 422,
  [ErrorCode.InvalidWebhookUrl]: 422,
  [ErrorCode.InvalidImage]: 400,
  [ErrorCode.ImageTooLarge]: 413,
  [ErrorCode.MaskSizeMismatch]: 422,
  [ErrorCode.InvalidImageUrl]: 422,
  // A permanent property of this deployment, not a hiccup: 422, not 503.
  [ErrorCode.WebhooksDisabled]: 422,
  [ErrorCode.ContentPolicy]: 422,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.QuotaExceeded]: 429,
  [ErrorCode.ComfyUiRejected]: 502,
  [ErrorCode.ComfyUiExecutionError]: 502,
  [ErrorCode.ComfyUiUnavailable]: 502,
  [ErrorCode.ComfyUiTimeout]: 502,
  [ErrorCode.PromptLost]: 502,
  [ErrorCode.OutputFetchFailed]: 502,
  [ErrorCode.JobStalled]: 502,
  [ErrorCode.RedisUnavailable]: 503,
  [ErrorCode.ReplicationUnconfirmed]: 503,
  [ErrorCode.StorageUnavailable]: 503,
  [ErrorCode.StorageFull]: 503,
  [ErrorCode.QueueFull]: 503,
  [ErrorCode.NoCapacity]: 503,
  [ErrorCode.ModelUnavailable]: 503,
  [ErrorCode.SyncTimeout]: 504,
  [ErrorCode.InternalError]: 500,
};

/**
 * Retry-After of storage_full: Redis gets room back as results expire or jobs are deleted, which
 * no client can hurry, so callers back off for longer than a blink.
 */
export const STORAGE_FULL_RETRY_AFTER_S = 30;

/** A DomainError that also asks for response headers (Retry-After, Location…). */
export class ApiError extends DomainError {
  constructor(code: string, message: string, details?: unknown, readonly headers: Record<string, string> = {}) {
    super(code, message, details);
  }
}

/** ioredis/BullMQ errors that mean "Redis is not there right now". */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|Stream isn't writeable|MaxRetriesPerRequest|Reached the max retries|connect ETIMEDOUT|LOADING|Command timed out|closed before/i.test(
    err.message,
  );
}
