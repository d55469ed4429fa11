import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { Env } from '@app/config';
import { ComfyInstanceStatus, ComfyUiProbe } from './comfyui-probe';
import type { GpuReport } from './gpu-report';
import { healthSettings } from './health-settings';

export interface GpuPolicy {
  /** A reachable ComfyUI without a CUDA device is a fault (GPU_REQUIRED). */
  required: boolean;
  /** Free VRAM below this (MiB) on any device is a fault (HEALTH_MIN_FREE_VRAM_MB). */
  minFreeMb?: number;
}

export interface GpuEvaluation {
  up: boolean;
  devices: Array<GpuReport & { comfyui: string }>;
  problems: string[];
}

/** Judges the GPUs behind the ComfyUI instances; unreachable instances are the comfyui check's business. */
export function evaluateGpus(instances: ComfyInstanceStatus[], policy: GpuPolicy): GpuEvaluation {
  const problems: string[] = [];
  const devices: GpuEvaluation['devices'] = [];
  const reachable = instances.filter((i) => i.up);
  if (policy.required && !reachable.length) problems.push('no ComfyUI reachable to report a GPU');
  for (const inst of reachable) {
    if (!inst.gpus.length && policy.required) problems.push(`${inst.url}: no CUDA device`);
    for (const g of inst.gpus) {
      devices.push({ comfyui: inst.url, ...g });
      if (policy.minFreeMb !== undefined && g.vram_free_mb < policy.minFreeMb) {
        problems.push(`${inst.url} GPU ${g.index}: ${g.vram_free_mb} MiB free, below ${policy.minFreeMb} MiB`);
      }
    }
  }
  return { up: problems.length === 0, devices, problems };
}

/** Per device: name, VRAM total and free (MiB), used share; down on no GPU or too little free VRAM. */
@Injectable()
export class GpuHealthIndicator {
  private readonly policy: GpuPolicy;

  constructor(
    private readonly health: HealthIndicatorService,
    private readonly probe: ComfyUiProbe,
    env: Env,
  ) {
    const s = healthSettings(env);
    this.policy = { required: s.gpuRequired, minFreeMb: s.minFreeVramMb };
  }

  async isHealthy(key = 'gpu') {
    const indicator = this.health.check(key);
    const { up, devices, problems } = evaluateGpus(await this.probe.instances(), this.policy);
    const details = {
      devices,
      required: this.policy.required,
      ...(this.policy.minFreeMb !== undefined ? { min_free_vram_mb: this.policy.minFreeMb } : {}),
      ...(problems.length ? { message: problems.join('; ') } : {}),
    };
    return up ? indicator.up(details) : indicator.down(details);
  }
}
