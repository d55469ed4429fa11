import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';

/** Where the page's files are: beside the sources in a checkout, copied beside the compiled module by `npm run build`. */
export function playgroundDir(): string {
  // src/playground → apps/api/playground (ts-node, jest); dist/apps/api/apps/api/src/playground → dist/apps/api/apps/api/playground.
  return path.resolve(__dirname, '..', '..', 'playground');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export interface PlaygroundAsset {
  body: Buffer;
  contentType: string;
  etag: string;
}

/**
 * The page and its assets, read once at start-up: a fixed set of names, so no request path ever
 * reaches the file system. A missing directory (a build that did not copy it) is an empty set and
 * `/playground` answers 404 rather than stopping the API.
 */
export function loadPlaygroundAssets(dir = playgroundDir()): Map<string, PlaygroundAsset> {
  const out = new Map<string, PlaygroundAsset>();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const body = readFileSync(path.join(dir, name));
    out.set(name, { body, contentType: type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  return out;
}
