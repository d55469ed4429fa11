import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import type { Worker } from 'bullmq';
import type { ComfyUiClient } from '@app/comfyui';
import { JobLifecycle, type JobTransition } from '@app/jobs';
import { GenerationWorkerPool } from '../generation/generation-worker.pool';

/** What one generation worker (one ComfyUI) is doing, from the job owner's transitions on it. */
export class SlotActivity {
  current?: { jobId: string; startedAt: number; lastProgressAt?: number };
  lastJobStartedAt?: number;
  private busyMs = 0;

  constructor(
    readonly index: number,
    readonly comfy: ComfyUiClient,
    readonly worker: Worker,
  ) {}

  /** Called for every transition of this process; keeps those on this slot's ComfyUI. */
  observe(t: JobTransition): void {
    if (!('comfyui' in t) || t.comfyui !== this.comfy.baseUrl) return;
    if (t.kind === 'running') this.started(t.jobId, t.at);
    else if (t.kind === 'progress' && this.current?.jobId === t.jobId) this.current.lastProgressAt = t.at;
    else if (t.kind === 'ended' || t.kind === 'requeued') this.ended(t.jobId, t.at);
  }

  private started(jobId: string, at: number): void {
    if (this.current) this.ended(undefined, at);
    this.current = { jobId, startedAt: at };
    this.lastJobStartedAt = at;
  }

  private ended(jobId: string | undefined, at: number): void {
    if (!this.current || (jobId !== undefined && jobId !== this.current.jobId)) return;
    this.busyMs += Math.max(0, at - this.current.startedAt);
    this.current = undefined;
  }

  /** Milliseconds spent on jobs since this worker started, the running one included. */
  busyMsTotal(now = Date.now()): number {
    return this.busyMs + (this.current ? now - this.current.startedAt : 0);
  }
}

/**
 * One SlotActivity per generation worker of the pool. Listed after the pool in WorkerModule, so
 * the pool has created its workers when this bootstraps; new workers are picked up on each call.
 */
@Injectable()
export class WorkerActivity implements OnApplicationBootstrap {
  private readonly bySlot: SlotActivity[] = [];
  private readonly seen = new WeakSet<Worker>();

  constructor(
    private readonly pool: GenerationWorkerPool,
    private readonly lifecycle: JobLifecycle,
  ) {}

  onApplicationBootstrap(): void {
    this.slots();
    this.lifecycle.onTransition((t) => {
      for (const s of this.bySlot) s.observe(t);
    });
  }

  slots(): SlotActivity[] {
    const workers = this.pool.workers;
    const clients = this.pool.comfyClients;
    workers.forEach((w, i) => {
      if (this.seen.has(w)) return;
      this.seen.add(w);
      this.bySlot.push(new SlotActivity(i, clients[i], w));
    });
    return this.bySlot;
  }
}
