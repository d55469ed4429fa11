import { Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { JobLifecycle } from '@app/jobs';
import { ApiMetrics } from './api-metrics.service';

/**
 * Counts what the API itself did to jobs — submissions, cancels of jobs that were still queued and
 * answers from the result cache (a running job's end is counted by the worker that ran it) — from the job owner's transitions.
 */
@Injectable()
export class JobCounters implements OnApplicationBootstrap, OnApplicationShutdown {
  private stop?: () => void;

  constructor(
    private readonly lifecycle: JobLifecycle,
    private readonly metrics: ApiMetrics,
  ) {}

  onApplicationBootstrap(): void {
    this.stop = this.lifecycle.onTransition((t) => {
      if (t.kind === 'queued') this.metrics.jobSubmitted(t.model);
      else if (t.kind === 'ended' && t.status === 'canceled' && t.comfyui === undefined) this.metrics.jobCanceledWhileQueued(t.model);
      else if (t.kind === 'ended' && t.cached) this.metrics.jobAnsweredFromCache(t.model);
    });
  }

  onApplicationShutdown(): void {
    this.stop?.();
  }
}
