import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import type { Job, Worker } from 'bullmq';
import type { ComfyUiClient } from '@app/comfyui';
import { GenerationWorkerPool } from '../generation/generation-worker.pool';

/** What one generation worker (one ComfyUI) is doing, from its BullMQ events. */
export class SlotActivity {
  current?: { jobId: string; startedAt: number; lastProgressAt?: number };
  lastJobStartedAt?: number;
  private busyMs = 0;

  constructor(
    readonly index: number,
    readonly comfy: ComfyUiClient,
    readonly worker: Worker,
  ) {
    worker.on('active', (job: Job) => this.started(job));
    worker.on('progress', (job: Job) => {
      if (this.current && this.current.jobId === job.id) this.current.lastProgressAt = Date.now();
    });
    worker.on('completed', (job: Job) => this.ended(job));
    worker.on('failed', (job: Job | undefined) => this.ended(job));
  }

  private started(job: Job): void {
    const now = Date.now();
    if (this.current) this.ended(undefined);
    this.current = { jobId: String(job.id), startedAt: now };
    this.lastJobStartedAt = now;
  }

  private ended(job: Job | undefined): void {
    if (!this.current || (job && String(job.id) !== this.current.jobId)) return;
    this.busyMs += Date.now() - this.current.startedAt;
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

  constructor(private readonly pool: GenerationWorkerPool) {}

  onApplicationBootstrap(): void {
    this.slots();
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
