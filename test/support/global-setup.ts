import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestRedisServer } from './redis-server';

export const STATE_FILE = join(tmpdir(), `fictures-e2e-${process.pid}.json`);

/** One private Redis for the whole e2e run (unless REDIS_URL is given); each spec uses its own key prefix. */
export default async function globalSetup(): Promise<void> {
  if (process.env.REDIS_URL) return;
  const server = await TestRedisServer.start();
  process.env.REDIS_URL = server.url;
  (globalThis as Record<string, unknown>).__FICTURES_REDIS__ = server;
  writeFileSync(STATE_FILE, JSON.stringify({ url: server.url }));
}
