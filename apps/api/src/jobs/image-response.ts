import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { JobsService } from './jobs.service';

/** If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/ prefixes ignored, lists and * allowed. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/**
 * Answers one stored image of a job: 304 when the client has it (the record knows its hash, so the
 * store is not touched), a redirect when the store hands out links, else the bytes streamed.
 */
export async function sendJobImage(
  jobs: JobsService,
  req: Request,
  res: Response,
  image: { sha256: string; stored_by: string; index: number },
  cacheControl: string,
): Promise<void> {
  const etag = `"${image.sha256}"`;
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', cacheControl);
  if (matchesIfNoneMatch(req.headers['if-none-match'], etag)) {
    res.status(304).end();
    return;
  }
  const source = await jobs.imageSource(image.stored_by, image.index);
  if ('link' in source) {
    // A signed link dies before the job: a cached redirect would outlive it.
    if (source.link.expires) res.setHeader('Cache-Control', 'private, no-store');
    res.redirect(302, source.link.url);
    return;
  }
  const { body, contentType, contentLength } = source.stream;
  res.setHeader('Content-Type', contentType);
  if (contentLength !== undefined) res.setHeader('Content-Length', String(contentLength));
  res.status(200);
  // A body that fails half-way (bucket gone mid-download) can only end the connection: the status is sent.
  await pipeline(body, res).catch(() => res.destroy());
}
