import { randomUUID } from 'node:crypto';
import type { Response } from 'express';

/** An image to appear in a JSON answer as a `data:<type>;base64,…` URL string. */
export class DataUrl {
  constructor(
    readonly contentType: string,
    readonly bytes: Buffer,
  ) {}

  get prefix(): string {
    return `data:${this.contentType};base64,`;
  }
}

/** An image to appear in a JSON answer as its plain base64 string (OpenAI's b64_json). */
export class Base64 {
  readonly prefix = '';

  constructor(readonly bytes: Buffer) {}
}

/**
 * The UTF-8 bytes of `JSON.stringify(value)` with every DataUrl written as its data: URL string (and
 * every Base64 as its base64 string) —
 * the very bytes a plain stringify of those strings would give — built without running JSON over
 * the megabytes of base64 (which needs no escaping) and without a second whole-text copy: the small
 * rest is stringified with a placeholder per URL, and each URL's base64 is encoded once however often
 * it appears (the sync answer carries the first image twice: the repeat is a copy of the bytes).
 */
export function jsonWithDataUrls(value: unknown): Buffer {
  const nonce = randomUUID();
  const urls: (DataUrl | Base64)[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (!(v instanceof DataUrl || v instanceof Base64)) return v;
    let i = urls.indexOf(v);
    if (i < 0) i = urls.push(v) - 1;
    return `${nonce}:${i}`;
  });
  if (!urls.length) return Buffer.from(text, 'utf8');
  // The type is stringified like any string (escapes included); base64 is plain ASCII, one byte a character.
  const encoded = urls.map((u) => ({ head: JSON.stringify(u.prefix).slice(1, -1), bytes: u.bytes, base64Length: 4 * Math.ceil(u.bytes.length / 3) }));
  // split with a capture group alternates text and the captured index: text, i, text, i, …, text.
  const parts = text.split(new RegExp(`${nonce}:(\\d+)`));
  const pieces = parts.map((p, n) => (n % 2 ? encoded[Number(p)] : p));
  const size = pieces.reduce((a, p) => a + (typeof p === 'string' ? Buffer.byteLength(p, 'utf8') : Buffer.byteLength(p.head, 'utf8') + p.base64Length), 0);
  // One allocation, each piece written straight into it: no intermediate buffers of the megabytes.
  const out = Buffer.allocUnsafe(size);
  // Where each URL's base64 was first written: a repeat is a copy of those bytes, not a second encoding.
  const written = new Map<(typeof encoded)[number], number>();
  let at = 0;
  for (const p of pieces) {
    if (typeof p === 'string') at += out.write(p, at, 'utf8');
    else {
      at += out.write(p.head, at, 'utf8');
      const first = written.get(p);
      if (first === undefined) {
        written.set(p, at);
        at = writeBase64(p.bytes, out, at);
      } else at += out.copy(out, at, first, first + p.base64Length);
    }
  }
  if (at !== size) throw new Error(`jsonWithDataUrls wrote ${at} of ${size} bytes`);
  return out;
}

/**
 * Sends such an answer as res.json would (same bytes, Content-Type and Content-Length), without
 * Express's ETag: an answer to a POST is never revalidated, and the ETag would hash megabytes.
 */
export function sendJsonWithImages(res: Response, status: number, value: unknown): void {
  const body = jsonWithDataUrls(value);
  res.status(status).set('Content-Type', 'application/json').setHeader('Content-Length', body.length);
  res.end(body);
}

/**
 * Base64 of whole 3-byte groups concatenates: slice by slice, each slice's text is short-lived and
 * small (young-generation strings, swept cheaply) where one string of the whole image would be
 * megabytes in V8's large-object space, counted against the old generation's limit. That limit, not
 * this string alone, is what started a full mark-compact per 1328² answer: see NODE_FLAGS in
 * scripts/lib/processes.js.
 */
const BASE64_SLICE = 3 * 8192;

export function writeBase64(bytes: Buffer, out: Buffer, at: number): number {
  for (let i = 0; i < bytes.length; i += BASE64_SLICE) {
    at += out.write(bytes.subarray(i, i + BASE64_SLICE).toString('base64'), at, 'latin1');
  }
  return at;
}
