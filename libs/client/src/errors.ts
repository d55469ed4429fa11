import type { components } from './generated/schema';

export type ErrorCode = components['schemas']['ErrorCode'];

/** Codes the client itself reports, when no answer of the API says otherwise. */
export type ClientErrorCode = 'network_error' | 'timeout' | 'aborted' | 'bad_response';

/**
 * Every failure of the client: an error answer of the API (its stable `code`, HTTP `status`,
 * `retryAfter` in seconds when it said when to come back, `details`, `requestId`), a job that ended
 * failed or canceled (`job` set, `status` 0), or a network failure or timeout (`status` 0).
 */
export class FicturesError extends Error {
  constructor(
    readonly code: ErrorCode | ClientErrorCode | (string & {}),
    message: string,
    readonly status: number,
    readonly extra: { retryAfter?: number; details?: unknown; requestId?: string; job?: components['schemas']['JobResourceDto']; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'FicturesError';
  }

  get retryAfter(): number | undefined {
    return this.extra.retryAfter;
  }
  get details(): unknown {
    return this.extra.details;
  }
  get requestId(): string | undefined {
    return this.extra.requestId;
  }
  /** The job, when the error is the end of a job (failed or canceled). */
  get job(): components['schemas']['JobResourceDto'] | undefined {
    return this.extra.job;
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** The FicturesError of an error answer: its JSON body's code and message when it has the API's shape. */
export async function errorFromResponse(res: Response): Promise<FicturesError> {
  const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  return errorFromBody(res.status, body, retryAfter, res.headers.get('x-request-id') ?? undefined);
}

export function errorFromBody(status: number, body: unknown, retryAfter?: number, requestId?: string): FicturesError {
  const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown }; request_id?: unknown } | undefined) ?? {};
  const code = typeof e.error?.code === 'string' ? e.error.code : `http_${status}`;
  const message = typeof e.error?.message === 'string' ? e.error.message : `HTTP ${status}`;
  return new FicturesError(code, message, status, {
    retryAfter,
    details: e.error?.details,
    requestId: typeof e.request_id === 'string' ? e.request_id : requestId,
  });
}
