import { ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard, type ThrottlerRequest } from '@nestjs/throttler';
import type { Response } from 'express';
import { ErrorCode } from '@app/common';
import { ApiError } from '../common/api-error';
import type { AuthenticatedRequest } from '../auth/auth.types';
import { isPublicRoute } from '../auth/public-route';
import { rateLimitKindOf, type RateLimitKind } from './rate-limit-kind';

/** Window of every limit: RATE_LIMIT_*_PER_MINUTE and the keys' --rpm are per minute. */
export const RATE_LIMIT_WINDOW_MS = 60_000;

const WHAT: Record<RateLimitKind, string> = { submit: 'submissions', read: 'reads' };

/**
 * The throttler, run after the API key guard: counts per key id (per client IP while the server is
 * open), in Redis so the limit holds across API instances, and answers 429 rate_limited in the
 * API's error shape with Retry-After. One throttler per budget (security.module.ts); a request
 * counts against its route's budget only, once per request — so an SSE stream counts once, when
 * it opens, however many events it carries.
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

  /**
   * Replaces the base class's: the other budget's throttler must not count this request, and the
   * headers keep their plain names (X-RateLimit-Limit, not X-RateLimit-Limit-read) because exactly
   * one budget applies to a route.
   */
  protected override async handleRequest({ context, limit, ttl, throttler, blockDuration, getTracker, generateKey }: ThrottlerRequest): Promise<boolean> {
    const kind = rateLimitKindOf(context, this.reflector);
    if (throttler.name !== kind) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const res = context.switchToHttp().getResponse<Response>();
    const tracker = await getTracker(req, context);
    const record = await this.storageService.increment(generateKey(context, tracker, kind), ttl, limit, blockDuration, kind);
    if (record.isBlocked) {
      const retryAfter = Math.max(1, record.timeToBlockExpire);
      throw new ApiError(
        ErrorCode.RateLimited,
        `Too many ${WHAT[kind]}: the limit is ${limit} per minute; retry in ${retryAfter} s`,
        { kind, limit, retry_after_seconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
      );
    }
    res.setHeader('X-RateLimit-Limit', String(limit));
    res.setHeader('X-RateLimit-Remaining', String(Math.max(0, limit - record.totalHits)));
    res.setHeader('X-RateLimit-Reset', String(record.timeToExpire));
    return true;
  }
}
