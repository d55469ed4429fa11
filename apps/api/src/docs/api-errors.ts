import { applyDecorators } from '@nestjs/common';
import { ApiResponse, getSchemaPath } from '@nestjs/swagger';
import { ErrorCode } from '@app/common';
import { STATUS_BY_CODE } from '../common/api-error';
import { ErrorResponseDto } from '../common/dto/error-response.dto';

/** An example message per code, for the documented examples (the real messages name the field or job). */
const EXAMPLE_MESSAGE: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.ValidationFailed]: 'width must be between 256 and 2048',
  [ErrorCode.InvalidJson]: 'The body is not valid JSON',
  [ErrorCode.UnknownModel]: 'Unknown model "sdxl"; GET /api/v1/models lists them',
  [ErrorCode.Unauthorized]: 'A valid API key is required (Authorization: Bearer <key>, or X-API-Key: <key>)',
  [ErrorCode.JobNotFound]: 'No job 0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f',
  [ErrorCode.ImageNotFound]: 'Job 0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f has no image 3',
  [ErrorCode.JobFinished]: 'Job 0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f has already ended (succeeded)',
  [ErrorCode.Canceled]: 'The job was canceled',
  [ErrorCode.JobExpired]: 'Job 0b8f3c1e-5d2a-4c7e-9f10-2a3b4c5d6e7f has expired; results are kept 86400 s',
  [ErrorCode.PayloadTooLarge]: 'The body is too large',
  [ErrorCode.UnsupportedMediaType]: 'The body must be JSON in UTF-8 (Content-Type: application/json)',
  [ErrorCode.IdempotencyKeyReused]: 'This Idempotency-Key was used with a different body',
  [ErrorCode.InvalidWebhookUrl]: 'webhook_url must be a public http(s) URL',
  [ErrorCode.WebhooksDisabled]: 'Webhooks are not enabled on this server (no WEBHOOK_SECRET)',
  [ErrorCode.InvalidImage]: 'image is not a PNG, JPEG or WebP that decodes',
  [ErrorCode.ImageTooLarge]: 'image is larger than 4096 px on a side',
  [ErrorCode.MaskSizeMismatch]: 'mask is 512×512 but image is 1024×768',
  [ErrorCode.InvalidImageUrl]: 'image must be an https URL on a public host',
  [ErrorCode.ContentPolicy]: 'The prompt is not allowed by the content policy',
  [ErrorCode.RateLimited]: 'Too many requests; retry after the Retry-After seconds',
  [ErrorCode.QuotaExceeded]: 'This key already has its maximum of jobs queued or running',
  [ErrorCode.ComfyUiExecutionError]: 'ComfyUI failed to execute the prompt',
  [ErrorCode.ComfyUiUnavailable]: 'ComfyUI could not be reached',
  [ErrorCode.RedisUnavailable]: 'The job store is unavailable; try again shortly',
  [ErrorCode.StorageUnavailable]: 'The image store is unavailable; try again shortly',
  [ErrorCode.StorageFull]: 'Storage is nearly full; try again once older results have expired',
  [ErrorCode.QueueFull]: 'Too many jobs are waiting; try again later',
  [ErrorCode.NoCapacity]: 'No GPU worker can take a job right now; retry later',
  [ErrorCode.ModelUnavailable]: 'No GPU worker has the files of model qwen-image-lightning-4step right now; retry later',
  [ErrorCode.SyncTimeout]: 'The image is not ready after 120000 ms; poll the job',
  [ErrorCode.InternalError]: 'Internal error',
  [ErrorCode.SignedUrlInvalid]: 'This image link is not valid',
  [ErrorCode.SignedUrlExpired]: 'This image link has expired; read the job again for a fresh one',
  [ErrorCode.NotFound]: 'No route GET /nothing',
  [ErrorCode.ReplicationUnconfirmed]: 'The job was accepted but its copy on the Redis replicas is not confirmed; retry with the same Idempotency-Key',
};

const RETRY_AFTER = new Set<number>([429, 503]);

/** Codes every route behind the API key can answer. */
export const KEYED_ROUTE_CODES = [ErrorCode.Unauthorized, ErrorCode.RateLimited, ErrorCode.RedisUnavailable, ErrorCode.InternalError] as const;

/** The failures a job can end with, which the synchronous route answers as errors. */
export const JOB_FAILURE_CODES = [
  ErrorCode.ComfyUiRejected, ErrorCode.ComfyUiExecutionError, ErrorCode.ComfyUiUnavailable, ErrorCode.ComfyUiTimeout,
  ErrorCode.PromptLost, ErrorCode.OutputFetchFailed, ErrorCode.JobStalled, ErrorCode.Canceled,
] as const;

/**
 * The error responses of a route, from its codes: grouped by the status the exception filter gives
 * each code (STATUS_BY_CODE, so the document cannot disagree with the API), each status with the
 * one error schema, the codes in its description and an example per code.
 */
export function ApiErrors(...codes: ErrorCode[]): MethodDecorator & ClassDecorator {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = STATUS_BY_CODE[code];
    if (status === undefined) throw new Error(`ApiErrors: ${code} has no HTTP status in STATUS_BY_CODE`);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const decorators = [...byStatus.entries()]
    .sort(([a], [b]) => a - b)
    .map(([status, list]) =>
      ApiResponse({
        status,
        description: `${list.map((c) => `\`${c}\``).join(', ')}${RETRY_AFTER.has(status) ? ' (see the Retry-After header)' : ''}`,
        ...(RETRY_AFTER.has(status) ? { headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } } } } : {}),
        content: {
          'application/json': {
            schema: { $ref: getSchemaPath(ErrorResponseDto) },
            examples: Object.fromEntries(
              list.map((code) => [code, { summary: code, value: { error: { code, message: EXAMPLE_MESSAGE[code] ?? code.replace(/_/g, ' ') }, request_id: 'b7c1f1a4-0d0e-4d52-9c1a-3f1e2b9f6a10' } }]),
            ),
          },
        },
      }),
    );
  return applyDecorators(...decorators);
}
