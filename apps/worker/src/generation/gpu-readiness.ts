import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import type { ComfyUiClient } from '@app/comfyui';
import { Env } from '@app/config';
import { WorkflowRegistry } from '@app/workflows';

export interface WarmUpReport {
  comfyui: string;
  models: string[];
  seconds: number;
}

/**
 * What a GPU slot must know or do before it takes user jobs: which models its ComfyUI has the
 * files of (asked of /models/{folder}, so a restarted ComfyUI with other files is seen), and, with
 * WARMUP=true, one small prompt per served model rendered directly on it (not a queued job), so the
 * first user job does not pay the model load.
 */
@Injectable()
export class GpuReadiness {
  private readonly logger = new Logger(GpuReadiness.name);
  private readonly events = new EventEmitter();

  constructor(
    private readonly env: Env,
    private readonly workflows: WorkflowRegistry,
  ) {}

  get warmUpEnabled(): boolean {
    return this.env.WARMUP;
  }

  /** Models whose every required file this ComfyUI lists. Rejects when ComfyUI does not answer. */
  async servedModels(comfy: ComfyUiClient): Promise<string[]> {
    const folders = [...new Set(this.workflows.list().flatMap((w) => w.manifest.required_models.map((r) => r.folder)))];
    const byFolder = new Map<string, Set<string>>();
    for (const f of folders) byFolder.set(f, new Set(await comfy.listModels(f)));
    return this.workflows
      .list()
      .filter(({ manifest }) => manifest.required_models.every((r) => byFolder.get(r.folder)?.has(r.file) ?? false))
      .map(({ manifest }) => manifest.id);
  }

  /**
   * Renders each model's warm-up prompt (its smallest size, fewest steps) in turn. A model whose
   * warm-up fails is logged and still served: a cold GPU is slower, not wrong. Rejects only when
   * ComfyUI stops answering (the caller tries again once it is back).
   */
  async warmUp(comfy: ComfyUiClient, models: string[], signal: AbortSignal): Promise<WarmUpReport> {
    const started = Date.now();
    for (const model of models) {
      const lim = this.workflows.limits(model);
      const params = this.workflows.resolve({
        model, prompt: 'warm-up', width: lim.width.min, height: lim.height.min, num_inference_steps: lim.num_inference_steps.min, seed: 0,
      });
      const graph = this.workflows.buildGraph(params, { filenamePrefix: 'fictures/warmup' });
      const promptId = randomUUID();
      try {
        await comfy.submit(graph, { promptId, signal });
        await comfy.wait(promptId, { signal, idleTimeoutMs: this.env.COMFYUI_IDLE_TIMEOUT_MS });
        this.logger.log({ comfyui: comfy.baseUrl, msg: 'model warmed up', model, prompt_id: promptId });
      } catch (e) {
        if (signal.aborted || !(await comfy.systemStats(undefined, 1_000).then(() => true, () => false))) throw e;
        this.logger.warn({ comfyui: comfy.baseUrl, msg: 'warm-up failed; serving the model cold', model, error: (e as Error).message });
      }
    }
    const report: WarmUpReport = { comfyui: comfy.baseUrl, models, seconds: (Date.now() - started) / 1000 };
    this.events.emit('warmed', report);
    return report;
  }

  /** Each finished warm-up round (metrics). Listeners must not throw. */
  onWarmedUp(listener: (r: WarmUpReport) => void): void {
    this.events.on('warmed', listener);
  }
}
