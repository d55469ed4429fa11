import type { Request } from 'express';
import type { Caller } from './jobs.service';

export type ApiRequest = Request & { id?: string; caller?: Caller };

/** The origin the client used, for relative-to-absolute links when PUBLIC_BASE_URL is unset. */
export function requestBase(req: Request): string {
  return `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}

/** Who is calling: set by the auth guard when keys are configured; open otherwise. */
export function callerOf(req: ApiRequest): Caller {
  return { ...(req.caller ?? {}), requestId: req.id };
}
