import { readEventStream, type ServerSentEvent } from './sse';
import { errorFromBody, parseRetryAfter } from './errors';

/** A body that arrives in the given pieces, split wherever the network splits it. */
function body(pieces: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of pieces) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

async function all(pieces: string[]): Promise<ServerSentEvent[]> {
  const out: ServerSentEvent[] = [];
  for await (const e of readEventStream(body(pieces))) out.push(e);
  return out;
}

describe('readEventStream', () => {
  it('parses events split at any byte, with comments, CRLF and multi-line data', async () => {
    const text = 'id: 1\nevent: status\ndata: {"a":1}\n\n: heartbeat\n\nid: 2\r\nevent: progress\r\ndata: line1\r\ndata: line2\r\n\r\ndata: plain\n\n';
    const expected = [
      { id: '1', event: 'status', data: '{"a":1}' },
      { id: '2', event: 'progress', data: 'line1\nline2' },
      { id: '2', event: 'message', data: 'plain' },
    ];
    expect(await all([text])).toEqual(expected);
    // One byte at a time: the same events.
    expect(await all([...text])).toEqual(expected);
  });

  it('drops an event the stream ends in the middle of', async () => {
    expect(await all(['event: job\ndata: {"x"'])).toEqual([]);
  });
});

describe('client errors', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    expect(parseRetryAfter('5')).toBe(5);
    expect(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThanOrEqual(9);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it('keeps the API error body: code, message, details, request id; anything else becomes http_<status>', () => {
    const e = errorFromBody(422, { error: { code: 'mask_size_mismatch', message: 'mask is 512×512', details: { field: 'mask' } }, request_id: 'r-1' }, 3);
    expect(e).toMatchObject({ code: 'mask_size_mismatch', message: 'mask is 512×512', status: 422, retryAfter: 3, details: { field: 'mask' }, requestId: 'r-1' });
    expect(errorFromBody(502, '<html>bad gateway</html>')).toMatchObject({ code: 'http_502', status: 502 });
  });
});
