import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPlaygroundAssets, playgroundDir } from './playground.assets';

describe('playground assets', () => {
  it('ships the page, its modules and its stylesheet from the source tree', () => {
    const assets = loadPlaygroundAssets(playgroundDir());
    expect([...assets.keys()].sort()).toEqual(expect.arrayContaining(['index.html', 'main.js', 'api.js', 'playground.css']));
    expect(assets.get('main.js')?.contentType).toBe('text/javascript; charset=utf-8');
    expect(assets.get('playground.css')?.contentType).toBe('text/css; charset=utf-8');
  });

  it('every module the page imports is one it serves (a missing file would only fail in the browser)', () => {
    const assets = loadPlaygroundAssets(playgroundDir());
    const imports: string[] = [];
    for (const [name, a] of assets) {
      if (!name.endsWith('.js')) continue;
      for (const m of a.body.toString('utf8').matchAll(/^import .* from '\.\/([^']+)';$/gm)) {
        imports.push(m[1]);
        expect({ name, imports: m[1], served: assets.has(m[1]) }).toEqual({ name, imports: m[1], served: true });
      }
    }
    expect(imports).toEqual(expect.arrayContaining(['api.js', 'history.js', 'input-image.js']));
  });

  it('takes only html, js and css files, with an ETag per content; a missing directory is an empty set', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'playground-assets-'));
    try {
      writeFileSync(path.join(dir, 'a.js'), 'export {};');
      writeFileSync(path.join(dir, 'b.js'), 'export const b = 1;');
      writeFileSync(path.join(dir, 'notes.md'), '# not served');
      writeFileSync(path.join(dir, '.env'), 'SECRET=1');
      const assets = loadPlaygroundAssets(dir);
      expect([...assets.keys()].sort()).toEqual(['a.js', 'b.js']);
      expect(assets.get('a.js')?.etag).not.toBe(assets.get('b.js')?.etag);
      expect(loadPlaygroundAssets(path.join(dir, 'missing')).size).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
