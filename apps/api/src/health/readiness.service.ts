import { Injectable, Logger, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckResult, HealthCheckService, HealthIndicatorFunction, HealthIndicatorResult } from '@nestjs/terminus';
import { Env } from '@app/config';
import {
  ComfyUiHealthIndicator, GpuHealthIndicator, QueueHealthIndicator, RedisHealthIndicator, withTimeout, WorkersHealthIndicator,
} from '@app/health';
import { ShutdownState } from './shutdown-state';

export type ReadyCheck = 'redis' | 'comfyui' | 'gpu' | 'workers' | 'queue';

export interface ReadinessAnswer {
  httpStatus: 200 | 503;
  body: HealthCheckResult;
}

/**
 * Runs the readiness checks named in HEALTH_READY_CHECKS through terminus. Each indicator keeps its
 * own budget and cache; a guard here turns one that still overruns into "down" so the whole
 * answer always comes within about HEALTH_TIMEOUT_MS.
 */
@Injectable()
export class ReadinessService {
  private readonly logger = new Logger('Health');
  private readonly checks: Array<{ key: ReadyCheck; run: () => Promise<HealthIndicatorResult> }>;
  private readonly guardMs: number;
  private readonly lastStatus = new Map<string, string>();

  constructor(
    env: Env,
    private readonly health: HealthCheckService,
    private readonly shutdown: ShutdownState,
    redis: RedisHealthIndicator,
    comfyui: ComfyUiHealthIndicator,
    gpu: GpuHealthIndicator,
    workers: WorkersHealthIndicator,
    queue: QueueHealthIndicator,
  ) {
    const all: Record<ReadyCheck, () => Promise<HealthIndicatorResult>> = {
      redis: () => redis.isHealthy('redis'),
      comfyui: () => comfyui.isHealthy('comfyui'),
      gpu: () => gpu.isHealthy('gpu'),
      workers: () => workers.isHealthy('workers'),
      queue: () => queue.isHealthy('queue'),
    };
    const wanted = [...new Set(env.HEALTH_READY_CHECKS as ReadyCheck[])];
    this.checks = wanted.map((key) => ({ key, run: all[key] }));
    this.guardMs = env.HEALTH_TIMEOUT_MS + 100;
  }

  async check(): Promise<ReadinessAnswer> {
    if (this.shutdown.shuttingDown) {
      return { httpStatus: 503, body: { status: 'shutting_down', info: {}, error: {}, details: {} } };
    }
    const indicators: HealthIndicatorFunction[] = this.checks.map(({ key, run }) => () => this.guarded(key, run));
    try {
      const body = await this.health.check(indicators);
      this.noteTransitions(body);
      return { httpStatus: 200, body };
    } catch (e) {
      if (e instanceof ServiceUnavailableException) {
        const body = e.getResponse() as HealthCheckResult;
        this.noteTransitions(body);
        return { httpStatus: 503, body };
      }
      throw e;
    }
  }

  private async guarded(key: string, run: () => Promise<HealthIndicatorResult>): Promise<HealthIndicatorResult> {
    try {
      return await withTimeout(run(), this.guardMs, `${key} check`);
    } catch (e) {
      return { [key]: { status: 'down', message: (e as Error).message } };
    }
  }

  /**
   * Logs the checks that changed state, not every probe (probes come every few seconds), and in one
   * line: a Redis outage takes redis, workers and queue down together.
   */
  private noteTransitions(body: HealthCheckResult): void {
    const down: Record<string, unknown> = {};
    const up: string[] = [];
    for (const [key, value] of Object.entries(body.details)) {
      const before = this.lastStatus.get(key);
      if (before === value.status) continue;
      this.lastStatus.set(key, value.status);
      if (value.status === 'down') down[key] = value;
      else if (before !== undefined) up.push(key);
    }
    const downKeys = Object.keys(down);
    if (downKeys.length) this.logger.warn({ msg: 'readiness check down', checks: downKeys, details: down });
    if (up.length) this.logger.log({ msg: 'readiness check up again', checks: up });
  }
}
