import { ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import type { Request } from 'express';

const IS_PUBLIC = 'fictures:public';

/** Marks a controller or route as reachable without an API key and outside the rate limit. */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(IS_PUBLIC, true);

/**
 * Paths that stay public whoever writes their controller: load-balancer health checks, the API
 * documents, Prometheus, the static playground page (its API calls carry the user's key). Everything
 * else needs a key once keys exist (deny by default).
 */
const PUBLIC_PATHS: RegExp[] = [/^\/health(\/.*)?$/, /^\/docs(\/.*|-json|-yaml)?$/, /^\/redoc\/?$/, /^\/metrics\/?$/, /^\/playground(\/.*)?$/];

export function isPublicPath(path: string): boolean {
  return PUBLIC_PATHS.some((p) => p.test(path));
}

export function isPublicRoute(context: ExecutionContext, reflector: Reflector): boolean {
  if (reflector.getAllAndOverride<boolean>(IS_PUBLIC, [context.getHandler(), context.getClass()])) return true;
  return isPublicPath(context.switchToHttp().getRequest<Request>().path);
}
