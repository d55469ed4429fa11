import { Injectable } from '@nestjs/common';
import { Env } from '@app/config';
import { CachedProbe } from './cached-probe';
import { healthSettings } from './health-settings';
import { WorkerHeartbeat, WorkerHeartbeatStore } from './worker-heartbeat';
import { withTimeout } from './with-timeout';

/** A worker whose ComfyUI answered its last probe: it can take a job now. */
export const servesJobs = (beat: WorkerHeartbeat): boolean => beat.state !== 'comfyui_down';

/**
 * The generation workers of the deployment as their heartbeats in Redis show them, read at most
 * once per HEALTH_CACHE_MS. Any API instance sees the whole fleet, wherever the workers run.
 */
@Injectable()
export class FleetMonitor {
  private readonly cached: CachedProbe<WorkerHeartbeat[]>;

  constructor(
    env: Env,
    private readonly store: WorkerHeartbeatStore,
  ) {
    const { redisTimeoutMs, cacheMs } = healthSettings(env);
    this.cached = new CachedProbe(() => withTimeout(this.store.list(), redisTimeoutMs, 'reading worker heartbeats'), cacheMs);
  }

  /** Fresh heartbeats; rejects when Redis cannot be read within the budget. */
  heartbeats(): Promise<WorkerHeartbeat[]> {
    return this.cached.get();
  }

  /**
   * How many workers can take a job now (fresh heartbeat, ComfyUI answering). From the same
   * cached read as the health checks: most callers pay no Redis round trip. Rejects like heartbeats().
   */
  async workersServing(): Promise<number> {
    return (await this.heartbeats()).filter(servesJobs).length;
  }
}
