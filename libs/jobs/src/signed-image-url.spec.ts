import { randomBytes } from 'node:crypto';
import { checkImageSignature, signedLinkExpiry, signImageClaim } from './signed-image-url';

describe('signed image links', () => {
  const secret = randomBytes(32);
  const claim = { jobId: '6f1c1c9e-3d55-4d8e-9a43-1b2f3c4d5e6f', index: 1, expires: 2_000_000_000 };

  it('accepts its own signature until the expiry, then says expired', () => {
    const sig = signImageClaim(secret, claim);
    expect(checkImageSignature(secret, claim, sig, claim.expires - 1)).toBe('valid');
    expect(checkImageSignature(secret, claim, sig, claim.expires)).toBe('expired');
  });

  it('refuses a signature made with another secret, or for another job, index or expiry', () => {
    const sig = signImageClaim(secret, claim);
    const now = claim.expires - 10;
    expect(checkImageSignature(randomBytes(32), claim, sig, now)).toBe('invalid');
    expect(checkImageSignature(secret, { ...claim, index: 0 }, sig, now)).toBe('invalid');
    expect(checkImageSignature(secret, { ...claim, jobId: claim.jobId.replace('6f', '7f') }, sig, now)).toBe('invalid');
    expect(checkImageSignature(secret, { ...claim, expires: claim.expires + 3600 }, sig, now)).toBe('invalid');
    expect(checkImageSignature(secret, claim, sig.slice(0, -1), now)).toBe('invalid');
    expect(checkImageSignature(secret, claim, '', now)).toBe('invalid');
  });

  it('an expired link with a forged signature is invalid, not expired', () => {
    expect(checkImageSignature(secret, claim, 'x'.repeat(43), claim.expires + 1)).toBe('invalid');
  });

  it('rounds the expiry up to a short step so repeated reads give one URL', () => {
    expect(signedLinkExpiry(1_000, 3600)).toBe(Math.ceil(4_600 / 300) * 300);
    expect(signedLinkExpiry(1_001, 3600)).toBe(signedLinkExpiry(1_002, 3600));
    expect(signedLinkExpiry(1_000, 60)).toBe(1_060);
    expect(signedLinkExpiry(1_000, 1)).toBe(1_001);
    expect(signedLinkExpiry(1_000, 3600) - 1_000).toBeLessThan(3600 + 300);
  });
});
