import { randomUUID } from 'node:crypto';
import type { DynamicModule, INestApplication, INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test, type TestingModule } from '@nestjs/testing';
import type { NestExpressApplication } from '@nestjs/platform-express';
import Redis, { Cluster } from 'ioredis';
import { Env, loadEnv } from '@app/config';
import { servesJobs, WorkerHeartbeatStore } from '@app/health';
import { RedisKeys, redisTopology, scanKeys } from '@app/queue';
import { ApiModule } from '../../apps/api/src/api.module';
import { setupApp } from '../../apps/api/src/setup-app';
import { startSimulator, type SimulatorHandle, type SimulatorOptions } from '../../apps/comfyui-sim/src/simulator';
import { WorkerModule } from '../../apps/worker/src/worker.module';
import { waitFor } from './wait-for';

export interface StackOptions {
  /** How many simulators (and so generation workers); 0 for an API pointed at nothing. */
  comfyui?: number;
  sim?: SimulatorOptions;
  /** Per simulator, merged over `sim` (e.g. each its own model files); its length raises `comfyui`. */
  simEach?: SimulatorOptions[];
  /** Wait for every worker to serve before the API starts (default true; false while a test holds a warm-up). */
  waitForWorkers?: boolean;
  /** Start the worker process part (default true). */
  worker?: boolean;
  env?: Record<string, string>;
  /** Providers replaced by token, as @nestjs/testing overrideProvider does (e.g. a stub DNS lookup). */
  overrides?: { api?: ProviderOverride[]; worker?: ProviderOverride[] };
}

export interface ProviderOverride {
  provide: unknown;
  useValue: unknown;
}

async function compileWithOverrides(module: DynamicModule, overrides: ProviderOverride[]): Promise<TestingModule> {
  let builder = Test.createTestingModule({ imports: [module] });
  for (const o of overrides) builder = builder.overrideProvider(o.provide).useValue(o.useValue);
  return builder.compile();
}

/**
 * A whole deployment in one test process: simulators on random ports, the API on a random port
 * and the worker, all against the e2e Redis under a prefix of their own.
 */
export class Stack {
  sims: SimulatorHandle[] = [];
  api!: INestApplication;
  private readonly apis: INestApplication[] = [];
  worker?: INestApplicationContext;
  url!: string;
  env!: Env;
  /** The environment the stack was configured with, for processes started by a test. */
  rawEnv!: Record<string, string>;
  redis!: Redis;
  private overrides: NonNullable<StackOptions['overrides']> = {};

