import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { ErrorCode } from '@app/common';
import { JobLifecycle } from '@app/jobs';
import { GpuReadiness } from '../generation/gpu-readiness';
import { WorkerActivity } from '../heartbeat/worker-activity';
import { webhookDeliveries } from './webhook-metrics';

const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800];

/**
 * The worker's Prometheus registry: job outcomes and durations as the worker sees them (the data
 * exists here), webhook deliveries, GPU busy time, process defaults. Served on
 * WORKER_METRICS_PORT; the API's /metrics carries the fleet-wide gauges.
 */
@Injectable()
export class WorkerMetrics implements OnApplicationBootstrap {
  readonly registry = new Registry();
  readonly jobs: Counter<'model' | 'status'>;
  readonly attemptFailures: Counter<'model' | 'code'>;
  readonly queueWait: Histogram<'model'>;
  readonly execution: Histogram<'model'>;
  readonly total: Histogram<'model'>;
  readonly warmUp: Histogram<'comfyui'>;

  constructor(
    private readonly lifecycle: JobLifecycle,
    activity: WorkerActivity,
    private readonly readiness: GpuReadiness,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.registry.registerMetric(webhookDeliveries);
    this.jobs = new Counter({
      name: 'fictures_jobs_total',
      help: 'Generation jobs by model and status: succeeded, failed and canceled-while-running here; submitted and canceled-while-queued on the API',
      labelNames: ['model', 'status'],
      registers,
    });
    this.attemptFailures = new Counter({
      name: 'fictures_job_attempt_failures_total',
      help: 'Failed attempts that will be retried, by model and error code',
      labelNames: ['model', 'code'],
      registers,
    });
    const histogram = (name: string, help: string) => new Histogram({ name, help, labelNames: ['model'], buckets: DURATION_BUCKETS, registers });
    this.queueWait = histogram('fictures_job_queue_wait_seconds', 'From submission to the first attempt\'s prompt starting on the GPU');
    this.execution = histogram('fictures_job_execution_seconds', 'From the prompt starting on the GPU to the outputs being stored (succeeded jobs)');
    this.total = histogram('fictures_job_total_seconds', 'From submission to the result being recorded (succeeded jobs)');
    this.warmUp = new Histogram({
      name: 'fictures_warmup_seconds',
      help: 'Time a GPU slot spent on its warm-up prompts (WARMUP=true) before taking jobs, per ComfyUI instance',
      labelNames: ['comfyui'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    const reported = new Map<string, number>();
    new Counter<'comfyui'>({
      name: 'fictures_gpu_busy_seconds_total',
      help: 'Time each GPU (ComfyUI instance) spent on jobs; rate() of it is the busy share',
      labelNames: ['comfyui'],
      registers,
      collect() {
        const now = Date.now();
        for (const slot of activity.slots()) {
          const key = slot.comfy.baseUrl;
          const ms = slot.busyMsTotal(now);
          const delta = ms - (reported.get(key) ?? 0);
          if (delta > 0) {
            this.inc({ comfyui: key }, delta / 1000);
            reported.set(key, ms);
          }
        }
      },
    });
  }

  onApplicationBootstrap(): void {
    this.readiness.onWarmedUp((r) => this.warmUp.observe({ comfyui: r.comfyui }, r.seconds));
    this.lifecycle.onTransition((t) => {
      // Only what this process's workers did: the API's own transitions (queued, canceled while queued) are counted there.
      if (t.kind === 'running' && t.attempt === 1) this.queueWait.observe({ model: t.model }, t.queueMs / 1000);
      else if (t.kind === 'requeued' && t.reason === 'retry') this.attemptFailures.inc({ model: t.model, code: t.code ?? ErrorCode.InternalError });
      else if (t.kind === 'ended' && t.comfyui !== undefined) {
        this.jobs.inc({ model: t.model, status: t.status });
        if (t.status === 'succeeded' && t.result?.timings) {
          this.execution.observe({ model: t.model }, t.result.timings.execution_ms / 1000);
          this.total.observe({ model: t.model }, t.result.timings.total_ms / 1000);
        }
      }
    });
  }
}
