import { ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import type { Request } from 'express';

/**
 * The two budgets of the rate limit. Submissions start GPU work; reads (polls, streams, images,
 * models) are cheap and frequent: one budget for both let a client polling its own job fast lock
 * itself out of submitting, and the reverse.
 */
export type RateLimitKind = 'submit' | 'read';
export const RATE_LIMIT_KINDS: readonly RateLimitKind[] = ['submit', 'read'];

const KIND = 'fictures:rate-limit-kind';

/** Which budget a route (or a controller's routes) counts against. */
export const RateLimitAs = (kind: RateLimitKind): MethodDecorator & ClassDecorator => SetMetadata(KIND, kind);

/** The declared kind; undeclared routes count as reads when safe (GET, HEAD) and as submissions otherwise. */
export function rateLimitKindOf(context: ExecutionContext, reflector: Reflector): RateLimitKind {
  const declared = reflector.getAllAndOverride<RateLimitKind | undefined>(KIND, [context.getHandler(), context.getClass()]);
  if (declared) return declared;
  const method = context.switchToHttp().getRequest<Request>().method;
  return method === 'GET' || method === 'HEAD' ? 'read' : 'submit';
}
