import { type ArgumentsHost, Logger } from '@nestjs/common';
import { DomainError, ErrorCode } from '@app/common';
import { ApiError } from '../common/api-error';
import { OpenAiExceptionFilter } from './openai-error.filter';

/** Runs the filter on one exception and returns what it wrote. */
function answer(exception: unknown): { status: number; headers: Record<string, string>; body: { error: { message: string; type: string; param: string | null; code: string | null } } } {
  const headers: Record<string, string> = {};
  const out = { status: 0, headers, body: undefined as unknown };
  const res = {
    headersSent: false,
    setHeader: (k: string, v: string) => void (headers[k.toLowerCase()] = v),
    status(code: number) {
      out.status = code;
      return this;
    },
    json(body: unknown) {
      out.body = body;
      return this;
    },
  };
  const req = { id: 'req-1', path: '/v1/images/generations', method: 'POST', route: { path: '/v1/images/generations' } };
  const host = { switchToHttp: () => ({ getRequest: () => req, getResponse: () => res }) } as unknown as ArgumentsHost;
  new OpenAiExceptionFilter().catch(exception, host);
  return out as ReturnType<typeof answer>;
}

describe('OpenAiExceptionFilter', () => {
  // The 500 case logs its stack on purpose; the spec reads the answer, not the log.
  beforeAll(() => Logger.overrideLogger(false));

  it("an unknown model is OpenAI's 404 model_not_found on param model, not to be retried", () => {
    const a = answer(new DomainError(ErrorCode.UnknownModel, 'Unknown model "gpt-image-1"', { model: 'gpt-image-1' }));
    expect(a.status).toBe(404);
    expect(a.body.error).toEqual({ message: 'Unknown model "gpt-image-1"', type: 'invalid_request_error', param: 'model', code: 'model_not_found' });
    expect(a.headers['x-should-retry']).toBe('false');
    expect(a.headers['x-request-id']).toBe('req-1');
  });

  it("validation problems name OpenAI's parameter and speak its names", () => {
    const message = 'num_images must be between 1 and 4 for model m';
    const a = answer(new DomainError(ErrorCode.ValidationFailed, message, [{ field: 'num_images', message }]));
    expect(a.status).toBe(400);
    expect(a.body.error).toEqual({ message: 'n must be between 1 and 4 for model m', type: 'invalid_request_error', param: 'n', code: 'validation_failed' });
    expect(a.headers['x-should-retry']).toBe('false');
  });

  it('401 is authentication_error / invalid_api_key and keeps WWW-Authenticate', () => {
    const a = answer(new ApiError(ErrorCode.Unauthorized, 'A valid API key is required', undefined, { 'WWW-Authenticate': 'Bearer realm="fictures"' }));
    expect([a.status, a.body.error.type, a.body.error.code]).toEqual([401, 'authentication_error', 'invalid_api_key']);
    expect(a.headers['www-authenticate']).toBe('Bearer realm="fictures"');
  });

  it('429 keeps Retry-After and is left to the SDK to retry', () => {
    const limited = answer(new ApiError(ErrorCode.RateLimited, 'Too many submissions', undefined, { 'Retry-After': '12' }));
    expect([limited.status, limited.body.error.type, limited.body.error.code]).toEqual([429, 'rate_limit_error', 'rate_limit_exceeded']);
    expect(limited.headers['retry-after']).toBe('12');
    expect(limited.headers['x-should-retry']).toBeUndefined();
    const quota = answer(new ApiError(ErrorCode.QuotaExceeded, 'Too many jobs at once'));
    expect([quota.status, quota.body.error.type, quota.body.error.code]).toEqual([429, 'insufficient_quota', 'quota_exceeded']);
  });

  it('503s are retryable; a job that failed after its own retries is not', () => {
    const busy = answer(new ApiError(ErrorCode.NoCapacity, 'No GPU worker', undefined, { 'Retry-After': '7' }));
    expect([busy.status, busy.body.error.type, busy.body.error.code]).toEqual([503, 'server_error', 'no_capacity']);
    expect(busy.headers['x-should-retry']).toBeUndefined();
    const failed = answer(new ApiError(ErrorCode.ComfyUiExecutionError, 'CUDA out of memory', { job_id: 'j' }));
    expect([failed.status, failed.body.error.type]).toEqual([502, 'server_error']);
    expect(failed.headers['x-should-retry']).toBe('false');
  });

  it('an unexpected error is a 500 with an error id and nothing internal', () => {
    const a = answer(new Error('secret internals of the database driver'));
    expect([a.status, a.body.error.type, a.body.error.code]).toEqual([500, 'server_error', 'internal_error']);
    expect(a.body.error.message).toMatch(/^Internal error \(error id [0-9a-f-]{36}\)$/);
    expect(JSON.stringify(a.body)).not.toContain('secret');
  });
});
