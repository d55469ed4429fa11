import { randomUUID } from 'node:crypto';

/** An image to appear in a JSON answer as a `data:<type>;base64,…` URL string. */
export class DataUrl {
  constructor(
    readonly contentType: string,
    readonly bytes: Buffer,
  ) {}
}

/**
 * The UTF-8 bytes of `JSON.stringify(value)` with every DataUrl written as its data: URL string —
 * the very bytes a plain stringify of those strings would give — built without running JSON over
 * the megabytes of base64 (which needs no escaping) and without a second whole-text copy: the small
 * rest is stringified with a placeholder per URL, and each URL's bytes are made once however often
 * it appears (the sync answer carries the first image twice).
 */
export function jsonWithDataUrls(value: unknown): Buffer {
  const nonce = randomUUID();
  const urls: DataUrl[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (!(v instanceof DataUrl)) return v;
    let i = urls.indexOf(v);
    if (i < 0) i = urls.push(v) - 1;
    return `${nonce}:${i}`;
  });
  if (!urls.length) return Buffer.from(text, 'utf8');
  // The type is stringified like any string (escapes included); base64 is plain ASCII, one byte a character.
  const encoded = urls.map((u) => ({ head: JSON.stringify(`data:${u.contentType};base64,`).slice(1, -1), base64: u.bytes.toString('base64') }));
  // split with a capture group alternates text and the captured index: text, i, text, i, …, text.
  const parts = text.split(new RegExp(`${nonce}:(\\d+)`));
  const pieces = parts.map((p, n) => (n % 2 ? encoded[Number(p)] : p));
  const size = pieces.reduce((a, p) => a + (typeof p === 'string' ? Buffer.byteLength(p, 'utf8') : Buffer.byteLength(p.head, 'utf8') + p.base64.length), 0);
  // One allocation, each piece written straight into it: no intermediate buffers of the megabytes.
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of pieces) {
    if (typeof p === 'string') at += out.write(p, at, 'utf8');
    else {
      at += out.write(p.head, at, 'utf8');
      at += out.write(p.base64, at, 'latin1');
    }
  }
  if (at !== size) throw new Error(`jsonWithDataUrls wrote ${at} of ${size} bytes`);
  return out;
}
