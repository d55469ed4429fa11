/**
 * The bits of ComfyUI's `folder_paths` the simulator needs: SaveImage's file naming
 * (`get_save_image_path`) and GET /view's path checks (`annotated_filepath`, type folders).
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { PyException } from './py-values';

export interface SimDirs {
  output: string;
  input: string;
  temp: string;
}

/** posixpath.normpath */
function normpath(p: string): string {
  if (p === '') return '.';
  const initial = p.startsWith('/') ? (p.startsWith('//') && !p.startsWith('///') ? 2 : 1) : 0;
  const out: string[] = [];
  for (const comp of p.split('/')) {
    if (comp === '' || comp === '.') continue;
    if (comp !== '..' || (initial === 0 && out.length === 0) || (out.length > 0 && out[out.length - 1] === '..')) out.push(comp);
    else if (out.length > 0) out.pop();
  }
  const joined = '/'.repeat(initial) + out.join('/');
  return joined || '.';
}

/** posixpath.dirname */
function dirname(p: string): string {
  const i = p.lastIndexOf('/') + 1;
  let head = p.slice(0, i);
  if (head && head !== '/'.repeat(head.length)) head = head.replace(/\/+$/, '');
  return head;
}

/** posixpath.basename */
function basename(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function inside(base: string, target: string): boolean {
  const b = resolve(base);
  const t = resolve(target);
  return t === b || t.startsWith(b.endsWith(sep) ? b : b + sep);
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

export interface SavePath {
  folder: string;
  filename: string;
  counter: number;
  subfolder: string;
}

/** `folder_paths.get_save_image_path`; raises like ComfyUI for prefixes leaving the folder. */
export function getSaveImagePath(filenamePrefix: string, outputDir: string, width: number, height: number): SavePath {
  let prefix = filenamePrefix;
  if (prefix.includes('%')) {
    const now = new Date();
    prefix = prefix
      .replaceAll('%width%', String(width))
      .replaceAll('%height%', String(height))
      .replaceAll('%year%', String(now.getFullYear()))
      .replaceAll('%month%', pad2(now.getMonth() + 1))
      .replaceAll('%day%', pad2(now.getDate()))
      .replaceAll('%hour%', pad2(now.getHours()))
      .replaceAll('%minute%', pad2(now.getMinutes()))
      .replaceAll('%second%', pad2(now.getSeconds()));
  }
  const norm = normpath(prefix);
  const subfolder = dirname(norm);
  const filename = basename(norm);
  const folder = join(outputDir, subfolder);
  const absFolder = resolve(subfolder.startsWith('/') ? subfolder : folder);
  if (!inside(outputDir, absFolder)) {
    const common = commonPath(resolve(outputDir), absFolder);
    throw new PyException('Exception',
      '**** ERROR: Saving image outside the output folder is not allowed.'
      + `\n full_output_folder: ${absFolder}`
      + `\n         output_dir: ${outputDir}`
      + `\n         commonpath: ${common}`);
  }
  const prefixLen = basename(prefix).length;
  let counter = 1;
  if (!existsSync(absFolder)) {
    mkdirSync(absFolder, { recursive: true });
  } else {
    let best = -1;
    for (const f of readdirSync(absFolder)) {
      const head = f.slice(0, prefixLen + 1);
      if (head.slice(0, -1) !== filename || head.slice(-1) !== '_') continue;
      const digitsText = f.slice(prefixLen + 1).split('_')[0].trim();
      const digits = /^[+-]?\d+$/.test(digitsText) ? Number(digitsText) : 0;
      if (digits > best) best = digits;
    }
    if (best >= 0) counter = best + 1;
  }
  return { folder: absFolder, filename, counter, subfolder };
}

function commonPath(a: string, b: string): string {
  const pa = a.split('/');
  const pb = b.split('/');
  const out: string[] = [];
  for (let i = 0; i < Math.min(pa.length, pb.length) && pa[i] === pb[i]; i++) out.push(pa[i]);
  return out.join('/') || '/';
}

export type ViewTarget =
  | { status: 400 | 403 | 404 }
  | { status: 200; file: string; filename: string };

/** The checks of `view_image`, in ComfyUI's order. */
export function resolveViewFile(query: URLSearchParams, dirs: SimDirs): ViewTarget {
  const raw = query.get('filename');
  if (raw === null) return { status: 404 };
  let name = raw;
  let dir: string | undefined;
  if (name.endsWith('[output]')) { dir = dirs.output; name = name.slice(0, -9); }
  else if (name.endsWith('[input]')) { dir = dirs.input; name = name.slice(0, -8); }
  else if (name.endsWith('[temp]')) { dir = dirs.temp; name = name.slice(0, -7); }
  if (!name) return { status: 400 };
  if (name[0] === '/' || name.includes('..')) return { status: 400 };
  if (dir === undefined) {
    const type = query.get('type') ?? 'output';
    dir = type === 'output' ? dirs.output : type === 'input' ? dirs.input : type === 'temp' ? dirs.temp : undefined;
  }
  if (dir === undefined) return { status: 400 };
  const sub = query.get('subfolder');
  if (sub !== null) {
    const full = sub.startsWith('/') ? sub : join(dir, sub);
    if (!inside(dir, full)) return { status: 403 };
    dir = full;
  }
  const filename = basename(name);
  const file = join(dir, filename);
  try {
    if (statSync(file).isFile()) return { status: 200, file, filename };
  } catch {
    /* missing */
  }
  return { status: 404 };
}
