import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { FleetMonitor } from './fleet-monitor';
import { WORKER_STATES, WorkerHeartbeat, WorkerState } from './worker-heartbeat';

export interface WorkerSummary {
  id: string;
  comfyui: string;
  state: WorkerState;
  job_id: string | null;
  heartbeat_age_ms: number;
  /** Since the current job last made progress (or started); null when idle. */
  since_progress_ms: number | null;
  vram_free_mb: number | null;
}

/** A summary of the fleet for the health answer; `now` is this process's clock. */
export function summarizeWorkers(beats: WorkerHeartbeat[], now: number) {
  const by_state = Object.fromEntries(WORKER_STATES.map((s) => [s, 0])) as Record<WorkerState, number>;
  const workers: WorkerSummary[] = beats.map((b) => {
    by_state[b.state] = (by_state[b.state] ?? 0) + 1;
    const progressAt = b.last_progress_at ?? b.job_started_at;
    return {
      id: b.id,
      comfyui: b.comfyui,
      state: b.state,
      job_id: b.job_id,
      heartbeat_age_ms: Math.max(0, now - b.at),
      since_progress_ms: b.job_id && progressAt ? Math.max(0, now - progressAt) : null,
      vram_free_mb: b.gpus.length ? Math.min(...b.gpus.map((g) => g.vram_free_mb)) : null,
    };
  });
  return { alive: beats.length, by_state, workers };
}

/** At least one generation worker has a fresh heartbeat in Redis (seen from any API instance). */
@Injectable()
export class WorkersHealthIndicator {
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly fleet: FleetMonitor,
  ) {}

  async isHealthy(key = 'workers') {
    const indicator = this.health.check(key);
    let beats: WorkerHeartbeat[];
    try {
      beats = await this.fleet.heartbeats();
    } catch (e) {
      return indicator.down({ message: `heartbeats unreadable: ${(e as Error).message}` });
    }
    const summary = summarizeWorkers(beats, Date.now());
    if (!beats.length) return indicator.down({ ...summary, message: 'no worker has a fresh heartbeat' });
    // A warming worker takes no user job yet: a node whose every worker warms is not ready.
    if (beats.every((b) => b.state === 'warming')) return indicator.down({ ...summary, message: 'warming' });
    return indicator.up(summary);
  }
}
