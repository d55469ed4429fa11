import { type FactoryProvider, type OnModuleDestroy } from '@nestjs/common';
import { getQueueToken } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import { Env } from '@app/config';
import { type GenerationJobData, type GenerationResult, generationQueueName, ObservedQueue, QueueName } from '@app/queue';
import { WorkflowRegistry } from '@app/workflows';

export type GenerationQueue = Queue<GenerationJobData, GenerationResult>;

/**
 * One BullMQ queue per model of workflows/ (see generationQueueName), so a worker can consume
 * only the models its ComfyUI has. The default model's queue is the one BullModule registers; the
 * others are made here and closed with the module.
 */
export class GenerationQueues implements OnModuleDestroy {
  constructor(
    readonly defaultModel: string,
    private readonly byModel: ReadonlyMap<string, GenerationQueue>,
    private readonly owned: readonly GenerationQueue[],
  ) {}

  /** The queue of a model; an id no manifest declares (never accepted by the API) maps to the default's. */
  forModel(model: string): GenerationQueue {
    return this.byModel.get(model) ?? (this.byModel.get(this.defaultModel) as GenerationQueue);
  }

  nameFor(model: string): string {
    return generationQueueName(model, this.defaultModel);
  }

  models(): string[] {
    return [...this.byModel.keys()];
  }

  all(): GenerationQueue[] {
    return [...this.byModel.values()];
  }

  /**
   * The queue that holds a job, with its state there; undefined when no queue knows the id. With
   * the job's model known (a job lives in its model's queue only), only that queue is asked.
   */
  async locate(jobId: string, model?: string): Promise<{ queue: GenerationQueue; state: string } | undefined> {
    const known = model === undefined ? undefined : this.byModel.get(model);
    const queues = known ? [known] : this.all();
    const states = await Promise.all(queues.map((q) => q.getJobState(jobId)));
    const i = states.findIndex((s) => s !== 'unknown');
    return i < 0 ? undefined : { queue: queues[i], state: states[i] };
  }

  async onModuleDestroy(): Promise<void> {
    await Promise.all(this.owned.map((q) => q.close().catch(() => undefined)));
  }
}

export const generationQueuesProvider: FactoryProvider<GenerationQueues> = {
  provide: GenerationQueues,
  inject: [getQueueToken(QueueName.Generation), WorkflowRegistry, Env],
  useFactory: (defaultQueue: GenerationQueue, workflows: WorkflowRegistry, env: Env) => {
    const byModel = new Map<string, GenerationQueue>();
    const owned: GenerationQueue[] = [];
    for (const { manifest } of workflows.list()) {
      const name = generationQueueName(manifest.id, workflows.defaultId);
      if (name === QueueName.Generation) {
        byModel.set(manifest.id, defaultQueue);
        continue;
      }
      // Same connection settings as the registered queue (producer or worker role of this app).
      const queue: GenerationQueue = new ObservedQueue(name, { connection: defaultQueue.opts.connection, prefix: env.QUEUE_PREFIX });
      byModel.set(manifest.id, queue);
      owned.push(queue);
    }
    return new GenerationQueues(workflows.defaultId, byModel, owned);
  },
};
