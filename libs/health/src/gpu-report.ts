import type { GpuDevice, SystemStats } from '@app/comfyui';

const MIB = 1024 * 1024;

/** One GPU as ComfyUI's /system_stats describes it, in MiB (ComfyUI reports bytes). */
export interface GpuReport {
  index: number;
  name: string;
  type: string;
  vram_total_mb: number;
  /**
   * ComfyUI's vram_free: CUDA free memory plus what PyTorch reserved but does not use — more than
   * nvidia-smi shows as free.
   */
  vram_free_mb: number;
  /** (total − free) / total, 0..1; 0 when the total is unknown. */
  vram_used_ratio: number;
}

function mb(bytes: unknown): number {
  return typeof bytes === 'number' && Number.isFinite(bytes) && bytes > 0 ? Math.round(bytes / MIB) : 0;
}

/** Only CUDA devices count as GPUs (ROCm builds of PyTorch report themselves as cuda too). */
export function isCudaDevice(d: Pick<GpuDevice, 'type'>): boolean {
  return String(d.type).toLowerCase() === 'cuda';
}

/** The CUDA devices of a /system_stats answer; empty on a CPU-only ComfyUI. */
export function gpuReports(stats: SystemStats): GpuReport[] {
  return stats.devices.filter(isCudaDevice).map((d, i) => {
    const total = mb(d.vram_total);
    const free = Math.min(mb(d.vram_free), total);
    return {
      index: typeof d.index === 'number' ? d.index : i,
      name: String(d.name ?? 'unknown'),
      type: String(d.type),
      vram_total_mb: total,
      vram_free_mb: free,
      vram_used_ratio: total ? Math.round(((total - free) / total) * 1000) / 1000 : 0,
    };
  });
}
