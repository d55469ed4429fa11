import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { ErrorCode } from '@app/common';
import { sendError } from '../common/all-exceptions.filter';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** The credential of an Authorization header: a Bearer token, or the password of basic auth. */
export function presentedSecret(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const [scheme, value] = header.trim().split(/\s+/, 2);
  if (!value) return undefined;
  if (/^bearer$/i.test(scheme)) return value;
  if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  return undefined;
}

/** Whether an Authorization header carries ADMIN_TOKEN (constant-time); never true without a token. */
export function presentsAdminToken(header: string | undefined, token: string | undefined): boolean {
  if (!token) return false;
  const given = presentedSecret(header);
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}

/**
 * Guards the operator dashboard with ADMIN_TOKEN, as a Bearer token or as the basic-auth password
 * (any user name), so both curl and a browser's login prompt work. Compared in constant time.
 */
export function adminAuth(token: string) {
  return (req: Request & { id?: string }, res: Response, next: NextFunction): void => {
    if (presentsAdminToken(req.header('authorization'), token)) return next();
    res.setHeader('WWW-Authenticate', 'Basic realm="Fictures admin", charset="UTF-8"');
    sendError(res, req, 401, ErrorCode.Unauthorized, 'Admin credentials required');
  };
}
