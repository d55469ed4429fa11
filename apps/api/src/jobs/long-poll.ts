import { ErrorCode } from '@app/common';
import type { Request, Response } from 'express';
import { ApiError } from '../common/api-error';

/** The longest a request may wait for its job (seconds): beyond it proxies and clients give up. */
export const MAX_WAIT_SECONDS = 60;

const NUMBER = /^\d{1,2}(\.\d{1,3})?$/;

function parseSeconds(raw: string, where: string): number {
  const s = raw.trim();
  if (!NUMBER.test(s) || Number(s) > MAX_WAIT_SECONDS) {
    throw new ApiError(ErrorCode.ValidationFailed, `${where} must be a number of seconds from 0 to ${MAX_WAIT_SECONDS}`, { field: where });
  }
  return Number(s);
}

/** `wait=N` from the `Prefer` header (RFC 7240), or undefined when it asks for none. */
export function preferWait(header: string | string[] | undefined): string | undefined {
  const values = Array.isArray(header) ? header : header === undefined ? [] : [header];
  for (const v of values) {
    for (const pref of v.split(',')) {
      const m = /^\s*wait\s*=\s*"?([^";]*)"?/i.exec(pref);
      if (m) return m[1];
    }
  }
  return undefined;
}

/**
 * How long this request wants to wait for its job, in ms: `?wait=N` or `Prefer: wait=N` (the query
 * wins). Sets Preference-Applied when the header was honoured. 0 when neither is given.
 */
export function requestedWaitMs(req: Request, res: Response, query: unknown): number {
  if (query !== undefined) {
    if (typeof query !== 'string') throw new ApiError(ErrorCode.ValidationFailed, 'wait must be given once', { field: 'wait' });
    return parseSeconds(query, 'wait') * 1000;
  }
  const prefer = preferWait(req.headers.prefer);
  if (prefer === undefined) return 0;
  const seconds = parseSeconds(prefer, 'Prefer: wait');
  res.setHeader('Preference-Applied', `wait=${prefer.trim()}`);
  return seconds * 1000;
}

/** Aborts when the client closes the connection before the answer is sent. */
export function clientGone(req: Request, res: Response): AbortSignal {
  const ctl = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) ctl.abort();
  };
  req.on('close', onClose);
  res.on('finish', () => req.off('close', onClose));
  return ctl.signal;
}
