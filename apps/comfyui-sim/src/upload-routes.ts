/**
 * POST /upload/image and /upload/mask (server.py `image_upload`, `upload_mask`): multipart fields
 * `image` (a file part with a filename), `type`, `subfolder`, `overwrite`; the answer names the file
 * as saved, which may differ from the name sent (`name (1).png` for other content under a taken name).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { extname, join, relative, resolve, isAbsolute } from 'node:path';
import sharp from 'sharp';
import { readBody, sendEmpty, sendInternalError, sendJson } from './http-util';
import { orderedObject } from './py-json';
import { Route, RouteContext, RouteRequest } from './route-context';

interface Part {
  name: string;
  filename?: string;
  data: Buffer;
}

/** Just enough of multipart/form-data for what clients send: a boundary, part headers, bodies. */
export function parseMultipart(body: Buffer, contentType: string | undefined): Part[] | undefined {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  if (!m || !/^multipart\/form-data/i.test(contentType ?? '')) return undefined;
  const delimiter = Buffer.from(`--${m[1] ?? m[2]}`);
  const parts: Part[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) return undefined;
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString() === '--') break;
    pos += 2; // CRLF after the delimiter
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0) return undefined;
    const headers = body.subarray(pos, headerEnd).toString('utf8');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next < 0) return undefined;
    const disposition = /content-disposition:[^\r\n]*/i.exec(headers)?.[0] ?? '';
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
    if (name !== undefined) parts.push({ name, filename, data: body.subarray(headerEnd + 4, next) });
    pos = next + 2;
  }
  return parts;
}

const inside = (base: string, path: string): boolean => {
  const rel = relative(base, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
};

function dirByType(ctx: RouteContext, type: string): string | undefined {
  if (type === 'input') return ctx.dirs.input;
  if (type === 'output') return ctx.dirs.output;
  if (type === 'temp') return ctx.dirs.temp;
  return undefined;
}

type Save = (file: Buffer, fields: Map<string, string>, path: string) => Promise<number | undefined>;

async function imageUpload(ctx: RouteContext, r: RouteRequest, save?: Save): Promise<void> {
  const parts = parseMultipart(await readBody(r.req), r.req.headers['content-type']);
  if (!parts) return sendInternalError(r.res);
  const fields = new Map(parts.filter((p) => p.filename === undefined).map((p) => [p.name, p.data.toString('utf8')]));
  const image = parts.find((p) => p.name === 'image' && p.filename !== undefined);
  if (!image || !image.filename) return sendEmpty(r.res, 400);
  const type = fields.get('type') || 'input';
  const base = dirByType(ctx, type);
  // An unknown type raises inside the handler in ComfyUI.
  if (!base) return sendInternalError(r.res);
  const subfolder = fields.get('subfolder') ?? '';
  const folder = resolve(base, subfolder);
  let filename = image.filename;
  if (!inside(base, folder) || !inside(base, resolve(folder, filename))) return sendEmpty(r.res, 400);
  await mkdir(folder, { recursive: true });
  const overwrite = ['true', '1'].includes(fields.get('overwrite') ?? '');
  let duplicate = false;
  if (!overwrite) {
    const ext = extname(image.filename);
    const stem = image.filename.slice(0, image.filename.length - ext.length);
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    for (let i = 1; existsSync(join(folder, filename)); i++) {
      if (digest(await readFile(join(folder, filename))) === digest(image.data)) {
        duplicate = true;
        break;
      }
      filename = `${stem} (${i})${ext}`;
    }
  }
  if (!duplicate) {
    const status = save ? await save(image.data, fields, join(folder, filename)) : (await writeFile(join(folder, filename), image.data), undefined);
    if (status) return sendEmpty(r.res, status);
  }
  sendJson(r.res, 200, orderedObject([['name', filename], ['subfolder', subfolder], ['type', type]]));
}

/** upload_mask: the original image with the mask's alpha as its alpha channel (the mask editor's format). */
const saveMask = (ctx: RouteContext): Save => async (file, fields, path) => {
  let ref: { filename?: unknown; subfolder?: unknown; type?: unknown };
  try {
    ref = JSON.parse(fields.get('original_ref') ?? '') as typeof ref;
  } catch {
    return 500;
  }
  const name = typeof ref.filename === 'string' ? ref.filename : '';
  if (!name) return 400;
  if (name.startsWith('/') || name.includes('..')) return 400;
  const base = dirByType(ctx, typeof ref.type === 'string' ? ref.type : 'output');
  if (!base) return 400;
  const dir = typeof ref.subfolder === 'string' && ref.subfolder ? resolve(base, ref.subfolder) : base;
  if (!inside(base, dir)) return 403;
  const original = join(dir, name);
  // ComfyUI answers 200 and saves nothing when the original is not there.
  if (!existsSync(original) || !statSync(original).isFile()) return undefined;
  const meta = await sharp(original).metadata();
  const alpha = await sharp(file).resize(meta.width, meta.height, { fit: 'fill' }).ensureAlpha().extractChannel(3).raw().toBuffer();
  const rgb = await sharp(original).removeAlpha().raw().toBuffer();
  await writeFile(path, await sharp(rgb, { raw: { width: meta.width ?? 1, height: meta.height ?? 1, channels: 3 } })
    .joinChannel(alpha, { raw: { width: meta.width ?? 1, height: meta.height ?? 1, channels: 1 } })
    .png({ compressionLevel: 4 })
    .toBuffer());
  return undefined;
};

export const UPLOAD_ROUTES: Route[] = [
  { method: 'POST', path: '/upload/image', handler: (ctx, r) => imageUpload(ctx, r) },
  { method: 'POST', path: '/upload/mask', handler: (ctx, r) => imageUpload(ctx, r, saveMask(ctx)) },
];
