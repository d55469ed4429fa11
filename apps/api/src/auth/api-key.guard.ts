import { CanActivate, ExecutionContext, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { ApiError } from '../common/api-error';
import { presentedKey } from './api-key';
import { ApiKeyStore } from './api-key.store';
import type { AuthenticatedRequest } from './auth.types';
import { isPublicRoute } from './public-route';

/** One answer for a missing, malformed, unknown or revoked key: nothing to enumerate. */
export function unauthorized(): ApiError {
  return new ApiError(
    ErrorCode.Unauthorized,
    'A valid API key is required (Authorization: Bearer <key>, or X-API-Key: <key>)',
    undefined,
    { 'WWW-Authenticate': 'Bearer realm="fictures"' },
  );
}

export class AuthConfigError extends Error {}

/**
 * Global guard: every route but the public ones (health, docs, metrics) needs a valid API key once
 * any key exists, or always with AUTH_REQUIRED. Sets req.caller (owner = key id, priority, quota)
 * for the job routes, and req.apiKey for the rate limiter that runs after it.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate, OnApplicationBootstrap {
  private readonly logger = new Logger('Auth');
  /** Once keys were seen they are required for good (revoking keeps records; a wiped Redis fails closed). */
  private keysSeen: boolean;

  constructor(
    private readonly env: Env,
    private readonly store: ApiKeyStore,
    private readonly reflector: Reflector,
  ) {
    this.keysSeen = env.AUTH_REQUIRED;
  }

  /** Says loudly when the API is open; refuses to start open with AUTH_REQUIRED. */
  async onApplicationBootstrap(): Promise<void> {
    let exists: boolean;
    try {
      exists = await this.store.anyKeyExists();
    } catch (e) {
      this.logger.warn(
        `Cannot read the API keys (Redis: ${(e as Error).message}); /api/v1 answers 503 until Redis is back` +
          (this.env.AUTH_REQUIRED ? ', then requires a key (AUTH_REQUIRED)' : ''),
      );
      return;
    }
    if (exists) {
      this.keysSeen = true;
      const active = (await this.store.list()).filter((k) => !k.revoked_at).length;
      this.logger.log(`API keys required on /api/v1 (${active} active key${active === 1 ? '' : 's'})`);
      return;
    }
    if (this.env.AUTH_REQUIRED) {
      throw new AuthConfigError(
        `AUTH_REQUIRED=true but no API key exists under QUEUE_PREFIX "${this.env.QUEUE_PREFIX}": ` +
          'create one with `npm run keys -- create --name <name>`, or unset AUTH_REQUIRED for local use',
      );
    }
    this.logger.warn(
      'NO API KEYS: the API is OPEN — anyone who can reach it can generate images. Fine for local use only; ' +
        'create a key with `npm run keys -- create --name <name>` (AUTH_REQUIRED=true refuses to start open)',
    );
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http' || isPublicRoute(context, this.reflector)) return true;
    const req = context.switchToHttp().getRequest<AuthenticatedRequest>();
    if (!(await this.keysRequired())) return true;
    const record = await this.store.verify(presentedKey(req.headers) ?? '');
    if (!record) throw unauthorized();
    const principal = {
      id: record.id,
      name: record.name,
      rpm: record.rpm ?? this.env.RATE_LIMIT_SUBMIT_PER_MINUTE,
      maxJobs: record.max_jobs ?? this.env.QUOTA_MAX_JOBS_PER_KEY,
      priority: record.priority,
    };
    req.apiKey = principal;
    req.caller = { owner: principal.id, priority: principal.priority, maxJobs: principal.maxJobs };
    return true;
  }

  private async keysRequired(): Promise<boolean> {
    if (this.keysSeen) return true;
    // Open until the first key is created; checked per request so a new key takes effect at once.
    if (await this.store.anyKeyExists()) this.keysSeen = true;
    return this.keysSeen;
  }
}
