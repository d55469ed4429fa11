import { createHmac, timingSafeEqual } from 'node:crypto';

/** What a signed image link proves: this image of this job may be read by anyone holding it until `expires`. */
export interface SignedImageClaim {
  jobId: string;
  index: number;
  /** Unix seconds. */
  expires: number;
}

/** The HMAC-SHA256 of a claim, base64url. Fields joined by newlines: none of them can hold one. */
export function signImageClaim(secret: Buffer, claim: SignedImageClaim): string {
  return createHmac('sha256', secret).update(`fictures-image\n${claim.jobId}\n${claim.index}\n${claim.expires}`).digest('base64url');
}

export type SignatureCheck = 'valid' | 'invalid' | 'expired';

/**
 * Constant-time check of a presented signature. The signature is checked before the expiry, so an
 * expired answer is only ever given for a link this service really issued.
 */
export function checkImageSignature(secret: Buffer, claim: SignedImageClaim, signature: string, nowSeconds: number): SignatureCheck {
  const expected = Buffer.from(signImageClaim(secret, claim));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid';
  return nowSeconds >= claim.expires ? 'expired' : 'valid';
}

/**
 * The expiry of a link made now: now + ttl, rounded up to a step of at most 5 minutes (a twelfth of
 * the TTL), so the same image read again soon gets the same URL and a browser's cache keeps working.
 */
export function signedLinkExpiry(nowSeconds: number, ttlSeconds: number): number {
  const step = Math.max(1, Math.min(300, Math.floor(ttlSeconds / 12)));
  return Math.ceil((nowSeconds + ttlSeconds) / step) * step;
}

/** The download route of signed links, public (no API key): the signature is the permission. */
export const SIGNED_IMAGE_PATH = '/api/v1/images/signed';

/**
 * The HMAC key of signed links as every process of a deployment derives it alike (API instances and
 * workers, whose webhook payloads carry links too): SIGNED_URL_SECRET, else a key derived from
 * WEBHOOK_SECRET (shared by the fleet already, and kept independent of webhook signatures); undefined
 * when neither is set.
 */
export function sharedLinkSecret(env: { SIGNED_URL_SECRET?: string; WEBHOOK_SECRET?: string }): Buffer | undefined {
  if (env.SIGNED_URL_SECRET) return Buffer.from(env.SIGNED_URL_SECRET, 'utf8');
  if (env.WEBHOOK_SECRET) return createHmac('sha256', env.WEBHOOK_SECRET).update('fictures signed image links').digest();
  return undefined;
}

/** The absolute signed link of one image, valid about ttlSeconds from nowMs. */
export function signedImageUrl(secret: Buffer, baseUrl: string, jobId: string, index: number, ttlSeconds: number, nowMs = Date.now()): string {
  const expires = signedLinkExpiry(Math.floor(nowMs / 1000), ttlSeconds);
  const signature = signImageClaim(secret, { jobId, index, expires });
  return `${baseUrl.replace(/\/$/, '')}${SIGNED_IMAGE_PATH}/${jobId}/${index}?expires=${expires}&signature=${signature}`;
}
