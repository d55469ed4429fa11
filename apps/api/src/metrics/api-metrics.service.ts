import { Injectable, Logger } from '@nestjs/common';
import { Queue } from 'bullmq';
import { InjectQueue } from '@nestjs/bullmq';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GenerationQueues } from '@app/jobs';
import { CachedProbe, FleetMonitor, WORKER_STATES, WorkerHeartbeat, withTimeout } from '@app/health';
import { logQueueErrors, QueueName } from '@app/queue';
import { RedisMemoryProbe } from './redis-memory';

const QUEUE_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed', 'waiting-children'] as const;
type QueueDepth = Record<string, Record<string, number>>;

const MIB = 1024 * 1024;

/**
 * The API's Prometheus registry (its own, not prom-client's global one, so several apps can share
 * a process in tests). Per process: HTTP traffic, submissions and queued cancels. Fleet-wide,
 * read from Redis at scrape time (every API instance reports the same values): queue depth, and
 * from worker heartbeats: worker states, ComfyUI up, GPU VRAM and busy share; Redis memory.
 */
@Injectable()
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  private readonly jobs: Counter<'model' | 'status'>;
  private readonly cacheHits: Counter<'model'>;
  private readonly depth: CachedProbe<QueueDepth>;

  constructor(
    private readonly fleet: FleetMonitor,
    generation: GenerationQueues,
    @InjectQueue(QueueName.Webhook) webhook: Queue,
    redisMemory: RedisMemoryProbe,
  ) {
    const registers = [this.registry];
    // Every model's queue (generation, generation-<model>) and the webhook queue.
    const queues: Queue[] = [...generation.all(), webhook];
    for (const q of queues) logQueueErrors(q, (m) => new Logger('Metrics').warn(m));
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'fictures_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'fictures_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.jobs = new Counter({
      name: 'fictures_jobs_total',
      help: 'Generation jobs by model and status: submitted, canceled-while-queued and succeeded-from-the-result-cache here; succeeded, failed and canceled-while-running on the workers',
      labelNames: ['model', 'status'],
      registers,
    });
    this.cacheHits = new Counter({
      name: 'fictures_result_cache_hits_total',
      help: 'Jobs answered from an earlier identical seeded result without a GPU run (also counted as succeeded in fictures_jobs_total)',
      labelNames: ['model'],
      registers,
    });

    this.depth = new CachedProbe(
      () => withTimeout(Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts(...QUEUE_STATES)] as const)).then(Object.fromEntries), 800, 'queue depth'),
      1_000,
    );
    const readFleet = () => this.fleet.heartbeats().catch(() => undefined);
    const self = this;
    new Gauge({
      name: 'fictures_queue_jobs',
      help: 'Jobs in each queue by state (read from Redis; the same on every API instance)',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        this.reset();
        const depth = await self.depth.get().catch(() => undefined);
        for (const [queue, counts] of Object.entries(depth ?? {})) {
          for (const state of QUEUE_STATES) this.set({ queue, state }, counts[state] ?? 0);
        }
      },
    });
    new Gauge({
      name: 'fictures_workers',
      help: 'Generation workers with a fresh heartbeat, by state',
      labelNames: ['state'],
      registers,
      async collect() {
        this.reset();
        const beats = await readFleet();
        if (!beats) return;
        for (const state of WORKER_STATES) this.set({ state }, beats.filter((b) => b.state === state).length);
      },
    });
    this.fleetGauge('fictures_comfyui_up', 'ComfyUI reachable from its worker (1) or not (0), per ComfyUI instance', ['comfyui'], readFleet, (b, set) =>
      set({ comfyui: b.comfyui }, b.state === 'comfyui_down' ? 0 : 1),
    );
    this.fleetGauge('fictures_gpu_vram_total_bytes', 'GPU memory, per device (ComfyUI /system_stats)', ['comfyui', 'device', 'name'], readFleet, (b, set) => {
      for (const g of b.gpus) set({ comfyui: b.comfyui, device: String(g.index), name: g.name }, g.vram_total_mb * MIB);
    });
    this.fleetGauge('fictures_gpu_vram_free_bytes', "Free GPU memory, per device (ComfyUI's vram_free: CUDA free + reserved-but-unused by PyTorch)", ['comfyui', 'device', 'name'], readFleet, (b, set) => {
      for (const g of b.gpus) set({ comfyui: b.comfyui, device: String(g.index), name: g.name }, g.vram_free_mb * MIB);
    });
    this.fleetGauge('fictures_gpu_busy_ratio', 'Share of the last minute the GPU spent on jobs, per ComfyUI instance', ['comfyui'], readFleet, (b, set) =>
      set({ comfyui: b.comfyui }, b.busy_ratio),
    );
    new Gauge({
      name: 'fictures_redis_memory_used_bytes',
      help: 'Memory Redis uses (INFO memory used_memory; read at most every 5 s, the same on every API instance)',
      registers,
      async collect() {
        this.reset();
        const m = await redisMemory.read();
        if (m) this.set(m.used_bytes);
      },
    });
    new Gauge({
      name: 'fictures_redis_memory_max_bytes',
      help: 'Redis maxmemory (0 = no limit); used / max is how full Redis is',
      registers,
      async collect() {
        this.reset();
        const m = await redisMemory.read();
        if (m) this.set(m.max_bytes);
      },
    });
    new Gauge({
      name: 'fictures_redis_maxmemory_policy',
      help: 'Always 1, labelled with Redis maxmemory-policy (BullMQ needs noeviction)',
      labelNames: ['policy'],
      registers,
      async collect() {
        this.reset();
        const m = await redisMemory.read();
        if (m) this.set({ policy: m.policy }, 1);
      },
    });
  }

  private fleetGauge<L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    fleet: () => Promise<WorkerHeartbeat[] | undefined>,
    each: (beat: WorkerHeartbeat, set: (labels: Record<L, string>, value: number) => void) => void,
  ): void {
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        const beats = await fleet();
        for (const b of beats ?? []) each(b, (labels, value) => this.set(labels as Partial<Record<L, string>>, value));
      },
    });
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  jobSubmitted(model: string): void {
    this.jobs.inc({ model, status: 'submitted' });
  }

  jobCanceledWhileQueued(model: string): void {
    this.jobs.inc({ model, status: 'canceled' });
  }

  jobAnsweredFromCache(model: string): void {
    this.jobs.inc({ model, status: 'succeeded' });
    this.cacheHits.inc({ model });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
