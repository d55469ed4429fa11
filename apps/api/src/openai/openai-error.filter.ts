import { Catch } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ErrorCode } from '@app/common';
import { AllExceptionsFilter } from '../common/all-exceptions.filter';
import type { RouteMethods } from '../common/route-methods';

/** Paths of the OpenAI-compatible surface: their errors take OpenAI's shape. */
export const OPENAI_PATH = /^\/v1(\/|$)/;

/** OpenAI's error body: what its SDKs parse into APIError (message, type, param, code). */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Our codes with a well-known OpenAI equivalent; every other code is passed through as ours (stable too). */
const OPENAI_CODE: Record<string, string> = {
  [ErrorCode.Unauthorized]: 'invalid_api_key',
  [ErrorCode.UnknownModel]: 'model_not_found',
  [ErrorCode.RateLimited]: 'rate_limit_exceeded',
};

/** Our parameter names as OpenAI's clients know them. */
const OPENAI_PARAM: Record<string, string> = {
  num_images: 'n',
  output_quality: 'output_compression',
  width: 'size',
  height: 'size',
  aspect_ratio: 'size',
};

/** Failures of a job that already had its retries: asking again answers the same job, so the SDK must not. */
const JOB_FAILURES = new Set<string>([
  ErrorCode.ComfyUiRejected, ErrorCode.ComfyUiExecutionError, ErrorCode.ComfyUiUnavailable, ErrorCode.ComfyUiTimeout,
  ErrorCode.PromptLost, ErrorCode.OutputFetchFailed, ErrorCode.JobStalled, ErrorCode.Canceled,
]);

/** The model's limits are checked in our parameter names; say them in the names the client sent. */
function inOpenAiTerms(message: string): string {
  return message.replace(/\bnum_images\b/g, 'n').replace(/\boutput_quality\b/g, 'output_compression');
}

function typeFor(status: number, code: string): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return code === ErrorCode.QuotaExceeded ? 'insufficient_quota' : 'rate_limit_error';
  if (status < 500) return 'invalid_request_error';
  return 'server_error';
}

/** The field a problem is about, from our details ({field} or [{field}, …]), in OpenAI's names. */
function paramOf(code: string, details: unknown): string | null {
  if (code === ErrorCode.UnknownModel) return 'model';
  const first = Array.isArray(details) ? (details[0] as unknown) : details;
  const field = first && typeof first === 'object' && typeof (first as { field?: unknown }).field === 'string' ? (first as { field: string }).field : undefined;
  return field ? (OPENAI_PARAM[field] ?? field) : null;
}

/**
 * Errors of the /v1 routes in OpenAI's shape, `{error: {message, type, param, code}}`, with the
 * statuses the SDKs map to their error classes (400 BadRequestError, 401 AuthenticationError, 404
 * NotFoundError, 429 RateLimitError…). Everything else is the API's own filter: the same codes,
 * statuses, Retry-After and logging; a 500 keeps its error id in the message. Errors a retry cannot
 * change carry `x-should-retry: false`, which the SDKs obey.
 */
@Catch()
export class OpenAiExceptionFilter extends AllExceptionsFilter {
  constructor(routeMethods?: RouteMethods) {
    super(routeMethods);
  }

  /** For middleware that answers before any route (body parsing). */
  reply(res: Response, req: Request & { id?: string }, status: number, code: string, message: string): void {
    this.send(res, req, status, code, message);
  }

  protected override send(res: Response, req: Request & { id?: string }, status: number, code: string, message: string, details?: unknown): void {
    // A 404 is still 404 (an unknown model is OpenAI's 404 model_not_found, ours is a 400 elsewhere).
    const httpStatus = code === ErrorCode.UnknownModel ? 404 : status;
    const retryable = httpStatus === 408 || httpStatus === 409 || httpStatus === 429 || (httpStatus >= 500 && !JOB_FAILURES.has(code));
    if (!retryable) res.setHeader('x-should-retry', 'false');
    const errorId = code === ErrorCode.InternalError && details && typeof details === 'object' ? (details as { error_id?: string }).error_id : undefined;
    const body: OpenAiErrorBody = {
      error: {
        message: errorId ? `${message} (error id ${errorId})` : inOpenAiTerms(message),
        type: typeFor(httpStatus, code),
        param: paramOf(code, details),
        code: OPENAI_CODE[code] ?? code,
      },
    };
    if (req.id) res.setHeader('x-request-id', req.id);
    res.status(httpStatus).json(body);
  }
}
