import type { FactoryProvider } from '@nestjs/common';
import { REDIS_CLIENT } from '@app/storage';
import type Redis from 'ioredis';
import { RedisKeys, scanKeys } from '@app/queue';
import type { GpuReport } from './gpu-report';

/** `warming`: ComfyUI answers, the worker renders its warm-up prompts and takes no user job yet. */
export type WorkerState = 'idle' | 'busy' | 'comfyui_down' | 'warming';
export const WORKER_STATES: readonly WorkerState[] = ['idle', 'busy', 'comfyui_down', 'warming'];

/**
 * What one generation worker (one ComfyUI, one GPU) says about itself every few seconds. Written
 * to Redis with a TTL of about three intervals, so a worker that dies, wedges its event loop or
 * loses Redis simply disappears; readers need no clock agreement with the writer.
 */
export interface WorkerHeartbeat {
  /** host:pid:slot — unique per generation worker. */
  id: string;
  host: string;
  pid: number;
  comfyui: string;
  state: WorkerState;
  job_id: string | null;
  /** Epoch ms (worker clock) when the current job became active on this worker. */
  job_started_at: number | null;
  /** Epoch ms of the last sampling progress of the current job. */
  last_progress_at: number | null;
  /** Epoch ms when this worker last took a job (any job); null if never since it started. */
  last_job_started_at: number | null;
  comfyui_version: string | null;
  /**
   * Models whose files this worker's ComfyUI has, so it consumes their queues; null until its
   * ComfyUI first answered (or from a worker older than routing): it may serve any model.
   */
  models?: string[] | null;
  gpus: GpuReport[];
  /** Share of the last minute this worker spent on jobs, 0..1. */
  busy_ratio: number;
  interval_ms: number;
  started_at: number;
  /** Epoch ms of this beat (worker clock). */
  at: number;
}

function isHeartbeat(v: unknown): v is WorkerHeartbeat {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.id === 'string' && typeof o.comfyui === 'string' && typeof o.state === 'string' && typeof o.at === 'number' && Array.isArray(o.gpus);
}

/** Reads and writes heartbeats under RedisKeys.workerHeartbeat(id). */
export class WorkerHeartbeatStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async publish(beat: WorkerHeartbeat, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.workerHeartbeat(beat.id), JSON.stringify(beat), 'PX', Math.max(1, Math.round(ttlMs)));
  }

  async remove(ids: string[]): Promise<void> {
    if (ids.length) await this.redis.del(...ids.map((id) => this.keys.workerHeartbeat(id)));
  }

  /** Every heartbeat that has not expired, sorted by id. */
  async list(): Promise<WorkerHeartbeat[]> {
    // Every master of a Cluster, not one random node (the keys share the prefix's slot, so MGET is one node's).
    const keys = await scanKeys(this.redis, this.keys.workerHeartbeatPattern);
    if (!keys.length) return [];
    const values = await this.redis.mget(...keys);
    const beats: WorkerHeartbeat[] = [];
    for (const raw of values) {
      if (!raw) continue; // expired between SCAN and MGET
      try {
        const parsed: unknown = JSON.parse(raw);
        if (isHeartbeat(parsed)) beats.push(parsed);
      } catch {
        // a foreign or truncated value: not a worker we can vouch for
      }
    }
    return beats.sort((a, b) => a.id.localeCompare(b.id));
  }
}

/** The heartbeat store as a provider (REDIS_CLIENT and RedisKeys come from the app's global modules). */
export const workerHeartbeatStoreProvider: FactoryProvider<WorkerHeartbeatStore> = {
  provide: WorkerHeartbeatStore,
  inject: [REDIS_CLIENT, RedisKeys],
  useFactory: (redis: Redis, keys: RedisKeys) => new WorkerHeartbeatStore(redis, keys),
};
