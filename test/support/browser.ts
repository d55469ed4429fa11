/// <reference lib="dom" />
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (`.ci/run` installs it); playwright-core never downloads a browser. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export interface OfflineBrowser {
  context: BrowserContext;
  /** Every request that tried to leave 127.0.0.1 (aborted): a test fails if one is here. */
  blocked: string[];
  /** CSP violations the pages reported (script, style, connect, img…): a strict page has none. */
  cspViolations(page: Page): Promise<string[]>;
  newPage(width: number, height?: number): Promise<Page>;
  close(): Promise<void>;
}

/**
 * A fresh Chromium profile (its own user-data dir) that reaches only 127.0.0.1: every other request
 * is aborted and recorded, so a page that needs the network (a CDN script, a web font, a phone-home
 * of the browser itself) fails its test instead of passing on a connected machine.
 */
export async function launchOfflineBrowser(): Promise<OfflineBrowser> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fictures-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
      viewport: { width: 1440, height: 900 },
      timeout: 60_000,
    });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const blocked: string[] = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === 'http:' || url.protocol === 'https:' || url.protocol === 'ws:' || url.protocol === 'wss:') && url.hostname !== '127.0.0.1') {
      blocked.push(url.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  // Runs before any page script (injected by the browser, so not subject to the page's CSP).
  await context.addInitScript(() => {
    const w = window as unknown as { __csp: string[] };
    w.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => w.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return {
    context,
    blocked,
    cspViolations: (page) => page.evaluate(() => (window as unknown as { __csp: string[] }).__csp ?? []),
    async newPage(width, height = 900) {
      const page = await context.newPage();
      await page.setViewportSize({ width, height });
      return page;
    },
    async close() {
      await context.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}
