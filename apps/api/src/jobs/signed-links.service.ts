import { randomBytes } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { ErrorCode } from '@app/common';
import { Env } from '@app/config';
import { checkImageSignature, sharedLinkSecret, signedImageUrl } from '@app/jobs';
import { ApiError } from '../common/api-error';


/**
 * Signed, expiring image links a browser can load without the API key (`<img src>`): HMAC-SHA256
 * over job id, image index and expiry. Every API instance must share the secret (SIGNED_URL_SECRET),
 * or a link made by one is refused by another.
 */
@Injectable()
export class SignedLinks {
  private readonly logger = new Logger(SignedLinks.name);
  private readonly secret: Buffer;

  constructor(private readonly env: Env) {
    const shared = sharedLinkSecret(env);
    if (shared) {
      this.secret = shared;
      if (!env.SIGNED_URL_SECRET) this.logger.log('SIGNED_URL_SECRET unset: signed image links use a key derived from WEBHOOK_SECRET');
    } else {
      this.secret = randomBytes(32);
      this.logger.warn(
        'SIGNED_URL_SECRET unset: signed image links use a random key of this process; they stop working when it restarts ' +
          'and are refused by other API instances. Set the same SIGNED_URL_SECRET (32+ characters) on every API instance',
      );
    }
  }

  /** The absolute signed link of one image, valid about SIGNED_URL_TTL_SECONDS from now. */
  url(baseUrl: string, jobId: string, index: number, nowMs = Date.now()): string {
    return signedImageUrl(this.secret, baseUrl, jobId, index, this.env.SIGNED_URL_TTL_SECONDS, nowMs);
  }

  /** Throws 403 signed_url_invalid (tampered, malformed, another secret) or signed_url_expired. Returns the expiry. */
  verify(jobId: string, index: number, expires: unknown, signature: unknown, nowMs = Date.now()): number {
    const exp = typeof expires === 'string' && /^\d{1,12}$/.test(expires) ? Number(expires) : undefined;
    if (exp === undefined || typeof signature !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(signature)) {
      throw new ApiError(ErrorCode.SignedUrlInvalid, 'This image link is not valid: it needs expires and signature as issued');
    }
    const check = checkImageSignature(this.secret, { jobId, index, expires: exp }, signature, Math.floor(nowMs / 1000));
    if (check === 'invalid') throw new ApiError(ErrorCode.SignedUrlInvalid, 'This image link is not valid (its signature does not match)');
    if (check === 'expired') throw new ApiError(ErrorCode.SignedUrlExpired, 'This image link has expired; read the job again for a fresh one');
    return exp;
  }
}
