import { ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard, type ThrottlerLimitDetail } from '@nestjs/throttler';
import { ErrorCode } from '@app/common';
import { ApiError } from '../common/api-error';
import type { AuthenticatedRequest } from '../auth/auth.types';
import { isPublicRoute } from '../auth/public-route';

/** Window of every limit: RATE_LIMIT_PER_MINUTE and the keys' --rpm are per minute. */
export const RATE_LIMIT_WINDOW_MS = 60_000;

/**
 * The throttler, run after the API key guard: counts per key id (per client IP while the server is
 * open), in Redis so the limit holds across API instances, and answers 429 rate_limited in the
 * API's error shape with Retry-After. Tracker, key and limit come from ThrottlerModule options
 * (security.module.ts); this class only adds what the options cannot say.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    return context.getType() !== 'http' || isPublicRoute(context, this.reflector);
  }

  protected override async getTracker(req: AuthenticatedRequest): Promise<string> {
    const key = req.apiKey;
    return key ? `key:${key.id}` : `ip:${await super.getTracker(req)}`;
  }

  protected override async throwThrottlingException(_context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const retryAfter = Math.max(1, detail.timeToBlockExpire);
    throw new ApiError(
      ErrorCode.RateLimited,
      `Too many requests: the limit is ${detail.limit} per minute; retry in ${retryAfter} s`,
      { limit: detail.limit, retry_after_seconds: retryAfter },
      { 'Retry-After': String(retryAfter) },
    );
  }
}
