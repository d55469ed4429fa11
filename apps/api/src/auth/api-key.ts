import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every key starts with this, so a leaked one is easy to recognise (secret scanners, logs). */
export const API_KEY_PREFIX = 'fk_';
/** 32 random bytes = 256 bits, base64url: 43 characters. */
const KEY_BYTES = 32;
const KEY_PATTERN = /^fk_[A-Za-z0-9_-]{43}$/;
/** How much of a key is kept in clear for display ("fk_AbC1dE2…"): 42 of its 256 bits. */
const DISPLAY_LENGTH = API_KEY_PREFIX.length + 7;

export const PRIORITY_MIN = 1;
/** BullMQ's highest priority number (2^21 - 1). */
export const PRIORITY_MAX = 2_097_151;

/** A fresh key and its id; the key is shown once and never stored. */
export function generateApiKey(): { id: string; key: string } {
  return {
    id: `key_${randomBytes(8).toString('hex')}`,
    key: `${API_KEY_PREFIX}${randomBytes(KEY_BYTES).toString('base64url')}`,
  };
}

/** SHA-256 of the key: a fast hash is enough for a 256-bit random secret (no dictionary to try). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function isWellFormedApiKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_LENGTH);
}

/** Constant-time equality of two hex digests (false when either is not a 64-digit hex string). */
export function sameDigest(a: string, b: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(a) || !/^[0-9a-f]{64}$/.test(b)) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

/**
 * The key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>`. Returns
 * undefined when there is none, and '' (never valid) when the headers are malformed or disagree.
 */
export function presentedKey(headers: Record<string, string | string[] | undefined>): string | undefined {
  const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? (v.length === 1 ? v[0] : '') : v);
  const auth = single(headers['authorization']);
  const header = single(headers['x-api-key']);
  let bearer: string | undefined;
  if (auth !== undefined) {
    const m = /^Bearer[ ]+([^\s]+)[ ]*$/i.exec(auth);
    bearer = m ? m[1] : '';
  }
  const given = header?.trim();
  if (bearer !== undefined && given !== undefined) return bearer === given ? bearer : '';
  return bearer ?? given;
}
