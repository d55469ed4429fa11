import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { ComfyUiProbe } from './comfyui-probe';

/** Every ComfyUI of COMFYUI_URLS answers /system_stats within the budget; reports its version. */
@Injectable()
export class ComfyUiHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly probe: ComfyUiProbe,
  ) {}

  async isHealthy(key = 'comfyui') {
    const indicator = this.health.check(key);
    const instances = (await this.probe.instances()).map(({ url, up, version, latency_ms, error }) => ({
      url, up, version, latency_ms, ...(error ? { error } : {}),
    }));
    const details = { instances };
    return instances.length && instances.every((i) => i.up) ? indicator.up(details) : indicator.down(details);
  }
}
