import { createHash } from 'node:crypto';

/** Answers above this carry images as base64 (the sync route, OpenAI's b64_json): answers to POSTs. */
export const ETAG_MAX_BYTES = 1024 * 1024;

/** What Express gives an empty body. */
const EMPTY = 'W/"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk"';

/**
 * Express's default weak ETag (`W/"<length in hex>-<SHA-1, base64, 27 chars>"`) for answers up to
 * `maxBytes`, none above: a conditional GET of a job or a list keeps working, while the megabytes of
 * an image answer are not hashed (a few ms each) for a validator no client sends back on a POST.
 */
export function weakEtagUpTo(maxBytes: number): (body: string | Buffer, encoding?: BufferEncoding) => string | undefined {
  return (body, encoding = 'utf8') => {
    // A string's UTF-8 form is at least as long as the string: no byte count needed to skip it.
    if (body.length > maxBytes) return undefined;
    const length = typeof body === 'string' ? Buffer.byteLength(body, encoding) : body.length;
    if (length > maxBytes) return undefined;
    if (length === 0) return EMPTY;
    const hash = createHash('sha1').update(typeof body === 'string' ? Buffer.from(body, encoding) : body).digest('base64').slice(0, 27);
    return `W/"${length.toString(16)}-${hash}"`;
  };
}
