import type { Env } from '@app/config';

/** The health knobs of Env, in one place, with the budgets derived from them. */
export interface HealthSettings {
  /** Budget of one indicator; they run in parallel, so this bounds the whole answer. */
  timeoutMs: number;
  /** Redis PING budget (shorter: Redis answers in a millisecond when it is well). */
  redisTimeoutMs: number;
  cacheMs: number;
  gpuRequired: boolean;
  minFreeVramMb?: number;
  queueStuckMs: number;
}

export function healthSettings(env: Env): HealthSettings {
  return {
    timeoutMs: env.HEALTH_TIMEOUT_MS,
    redisTimeoutMs: Math.min(500, env.HEALTH_TIMEOUT_MS),
    cacheMs: env.HEALTH_CACHE_MS,
    gpuRequired: env.GPU_REQUIRED,
    minFreeVramMb: env.HEALTH_MIN_FREE_VRAM_MB,
    queueStuckMs: env.HEALTH_QUEUE_STUCK_MS,
  };
}
