/** Response helpers that reproduce aiohttp's wire format (content types, default error bodies). */
import { IncomingMessage, ServerResponse } from 'node:http';
import { JsonValue, pyDumps } from './py-json';

export const SERVER_HEADER = 'Python/3.12 aiohttp/3.12.15';
/** aiohttp `client_max_size` with ComfyUI's default --max-upload-size 100. */
export const MAX_BODY_BYTES = 100 * 1024 * 1024;
export const INTERNAL_ERROR_TEXT = '500 Internal Server Error\n\nServer got itself in trouble';

export class BodyTooLarge extends Error {
  constructor(readonly size: number) {
    super(`Maximum request body size ${MAX_BODY_BYTES} exceeded, actual body size ${size}`);
  }
}

export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      req.resume();
      reject(new BodyTooLarge(declared));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => (size > MAX_BODY_BYTES ? reject(new BodyTooLarge(size)) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

function finish(res: ServerResponse, status: number, contentType: string, body: Buffer): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', body.length);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** `web.json_response` */
export function sendJson(res: ServerResponse, status: number, value: JsonValue): void {
  finish(res, status, 'application/json; charset=utf-8', Buffer.from(pyDumps(value), 'utf8'));
}

/** `web.Response(status=...)` with no body. */
export function sendEmpty(res: ServerResponse, status: number): void {
  finish(res, status, 'application/octet-stream', Buffer.alloc(0));
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  finish(res, status, 'text/plain; charset=utf-8', Buffer.from(text, 'utf8'));
}

/** What aiohttp answers when a handler raises. */
export function sendInternalError(res: ServerResponse): void {
  sendText(res, 500, INTERNAL_ERROR_TEXT);
}

/** Bytes with an explicit content type (re-encoded /view previews). */
export function sendBytes(res: ServerResponse, status: number, contentType: string, body: Buffer): void {
  finish(res, status, contentType, body);
}
