import { hostname } from 'node:os';
import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { Env } from '@app/config';
import { ComfyInstanceStatus, probeComfyUi, withTimeout, WorkerHeartbeat, WorkerHeartbeatStore, WorkerState } from '@app/health';
import { SlotActivity, WorkerActivity } from './worker-activity';

const BUSY_WINDOW_MS = 60_000;

/**
 * Every WORKER_HEARTBEAT_INTERVAL_MS, each generation worker of this process writes its heartbeat
 * (ComfyUI reachable and version, GPUs and VRAM, state, current job, last progress, busy share) to
 * Redis with a TTL of three intervals. The API reads them to report the fleet and to spot a
 * wedged consumer; a worker that dies simply expires.
 */
@Injectable()
export class WorkerHeartbeatService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger('Heartbeat');
  private readonly startedAt = Date.now();
  private readonly samples = new Map<number, Array<{ at: number; busyMs: number }>>();
  private readonly lastState = new Map<number, WorkerState>();
  private timer?: NodeJS.Timeout;
  private beating?: Promise<void>;
  private stopped = false;
  private redisFailing = false;

  constructor(
    private readonly env: Env,
    private readonly activity: WorkerActivity,
    private readonly store: WorkerHeartbeatStore,
  ) {}

  get intervalMs(): number {
    return this.env.WORKER_HEARTBEAT_INTERVAL_MS;
  }

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.beating = this.beat().finally(() => this.schedule(this.intervalMs));
    }, delay);
    this.timer.unref();
  }

  idOf(slot: SlotActivity): string {
    return `${hostname()}:${process.pid}:${slot.index}`;
  }

  /** One round: probe each ComfyUI, publish each heartbeat. Never throws. */
  async beat(): Promise<void> {
    const slots = this.activity.slots();
    const probeBudget = Math.min(2_000, this.intervalMs);
    const probes = await Promise.all(slots.map((s) => probeComfyUi(s.comfy, probeBudget)));
    const beats = slots.map((s, i) => this.heartbeatOf(s, probes[i]));
    try {
      await withTimeout(Promise.all(beats.map((b) => this.store.publish(b, this.intervalMs * 3))), Math.max(1_000, this.intervalMs), 'publishing heartbeats');
      if (this.redisFailing) this.logger.log({ msg: 'heartbeats published again' });
      this.redisFailing = false;
    } catch (e) {
      if (!this.redisFailing) this.logger.warn({ msg: 'heartbeat not published', error: (e as Error).message });
      this.redisFailing = true;
    }
  }

  private heartbeatOf(slot: SlotActivity, probe: ComfyInstanceStatus): WorkerHeartbeat {
    const now = Date.now();
    // `warming` also while the pool has not yet started the slot (model files being listed): it takes no job yet.
    const state: WorkerState = !probe.up ? 'comfyui_down' : slot.slot.warming || !slot.slot.comfyUp ? 'warming' : slot.current ? 'busy' : 'idle';
    const before = this.lastState.get(slot.index);
    if (state === 'comfyui_down' && before !== 'comfyui_down') this.logger.warn({ msg: 'ComfyUI unreachable', comfyui: probe.url, error: probe.error });
    if (before === 'comfyui_down' && state !== 'comfyui_down') this.logger.log({ msg: 'ComfyUI reachable again', comfyui: probe.url });
    this.lastState.set(slot.index, state);
    return {
      id: this.idOf(slot),
      host: hostname(),
      pid: process.pid,
      comfyui: slot.comfy.baseUrl,
      state,
      job_id: slot.current?.jobId ?? null,
      job_started_at: slot.current?.startedAt ?? null,
      last_progress_at: slot.current?.lastProgressAt ?? null,
      last_job_started_at: slot.lastJobStartedAt ?? null,
      comfyui_version: probe.version,
      models: slot.slot.models,
      gpus: probe.gpus,
      busy_ratio: this.busyRatio(slot, now),
      interval_ms: this.intervalMs,
      started_at: this.startedAt,
      at: now,
    };
  }

  /** Busy share over (up to) the last minute, from the samples taken at each beat. */
  private busyRatio(slot: SlotActivity, now: number): number {
    const list = this.samples.get(slot.index) ?? [];
    list.push({ at: now, busyMs: slot.busyMsTotal(now) });
    while (list.length > 2 && now - list[1].at >= BUSY_WINDOW_MS) list.shift();
    this.samples.set(slot.index, list);
    const first = list[0];
    const span = now - first.at;
    if (span <= 0) return slot.current ? 1 : 0;
    return Math.round(Math.min(1, Math.max(0, (list[list.length - 1].busyMs - first.busyMs) / span)) * 1000) / 1000;
  }

  /** Stop beating and withdraw the heartbeats, so the fleet view drops this process at once. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating?.catch(() => undefined);
    const ids = this.activity.slots().map((s) => this.idOf(s));
    await withTimeout(this.store.remove(ids), 1_000, 'removing heartbeats').catch(() => undefined);
  }
}