  static async start(opts: StackOptions = {}): Promise<Stack> {
    const s = new Stack();
    try {
      await s.boot(opts);
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  private async boot(opts: StackOptions): Promise<void> {
    const redisUrl = opts.env?.REDIS_URL ?? process.env.REDIS_URL;
    if (!redisUrl) throw new Error('REDIS_URL is not set: run the e2e tests through jest (global setup)');
    const count = Math.max(opts.comfyui ?? 1, opts.simEach?.length ?? 0);
    for (let i = 0; i < count; i++) this.sims.push(await startSimulator({ stepMs: 10, ...opts.sim, ...opts.simEach?.[i] }));
    // On a Cluster every key of a deployment must share a slot: the prefix carries a {hash tag}.
    const prefix = `t${randomUUID().slice(0, 8)}`;
    this.rawEnv = {
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: opts.env?.REDIS_CLUSTER_NODES ? `{${prefix}}` : prefix,
      COMFYUI_URLS: this.sims.map((x) => x.url).join(',') || 'http://127.0.0.1:9',
      WORKFLOWS_DIR: 'workflows',
      // pino (API request lines) as quiet as Nest's logger: ['error'] below.
      LOG_LEVEL: 'error',
      COMFYUI_POLL_INTERVAL_MS: '500',
      COMFYUI_IDLE_TIMEOUT_MS: '5000',
      JOB_BACKOFF_MS: '200',
      WORKER_LOCK_DURATION_MS: '5000',
      WORKER_STALLED_INTERVAL_MS: '2000',
      SYNC_TIMEOUT_MS: '20000',
      WORKER_SHUTDOWN_GRACE_MS: '1000',
      // Specs poll every 50 ms from one IP; only the rate-limit spec wants the real limits.
      RATE_LIMIT_SUBMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_READ_PER_MINUTE: '1000000',
      ...opts.env,
    };
    this.env = loadEnv(this.rawEnv);
    this.redis = testClient(this.env);
    this.redis.on('error', () => undefined); // fault tests stop this Redis on purpose
    this.overrides = opts.overrides ?? {};
    if ((opts.worker ?? true) && this.overrides.worker?.length) {
      const ctx = await compileWithOverrides(WorkerModule.forRoot(this.env), this.overrides.worker);
      ctx.useLogger(['error', 'warn']);
      // Held before init: a hook that throws must not orphan the clients already connected.
      this.worker = ctx;
      await ctx.init();
    } else if (opts.worker ?? true) {
      this.worker = await NestFactory.createApplicationContext(WorkerModule.forRoot(this.env), { logger: ['error', 'warn'] });
      await this.worker.init();
    }
    // The synchronous route refuses work while no worker has said it can take it (no_capacity):
    // let the first heartbeats land before any API serves, as they do within ms in production.
    if (this.worker && this.sims.length && (opts.waitForWorkers ?? true)) await this.workersServing(this.sims.length);
    const first = await this.addApi();
    this.api = first.app;
    this.url = first.url;
  }

  /** Resolves once `count` generation workers have a heartbeat saying their ComfyUI answers. */
  async workersServing(count: number, timeoutMs = 10_000): Promise<void> {
    const beats = new WorkerHeartbeatStore(this.redis, new RedisKeys(this.env.QUEUE_PREFIX));
    await waitFor(async () => ((await beats.list()).filter(servesJobs).length >= count ? true : undefined), timeoutMs, `${count} worker heartbeat(s)`);
  }

  /** Another API instance on the same Redis and prefix (as behind a load balancer). */
  async addApi(): Promise<{ app: INestApplication; url: string }> {
    const app = this.overrides.api?.length
      ? (await compileWithOverrides(ApiModule.forRoot(this.env), this.overrides.api)).createNestApplication<NestExpressApplication>({ bodyParser: false, logger: ['error'] })
      : await NestFactory.create<NestExpressApplication>(ApiModule.forRoot(this.env), { bodyParser: false, logger: ['error'] });
    setupApp(app, this.env);
    // Registered before listen(): a bootstrap hook that refuses to start (AUTH_REQUIRED) leaves
    // Redis clients behind that close() must still end, or they reconnect forever once Redis stops.
    this.apis.push(app);
    await app.listen(0, '127.0.0.1');
    const addr = app.getHttpServer().address() as { port: number };
    return { app, url: `http://127.0.0.1:${addr.port}` };
  }

  async close(): Promise<void> {
    // Nest stops at the first shutdown hook that throws and leaves the later hooks' connections open,
    // so a failed close is a leak: say so instead of swallowing it.
    const report = (what: string) => (e: Error) => process.stderr.write(`Stack.close: ${what} did not close cleanly (its remaining connections stay open): ${e.message}\n`);
    for (const app of this.apis) await app.close().catch(report('an API'));
    await this.worker?.close().catch(report('the worker'));
    await Promise.all(this.sims.map((s) => s.close().catch(() => undefined)));
    if (this.redis && this.env) {
      const keys = await scanKeys(this.redis, `${this.env.QUEUE_PREFIX}:*`).catch(() => [] as string[]);
      if (keys.length) await this.redis.del(...keys).catch(() => undefined);
    }
    this.redis?.disconnect();
  }
}

/**
 * The test's own client on the stack's Redis (a single server, a Sentinel primary or a Cluster),
 * connecting on first use and never queueing a command for long. Typed as Redis: on a Cluster the
 * commands of one slot behave the same.
 */
function testClient(env: Env): Redis {
  const t = redisTopology(env);
  if (t.kind === 'cluster') return new Cluster(t.nodes, { lazyConnect: true, redisOptions: { maxRetriesPerRequest: 1, password: t.password } }) as unknown as Redis;
  if (t.kind === 'sentinel') return new Redis({ sentinels: t.sentinels, name: t.name, password: t.password, sentinelPassword: t.sentinelPassword, maxRetriesPerRequest: 1, lazyConnect: true });
  return new Redis(t.url, { maxRetriesPerRequest: 1, lazyConnect: true });
}

export { waitFor };
