import { Test } from '@nestjs/testing';
import { ComfyUiClient, ComfyUiClientFactory, type ComfyUiClientOverrides, type SystemStats } from '@app/comfyui';
import { Env, loadEnv } from '@app/config';
import { ComfyUiProbe } from './comfyui-probe';

/** Only what the probe calls; the rest of the port is never reached. */
function fakeClient(baseUrl: string, stats: () => Promise<SystemStats>): ComfyUiClient & { closed: boolean } {
  const fake = { baseUrl, closed: false, systemStats: stats, close: async () => void (fake.closed = true) };
  return fake as unknown as ComfyUiClient & { closed: boolean };
}

describe('ComfyUiProbe', () => {
  it('gets one client per COMFYUI_URLS entry from the injected factory, with the health budget, and closes them', async () => {
    const env = loadEnv({}, { COMFYUI_URLS: ['http://gpu-a:8188', 'http://gpu-b:8188'], HEALTH_TIMEOUT_MS: 300, HEALTH_CACHE_MS: 0 });
    const made: Array<{ url: string; overrides?: ComfyUiClientOverrides; client: ComfyUiClient & { closed: boolean } }> = [];
    const factory = {
      create: (url: string, overrides?: ComfyUiClientOverrides) => {
        const client = fakeClient(url, () =>
          url.includes('gpu-a')
            ? Promise.resolve({ system: { comfyui_version: '0.3.64' }, devices: [] })
            : Promise.reject(new Error('ECONNREFUSED')),
        );
        made.push({ url, overrides, client });
        return client;
      },
    };
    const moduleRef = await Test.createTestingModule({
      providers: [ComfyUiProbe, { provide: Env, useValue: env }, { provide: ComfyUiClientFactory, useValue: factory }],
    }).compile();

    const instances = await moduleRef.get(ComfyUiProbe).instances();
    expect(made.map((m) => [m.url, m.overrides?.requestTimeoutMs])).toEqual([
      ['http://gpu-a:8188', 300],
      ['http://gpu-b:8188', 300],
    ]);
    expect(instances.map((i) => [i.url, i.up, i.version])).toEqual([
      ['http://gpu-a:8188', true, '0.3.64'],
      ['http://gpu-b:8188', false, null],
    ]);
    await moduleRef.close();
    expect(made.every((m) => m.client.closed)).toBe(true);
  });
});
