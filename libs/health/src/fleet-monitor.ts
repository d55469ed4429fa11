import { Injectable } from '@nestjs/common';
import { Env } from '@app/config';
import { CachedProbe } from './cached-probe';
import { healthSettings } from './health-settings';
import { WorkerHeartbeat, WorkerHeartbeatStore } from './worker-heartbeat';
import { withTimeout } from './with-timeout';

/** A worker whose ComfyUI answered its last probe: it can take a job now. */
export const servesJobs = (beat: WorkerHeartbeat): boolean => beat.state !== 'comfyui_down' && beat.state !== 'warming';

/**
 * Whether a live worker can (or soon will) run jobs of `model`. A worker that has not yet learnt
 * its models (ComfyUI never answered, or an older worker) counts as serving it: refusing on a
 * guess would turn a slow start into errors.
 */
export const mayServeModel = (beat: WorkerHeartbeat, model: string): boolean => !Array.isArray(beat.models) || beat.models.includes(model);

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
  async workersServing(model?: string): Promise<number> {
    return (await this.heartbeats()).filter((b) => servesJobs(b) && (model === undefined || mayServeModel(b, model))).length;
  }

  /**
   * False when workers are live and none of them has the model's files (nor may have them). With
   * no live worker at all it is true: the fleet is away, not the model (jobs wait, as before).
   * Rejects like heartbeats().
   */
  async modelServed(model: string): Promise<boolean> {
    const beats = await this.heartbeats();
    return beats.length === 0 || beats.some((b) => mayServeModel(b, model));
  }
}
