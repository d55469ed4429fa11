import { Injectable } from '@nestjs/common';
import { HealthIndicatorService } from '@nestjs/terminus';
import { Queue } from 'bullmq';
import { Env } from '@app/config';
import { GenerationQueues } from '@app/jobs';
import { CachedProbe } from './cached-probe';
import { FleetMonitor, mayServeModel } from './fleet-monitor';
import { healthSettings } from './health-settings';
import type { WorkerHeartbeat } from './worker-heartbeat';
import { withTimeout } from './with-timeout';

export interface QueueSnapshot {
  /** waiting + prioritized: ready to run, not taken. */
  waiting: number;
  active: number;
  paused: boolean;
  /** Creation time of the oldest job among those next in line; null when none waits. */
  oldestWaitingAt: number | null;
}

export interface QueueEvaluation {
  up: boolean;
  waiting: number;
  active: number;
  paused: boolean;
  workers_alive: number;
  oldest_waiting_ms: number | null;
  since_last_start_ms: number | null;
  stuck_after_ms: number;
  message?: string;
}

/** Reads what the stuck-consumer rule needs from a BullMQ queue (a few Redis round trips). */
export async function readQueueSnapshot(queue: Queue): Promise<QueueSnapshot> {
  const [counts, paused, heads] = await Promise.all([
    queue.getJobCounts('waiting', 'prioritized', 'active'),
    queue.isPaused(),
    // Both ends of both lists: cheap, and the oldest of them is the one that has waited longest.
    Promise.all([true, false].map((asc) => queue.getJobs(['waiting', 'prioritized'], 0, 0, asc))),
  ]);
  const stamps = heads.flat().filter((j) => !!j).map((j) => j.timestamp);
  const waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
  return { waiting, active: counts.active ?? 0, paused, oldestWaitingAt: waiting && stamps.length ? Math.min(...stamps) : null };
}

/**
 * The stuck-consumer rule: jobs wait, none is active, workers are alive (heartbeats fresh), and
 * neither has the oldest job been taken nor has any worker started a job for `stuckMs`. A Redis
 * PING cannot see this (a wedged BullMQ consumer still has a healthy connection).
 */
export function evaluateQueue(snap: QueueSnapshot, beats: WorkerHeartbeat[], stuckMs: number, now: number): QueueEvaluation {
  const starts = beats.flatMap((b) => [b.last_job_started_at, b.job_started_at]).filter((t): t is number => typeof t === 'number');
  const lastStart = starts.length ? Math.max(...starts) : null;
  const oldestMs = snap.oldestWaitingAt === null ? null : Math.max(0, now - snap.oldestWaitingAt);
  const sinceStart = lastStart === null ? null : Math.max(0, now - lastStart);
  const stuck =
    snap.waiting > 0 && snap.active === 0 && !snap.paused && beats.length > 0 &&
    oldestMs !== null && oldestMs > stuckMs && (sinceStart === null || sinceStart > stuckMs);
  return {
    up: !stuck,
    waiting: snap.waiting,
    active: snap.active,
    paused: snap.paused,
    workers_alive: beats.length,
    oldest_waiting_ms: oldestMs,
    since_last_start_ms: sinceStart,
    stuck_after_ms: stuckMs,
    ...(stuck ? { message: `${snap.waiting} job(s) waiting, none active, and no worker has started one for ${Math.round(stuckMs / 1000)} s although ${beats.length} worker(s) are alive` } : {}),
  };
}

/**
 * Every model's queue evaluated against the workers that may serve that model: the wedged queue
 * when there is one (named), else the totals over all models.
 */
export function evaluateModelQueues(snaps: Array<{ model: string; snap: QueueSnapshot }>, beats: WorkerHeartbeat[], stuckMs: number, now: number): QueueEvaluation & { model?: string } {
  const evals = snaps.map(({ model, snap }) => ({ model, e: evaluateQueue(snap, beats.filter((b) => mayServeModel(b, model)), stuckMs, now) }));
  const stuck = evals.find((x) => !x.e.up);
  if (stuck) return { ...stuck.e, model: stuck.model };
  const all = evals.map((x) => x.e);
  const oldest = all.map((e) => e.oldest_waiting_ms).filter((v): v is number => v !== null);
  const sinceStart = all.map((e) => e.since_last_start_ms).filter((v): v is number => v !== null);
  return {
    up: true,
    waiting: all.reduce((n, e) => n + e.waiting, 0),
    active: all.reduce((n, e) => n + e.active, 0),
    paused: all.length > 0 && all.every((e) => e.paused),
    workers_alive: beats.length,
    oldest_waiting_ms: oldest.length ? Math.max(...oldest) : null,
    since_last_start_ms: sinceStart.length ? Math.min(...sinceStart) : null,
    stuck_after_ms: stuckMs,
  };
}

/** Down when a model's generation queue has a wedged consumer (see evaluateQueue). */
@Injectable()
export class QueueHealthIndicator {
  private readonly snapshot: CachedProbe<Array<{ model: string; snap: QueueSnapshot }>>;
  private readonly stuckMs: number;

  constructor(
    private readonly health: HealthIndicatorService,
    private readonly fleet: FleetMonitor,
    queues: GenerationQueues,
    env: Env,
  ) {
    const s = healthSettings(env);
    this.stuckMs = s.queueStuckMs;
    const read = () => Promise.all(queues.models().map(async (model) => ({ model, snap: await readQueueSnapshot(queues.forModel(model)) })));
    this.snapshot = new CachedProbe(() => withTimeout(read(), s.redisTimeoutMs, 'reading the generation queues'), s.cacheMs);
  }

  async isHealthy(key = 'queue') {
    const indicator = this.health.check(key);
    let snaps: Array<{ model: string; snap: QueueSnapshot }>;
    let beats: WorkerHeartbeat[];
    try {
      [snaps, beats] = await Promise.all([this.snapshot.get(), this.fleet.heartbeats()]);
    } catch (e) {
      return indicator.down({ message: `queue unreadable: ${(e as Error).message}` });
    }
    const { up, ...details } = evaluateModelQueues(snaps, beats, this.stuckMs, Date.now());
    return up ? indicator.up(details) : indicator.down(details);
  }
}
