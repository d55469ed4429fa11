import { createHash } from 'node:crypto';
import { ETAG_MAX_BYTES, weakEtagUpTo } from './etag';

const expressStyle = (buf: Buffer) => `W/"${buf.length.toString(16)}-${createHash('sha1').update(buf).digest('base64').slice(0, 27)}"`;

describe('weakEtagUpTo', () => {
  const etag = weakEtagUpTo(ETAG_MAX_BYTES);

  it('gives what Express gives: strings by their UTF-8 bytes, buffers, the empty body', () => {
    const text = JSON.stringify({ id: 'x', note: 'ünïcödé ✓' });
    expect(etag(text)).toBe(expressStyle(Buffer.from(text, 'utf8')));
    expect(etag(Buffer.from(text))).toBe(expressStyle(Buffer.from(text)));
    expect(etag('')).toBe('W/"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk"');
    expect(etag(Buffer.alloc(0))).toBe(etag(''));
  });

  it('none above the limit, counted in bytes (multi-byte characters included)', () => {
    expect(etag('a'.repeat(ETAG_MAX_BYTES))).toMatch(/^W\/"100000-/);
    expect(etag('a'.repeat(ETAG_MAX_BYTES + 1))).toBeUndefined();
    expect(etag(Buffer.alloc(ETAG_MAX_BYTES + 1))).toBeUndefined();
    expect(etag('é'.repeat(ETAG_MAX_BYTES / 2 + 1))).toBeUndefined(); // 2 bytes each
  });
});
