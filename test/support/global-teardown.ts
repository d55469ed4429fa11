import type { TestRedisServer } from './redis-server';

export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as Record<string, unknown>).__FICTURES_REDIS__ as TestRedisServer | undefined;
  await server?.destroy();
}
