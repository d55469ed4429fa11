import type { Express, Request, Response } from 'express';

/** Where the API serves ReDoc's standalone bundle: its own origin, so the docs need no network. */
export const REDOC_BUNDLE_PATH = '/docs/assets/redoc.standalone.js';

/** The installed redoc package's browser bundle (a dependency, so it is in every install and image). */
export function redocBundleFile(): string {
  return require.resolve('redoc/bundles/redoc.standalone.js');
}

export function redocHtml(specUrl: string, title: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"/><title>${title}</title>` +
    '<meta name="viewport" content="width=device-width, initial-scale=1"/></head><body>' +
    `<redoc spec-url="${specUrl}"></redoc><script src="${REDOC_BUNDLE_PATH}"></script></body></html>`
  );
}

/** GET /redoc and the bundle it loads. */
export function mountRedoc(express: Express, specUrl: string, title: string): void {
  const file = redocBundleFile();
  const html = redocHtml(specUrl, title);
  express.get(REDOC_BUNDLE_PATH, (_req: Request, res: Response) => {
    // Not versioned in its URL: cached for an hour, then revalidated by ETag.
    res.sendFile(file, { maxAge: '1h', headers: { 'Content-Type': 'application/javascript; charset=utf-8' } });
  });
  express.get('/redoc', (_req: Request, res: Response) => {
    res.type('html').send(html);
  });
}
