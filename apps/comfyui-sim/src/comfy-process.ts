/**
 * Everything a ComfyUI process keeps in memory and loses when it dies: the prompt counter, the
 * queue and history, the worker (with its caches and loaded models). A restart replaces the
 * whole object.
 */
import { Executor, ExecutorDeps } from './executor';
import { PromptQueue } from './prompt-queue';
import { JsonObject, orderedObject } from './py-json';
import { WsHub } from './ws-hub';

export class ComfyProcess {
  readonly queue: PromptQueue;
  readonly executor: Executor;
  /** `PromptServer.number`: next server-assigned prompt number. */
  number = 0;

  constructor(hub: WsHub, deps: Omit<ExecutorDeps, 'queue' | 'hub'>) {
    this.queue = new PromptQueue(() => hub.send('status', orderedObject([['status', this.queueInfo()]]), null));
    this.executor = new Executor({ ...deps, queue: this.queue, hub });
    this.executor.start();
  }

  /** `get_queue_info()`: the `status` payload and GET /prompt body. */
  queueInfo(): JsonObject {
    return orderedObject([['exec_info', orderedObject([['queue_remaining', this.queue.tasksRemaining()]])]]);
  }

  kill(): void {
    this.executor.kill();
  }
}
