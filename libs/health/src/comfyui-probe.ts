import { Injectable, OnApplicationShutdown } from '@nestjs/common';
import { ComfyUiClient, ComfyUiClientFactory } from '@app/comfyui';
import { Env } from '@app/config';
import { CachedProbe } from './cached-probe';
import { gpuReports, type GpuReport } from './gpu-report';
import { healthSettings } from './health-settings';
import { withTimeout } from './with-timeout';

/** One ComfyUI as the last /system_stats call found it. */
export interface ComfyInstanceStatus {
  url: string;
  up: boolean;
  version: string | null;
  latency_ms: number;
  gpus: GpuReport[];
  error?: string;
}

/** Asks one ComfyUI for /system_stats within the budget; never throws. */
export async function probeComfyUi(client: ComfyUiClient, timeoutMs: number): Promise<ComfyInstanceStatus> {
  const started = Date.now();
  const abort = new AbortController();
  try {
    const stats = await withTimeout(client.systemStats(abort.signal, timeoutMs), timeoutMs, `${client.baseUrl} /system_stats`);
    return { url: client.baseUrl, up: true, version: stats.system.comfyui_version ?? null, latency_ms: Date.now() - started, gpus: gpuReports(stats) };
  } catch (e) {
    abort.abort();
    return { url: client.baseUrl, up: false, version: null, latency_ms: Date.now() - started, gpus: [], error: (e as Error).message };
  }
}

/**
 * The ComfyUI instances of this process (COMFYUI_URLS), probed together and remembered for
 * HEALTH_CACHE_MS: the comfyui and gpu indicators and /metrics share one call per window.
 */
@Injectable()
export class ComfyUiProbe implements OnApplicationShutdown {
  private readonly clients: ComfyUiClient[];
  private readonly cached: CachedProbe<ComfyInstanceStatus[]>;

  constructor(env: Env, comfy: ComfyUiClientFactory) {
    const { timeoutMs, cacheMs } = healthSettings(env);
    this.clients = env.COMFYUI_URLS.map((u) => comfy.create(u, { requestTimeoutMs: timeoutMs }));
    this.cached = new CachedProbe(() => Promise.all(this.clients.map((c) => probeComfyUi(c, timeoutMs))), cacheMs);
  }

  instances(): Promise<ComfyInstanceStatus[]> {
    return this.cached.get();
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
