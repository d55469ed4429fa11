import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import type { ComfyUiClient } from '@app/comfyui';
import { withTimeout } from './with-timeout';

/** Every ComfyUI answers /system_stats within the budget; reports its version. */
@Injectable()
export class ComfyUiHealthIndicator {
  constructor(private readonly health: HealthIndicatorService) {}

  async isHealthy(clients: ComfyUiClient[], key = 'comfyui', timeoutMs = 800) {
    const indicator = this.health.check(key);
    const results = await Promise.all(
      clients.map(async (c) => {
        try {
          const stats = await withTimeout(c.systemStats(undefined, timeoutMs), timeoutMs, `${c.baseUrl}/system_stats`);
          return { url: c.baseUrl, up: true, version: stats.system.comfyui_version ?? null };
        } catch (e) {
          return { url: c.baseUrl, up: false, message: (e as Error).message };
        }
      }),
    );
    const details = { instances: results };
    return results.length && results.every((r) => r.up) ? indicator.up(details) : indicator.down(details);
  }
}
