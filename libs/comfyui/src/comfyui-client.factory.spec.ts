import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadEnv } from '@app/config';
import { ComfyUiClientFactory } from './comfyui-client.factory';
import { ComfyUnavailableError } from './comfyui.errors';

/** A server that accepts requests and never answers: only the client's own timeout ends a call. */
async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(() => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function timeOfFailure(p: Promise<unknown>): Promise<{ err: unknown; ms: number }> {
  const started = Date.now();
  try {
    await p;
  } catch (err) {
    return { err, ms: Date.now() - started };
  }
  throw new Error('expected a rejection');
}

describe('ComfyUiClientFactory', () => {
  it('builds a client for the URL with COMFYUI_REQUEST_TIMEOUT_MS, and a caller may override it', async () => {
    const server = await silentServer();
    const fromEnv = new ComfyUiClientFactory(loadEnv({}, { COMFYUI_REQUEST_TIMEOUT_MS: 150 })).create(`${server.url}/prefix/`);
    // The env keeps its 10 s default here: only the override can make this call fail fast.
    const overridden = new ComfyUiClientFactory(loadEnv({})).create(server.url, { requestTimeoutMs: 150 });
    try {
      expect(fromEnv.baseUrl).toBe(`${server.url}/prefix`);
      for (const client of [fromEnv, overridden]) {
        const { err, ms } = await timeOfFailure(client.systemStats());
        expect(err).toBeInstanceOf(ComfyUnavailableError);
        expect(ms).toBeLessThan(5_000);
      }
    } finally {
      await Promise.all([fromEnv.close(), overridden.close()]);
      await server.close();
    }
  });
});
