import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import type { ComfyUiClient } from '@app/comfyui';
import { JobLifecycle, type JobTransition } from '@app/jobs';
import { GenerationWorkerPool, type Slot } from '../generation/generation-worker.pool';

/** What one generation worker (one ComfyUI) is doing, from the job owner's transitions on it. */
export class SlotActivity {
  current?: { jobId: string; startedAt: number; lastProgressAt?: number };
  lastJobStartedAt?: number;
  private busyMs = 0;

  constructor(
    readonly index: number,
    readonly comfy: ComfyUiClient,
    /** The pool's slot: its served models and whether it is warming up. */
    readonly slot: Slot,
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
 * One SlotActivity per GPU slot of the pool. Listed after the pool in WorkerModule, so the pool
 * has created its slots when this bootstraps; new slots are picked up on each call.
 */
@Injectable()
export class WorkerActivity implements OnApplicationBootstrap {
  private readonly bySlot: SlotActivity[] = [];
  private readonly seen = new WeakSet<Slot>();

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
    this.pool.allSlots.forEach((slot, i) => {
      if (this.seen.has(slot)) return;
      this.seen.add(slot);
      this.bySlot.push(new SlotActivity(i, slot.comfy, slot));
    });
    return this.bySlot;
  }
}
