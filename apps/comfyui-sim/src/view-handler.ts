/**
 * GET /view: ComfyUI's checks (400 / 403 / 404, empty bodies), `preview=` and `channel=`
 * re-encoding, and the original file like aiohttp's FileResponse (Range, ETag, Last-Modified),
 * plus the slow / truncated download faults.
 */
import { stat, readFile } from 'node:fs/promises';
import { ServerResponse } from 'node:http';
import { extname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import sharp from 'sharp';
import { sendEmpty } from './http-util';
import { resolveViewFile } from './output-files';
import { RouteContext, RouteRequest } from './route-context';

const MIME: Record<string, string> = {
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp', '.gif': 'image/gif',
  '.bmp': 'image/bmp', '.mp4': 'video/mp4', '.webm': 'video/webm', '.json': 'application/json', '.txt': 'text/plain',
  '.flac': 'audio/flac', '.mp3': 'audio/mpeg', '.wav': 'audio/x-wav', '.svg': 'image/svg+xml',
};
const FORCED_DOWNLOAD = new Set(['text/html', 'text/html-sandboxed', 'application/xhtml+xml', 'text/javascript', 'text/css']);

/** Writes headers and body, or only half of the body then kills the socket (viewTruncate). */
function deliver(ctx: RouteContext, res: ServerResponse, status: number, headers: Record<string, string | number>, body: Buffer): void {
  res.writeHead(status, { ...headers, 'Content-Length': body.length });
  if (res.req.method === 'HEAD') {
    res.end();
    return;
  }
  if (ctx.faults.get().viewTruncate && body.length > 1) {
    ctx.counters.injected.viewTruncated += 1;
    res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
    return;
  }
  res.end(body);
}

export async function viewHandler(ctx: RouteContext, r: RouteRequest): Promise<void> {
  const q = r.url.searchParams;
  const target = resolveViewFile(q, ctx.dirs);
  if (target.status !== 200) {
    sendEmpty(r.res, target.status);
    return;
  }
  const { viewDelayMs } = ctx.faults.get();
  if (viewDelayMs > 0) {
    ctx.counters.injected.viewDelayed += 1;
    await delay(viewDelayMs);
  }
  const { file, filename } = target;
  const disposition = `filename="${filename}"`;
  const channel = q.get('channel') ?? 'rgba';

  if (q.has('preview')) {
    const info = (q.get('preview') ?? '').split(';');
    let format = info[0];
    if ((format !== 'webp' && format !== 'jpeg') || channel.includes('a') && q.has('channel')) format = 'webp';
    const last = info[info.length - 1];
    const quality = /^\d+$/.test(last) ? Math.max(1, Math.min(100, Number(last))) : 90;
    let img = sharp(file);
    if (format === 'jpeg' || q.get('channel') === 'rgb') img = img.removeAlpha();
    const out = format === 'jpeg' ? await img.jpeg({ quality }).toBuffer() : await img.webp({ quality }).toBuffer();
    deliver(ctx, r.res, 200, { 'Content-Type': `image/${format}`, 'Content-Disposition': disposition }, out);
    return;
  }
  if (channel === 'rgb') {
    const out = await sharp(file).removeAlpha().png().toBuffer();
    deliver(ctx, r.res, 200, { 'Content-Type': 'image/png', 'Content-Disposition': disposition }, out);
    return;
  }
  if (channel === 'a') {
    const meta = await sharp(file).metadata();
    const w = meta.width ?? 1;
    const h = meta.height ?? 1;
    const alpha = meta.hasAlpha
      ? await sharp(file).ensureAlpha().extractChannel(3).raw().toBuffer()
      : Buffer.alloc(w * h, 255);
    const rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba[i * 4 + 3] = alpha[i];
    const out = await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer();
    deliver(ctx, r.res, 200, { 'Content-Type': 'image/png', 'Content-Disposition': disposition }, out);
    return;
  }

  let type = MIME[extname(filename).toLowerCase()] ?? 'application/octet-stream';
  if (FORCED_DOWNLOAD.has(type)) type = 'application/octet-stream';
  const st = await stat(file);
  const etag = `"${(BigInt(Math.floor(st.mtimeMs * 1e6))).toString(16)}-${st.size.toString(16)}"`;
  const headers: Record<string, string | number> = {
    'Content-Type': type,
    'Content-Disposition': disposition,
    'Accept-Ranges': 'bytes',
    'Last-Modified': st.mtime.toUTCString(),
    ETag: etag,
  };
  const inm = r.req.headers['if-none-match'];
  const ims = r.req.headers['if-modified-since'];
  if ((inm && inm.split(',').map((s) => s.trim()).includes(etag))
    || (!inm && ims && Math.floor(st.mtimeMs / 1000) <= Math.floor(Date.parse(ims) / 1000))) {
    r.res.writeHead(304, { ETag: etag, 'Last-Modified': headers['Last-Modified'] });
    r.res.end();
    return;
  }
  const body = await readFile(file);
  const range = r.req.headers.range;
  const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range.trim()) : null;
  if (range && m && (m[1] !== '' || m[2] !== '')) {
    let start: number;
    let end: number;
    if (m[1] === '') {
      start = Math.max(0, body.length - Number(m[2]));
      end = body.length - 1;
    } else {
      start = Number(m[1]);
      end = m[2] === '' ? body.length - 1 : Math.min(Number(m[2]), body.length - 1);
    }
    if (start >= body.length || start > end) {
      r.res.writeHead(416, { 'Content-Range': `bytes */${body.length}`, 'Content-Length': 0 });
      r.res.end();
      return;
    }
    deliver(ctx, r.res, 206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${body.length}` }, body.subarray(start, end + 1));
    return;
  }
  deliver(ctx, r.res, 200, headers, body);
}
