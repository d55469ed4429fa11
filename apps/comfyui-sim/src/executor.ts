/**
 * The prompt worker: port of `main.prompt_worker` + `PromptExecutor.execute_async` + `execute`.
 * One prompt at a time, the event sequence of protocol §5.6-5.8 (progress_state, executing,
 * progress, executed, execution_success / _error / _interrupted, status, executing null), the
 * classic output cache (identical resubmission runs fully cached), loaded-model bookkeeping,
 * interrupt checks before each node and at every sampler step, and the hang / execution-error
 * faults.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { ExecutionList, isLink } from './execution-list';
import { FaultState } from './faults';
import { NodeDef } from './node-registry';
import {
  InterruptError, NodeContext, NodeError, RtValue, formatInputValue, runNode, tracebackFor,
} from './node-runtime';
import { SimDirs } from './output-files';
import { ExecutionStatus, PromptQueue, QueueItem } from './prompt-queue';
import { JsonObject, JsonValue, isJsonObject, keysOf, orderedObject, pyDumps } from './py-json';
import { PyException, pyRepr, pyTruthy } from './py-values';
import { ProgressRegistry } from './progress-registry';
import { ImageRecipe, Renderer } from './renderer';
import { StatsCounters } from './sim-stats';
import { WsHub } from './ws-hub';

/** Raised at every await once the process has been killed (restart/stop): the run vanishes. */
class Cancelled extends Error {}

interface CacheEntry {
  outputs: RtValue[];
  ui: { meta: JsonObject; output: JsonObject } | null;
}

interface Failure {
  details: JsonObject;
  interrupted: boolean;
  oom: boolean;
}

const OOM_TIPS = 'This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.';

const EXECUTE_TRACEBACK = [
  '  File "/opt/ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n',
  '  File "/opt/ComfyUI/execution.py", line 315, in get_output_data\n    return_values = await _async_map_node_over_list(prompt_id, unique_id, obj, input_data_all, obj.FUNCTION, allow_interrupt=True, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n',
  '  File "/opt/ComfyUI/execution.py", line 289, in _async_map_node_over_list\n    await process_inputs(input_dict, i)\n',
  '  File "/opt/ComfyUI/execution.py", line 277, in process_inputs\n    result = f(**inputs)\n',
];

const ts = (): number => Date.now();

export interface ExecutorDeps {
  queue: PromptQueue;
  hub: WsHub;
  registry: Map<string, NodeDef>;
  renderer: Renderer;
  faults: FaultState;
  dirs: SimDirs;
  stats: StatsCounters;
  stepMs: number;
  loadMs: number;
  previewMethod: string;
  /** Shared across restarts only through stats; everything else here dies with the process. */
  onConcurrency(delta: number): void;
}

export class Executor {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly loaded = new Set<string>();
  private readonly abort = new AbortController();
  private killed = false;
  private interruptFlag = false;
  /** `server.client_id` (null: no client_id on the running prompt). */
  private clientId: string | null = null;
  /** `server.last_node_id`. */
  private lastNodeId: string | null = null;
  /** Prompt id taken by the worker and not yet done (also while held by the hang fault). */
  runningPromptId: string | null = null;

  constructor(private readonly d: ExecutorDeps) {}

  start(): void {
    void this.loop().catch((e: unknown) => {
      if (!(e instanceof Cancelled)) console.error('[comfyui-sim] executor crashed', e);
    });
  }

  /** Process death: the running prompt is dropped silently, no more events. */
  kill(): void {
    this.killed = true;
    this.abort.abort();
    this.d.queue.wake();
  }

  /** POST /interrupt: global, or only when `promptId` is the running one. */
  interrupt(promptId?: string): void {
    if (promptId === undefined || this.d.queue.runningIds().includes(promptId)) this.interruptFlag = true;
  }

  /** For the WS connect-time `executing` resend. */
  resendNodeFor(sid: string): string | null {
    return this.clientId === sid && this.lastNodeId !== null ? this.lastNodeId : null;
  }

  isLoaded(file: string): boolean {
    return this.loaded.has(file);
  }

  private alive(): void {
    if (this.killed) throw new Cancelled();
  }

  private async sleep(ms: number): Promise<void> {
    this.alive();
    if (ms > 0) {
      try {
        await delay(ms, undefined, { signal: this.abort.signal });
      } catch {
        throw new Cancelled();
      }
    } else {
      await new Promise<void>((r) => setImmediate(r));
    }
    this.alive();
  }

  /** Blocks while the hang fault is on (a frozen GPU): nothing is sent, nothing progresses. */
  private async holdWhileHung(): Promise<void> {
    this.alive();
    if (!this.d.faults.get().hang) return;
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (!this.d.faults.get().hang || this.killed) {
          this.d.faults.off('change', check);
          this.abort.signal.removeEventListener('abort', check);
          resolve();
        }
      };
      this.d.faults.on('change', check);
      this.abort.signal.addEventListener('abort', check);
    });
    this.alive();
  }

  private async loop(): Promise<void> {
    for (;;) {
      await this.d.queue.waitForWork();
      this.alive();
      if (this.d.queue.size > 0) {
        const hung = this.d.faults.get().hang;
        const got = this.d.queue.get(!hung);
        if (got) {
          const [item, itemId] = got;
          this.runningPromptId = item[1];
          try {
            await this.holdWhileHung();
            await this.runPrompt(item, itemId);
          } finally {
            this.runningPromptId = null;
          }
        }
      }
      this.alive();
      this.applyFlags();
    }
  }

  private applyFlags(): void {
    const flags = this.d.queue.takeFlags();
    const freeMemory = pyTruthy(flags.free_memory);
    const unload = 'unload_models' in flags ? pyTruthy(flags.unload_models) : freeMemory;
    if (unload) this.loaded.clear();
    if (freeMemory) this.cache.clear();
  }

  private async runPrompt(item: QueueItem, itemId: number): Promise<void> {
    const promptId = item[1];
    const extra = item[3];
    this.d.onConcurrency(1);
    try {
      const { status, result } = await this.execute(item[2], promptId, extra, item[4]);
      this.d.queue.taskDone(itemId, result, status);
      if (this.clientId !== null) this.d.hub.send('executing', orderedObject([['node', null], ['prompt_id', promptId]]), this.clientId);
    } finally {
      this.d.onConcurrency(-1);
    }
  }

  /** Cache keys: class + constant inputs + ancestors' keys (node ids excluded), as in the classic cache. */
  private signatures(prompt: JsonObject): Map<string, string> {
    const sigs = new Map<string, string>();
    const visiting = new Set<string>();
    const sig = (id: string): string => {
      const known = sigs.get(id);
      if (known) return known;
      if (visiting.has(id)) return `cycle:${id}`;
      visiting.add(id);
      const node = prompt[id];
      const inputs = isJsonObject(node) && isJsonObject(node.inputs) ? node.inputs : {};
      const parts: JsonValue[] = [isJsonObject(node) ? node.class_type : null];
      for (const name of keysOf(inputs).sort()) {
        const v = inputs[name];
        parts.push(isLink(v) && Object.prototype.hasOwnProperty.call(prompt, v[0]) ? [name, 'LINK', sig(v[0]), v[1]] : [name, v]);
      }
      const s = createHash('sha256').update(pyDumps(parts)).digest('hex');
      visiting.delete(id);
      sigs.set(id, s);
      return s;
    };
    for (const id of keysOf(prompt)) sig(id);
    return sigs;
  }

  private async execute(prompt: JsonObject, promptId: string, extra: JsonObject, outputs: string[]): Promise<{
    status: ExecutionStatus; result: { outputs: JsonObject; meta: JsonObject };
  }> {
    const { hub, registry, stats } = this.d;
    this.interruptFlag = false;
    this.clientId = !Object.prototype.hasOwnProperty.call(extra, 'client_id') || extra.client_id === null
      ? null
      : typeof extra.client_id === 'string' ? extra.client_id : `\u0000${pyRepr(extra.client_id)}`;
    const clientId = this.clientId;
    const messages: Array<[string, JsonObject]> = [];
    const addMessage = (event: string, data: Array<[string, JsonValue]>, broadcast: boolean): void => {
      const payload = orderedObject([...data, ['timestamp', ts()]]);
      messages.push([event, payload]);
      if (clientId !== null || broadcast) hub.send(event, payload, clientId);
    };

    stats.executed += 1;
    stats.executedPromptIds.push(promptId);
    addMessage('execution_start', [['prompt_id', promptId]], false);

    const progress = new ProgressRegistry(promptId, (data) => hub.send('progress_state', data, clientId));
    const sigs = this.signatures(prompt);
    const live = new Set(sigs.values());
    for (const k of [...this.cache.keys()]) if (!live.has(k)) this.cache.delete(k);
    const isCached = (id: string): boolean => this.cache.has(sigs.get(id) ?? '');
    const nodeIds = keysOf(prompt);
    const cachedNodes = nodeIds.filter(isCached);
    addMessage('execution_cached', [['nodes', cachedNodes], ['prompt_id', promptId]], false);

    const defOf = (id: string): NodeDef | undefined => {
      const n = prompt[id];
      return isJsonObject(n) && typeof n.class_type === 'string' ? registry.get(n.class_type) : undefined;
    };
    const list = new ExecutionList(prompt, isCached, (id) => defOf(id)?.outputNode === true);
    for (const o of outputs) list.addNode(o);

    const executed: string[] = [];
    let failure: Failure | undefined;
    let ranSomething = false;
    let faultArmed = true;
    while (!list.isEmpty()) {
      const staged = list.stage();
      if ('cycle' in staged) {
        failure = {
          interrupted: false, oom: false,
          details: orderedObject([['node_id', staged.cycle], ['exception_message', 'Dependency cycle detected'],
            ['exception_type', 'graph.DependencyCycleError'], ['traceback', []], ['current_inputs', []]]),
        };
        break;
      }
      const id = staged.id;
      const def = defOf(id) as NodeDef;
      const sig = sigs.get(id) ?? '';
      const hit = this.cache.get(sig);
      if (hit) {
        if (clientId !== null) {
          hub.send('executed', orderedObject([['node', id], ['display_node', id], ['output', hit.ui ? hit.ui.output : null], ['prompt_id', promptId]]), clientId);
        }
        progress.finish(id);
        list.complete(id);
        continue;
      }
      ranSomething = true;
      const node = prompt[id] as JsonObject;
      let args: Map<string, RtValue> | undefined;
      try {
        progress.start(id);
        args = this.inputData(node, def, prompt, extra, sigs);
        if (clientId !== null) {
          this.lastNodeId = id;
          hub.send('executing', orderedObject([['node', id], ['display_node', id], ['prompt_id', promptId]]), clientId);
        }
        await this.holdWhileHung();
        if (this.interruptFlag) throw new InterruptError();
        if (faultArmed && (def.kind === 'ksampler' || def.outputNode)) {
          faultArmed = false;
          const injected = this.d.faults.takeExecutionError(Math.random());
          if (injected) {
            stats.injected.executionErrors += 1;
            throw new NodeError(injected.type, injected.message, tracebackFor(def));
          }
        }
        const ctx = this.nodeContext(promptId, id, prompt, extra, progress, clientId);
        const out = await runNode(def, args, ctx);
        this.alive();
        let ui: CacheEntry['ui'] = null;
        if (out.ui) {
          ui = {
            meta: orderedObject([['node_id', id], ['display_node', id], ['parent_node', null], ['real_node_id', id]]),
            output: out.ui,
          };
          if (clientId !== null) {
            hub.send('executed', orderedObject([['node', id], ['display_node', id], ['output', out.ui], ['prompt_id', promptId]]), clientId);
          }
        }
        this.cache.set(sig, { outputs: out.outputs, ui });
      } catch (e) {
        if (e instanceof Cancelled) throw e;
        failure = this.describeFailure(e, id, def, args);
        break;
      }
      progress.finish(id);
      executed.push(id);
      list.complete(id);
    }

    if (failure) {
      const d = failure.details;
      const failedId = String(d.node_id);
      const classType = defOf(failedId)?.name ?? null;
      if (failure.interrupted) {
        stats.interrupted += 1;
        addMessage('execution_interrupted', [['prompt_id', promptId], ['node_id', failedId], ['node_type', classType], ['executed', [...executed]]], true);
      } else {
        stats.errored += 1;
        if (failure.oom) this.loaded.clear();
        addMessage('execution_error', [
          ['prompt_id', promptId], ['node_id', failedId], ['node_type', classType], ['executed', [...executed]],
          ['exception_message', d.exception_message], ['exception_type', d.exception_type], ['traceback', d.traceback],
          ['current_inputs', d.current_inputs], ['current_outputs', [...nodeIds]],
        ], false);
      }
    } else {
      stats.completed += 1;
      if (!ranSomething) stats.cachedRuns += 1;
      addMessage('execution_success', [['prompt_id', promptId]], false);
    }

    const outs: Array<[string, JsonValue]> = [];
    const meta: Array<[string, JsonValue]> = [];
    for (const id of nodeIds) {
      const ui = this.cache.get(sigs.get(id) ?? '')?.ui;
      if (ui) {
        outs.push([id, ui.output]);
        meta.push([id, ui.meta]);
      }
    }
    this.lastNodeId = null;
    return {
      status: { status_str: failure ? 'error' : 'success', completed: !failure, messages },
      result: { outputs: orderedObject(outs), meta: orderedObject(meta) },
    };
  }

  private describeFailure(e: unknown, id: string, def: NodeDef, args: Map<string, RtValue> | undefined): Failure {
    if (e instanceof InterruptError) return { interrupted: true, oom: false, details: orderedObject([['node_id', id]]) };
    let pyType = 'Exception';
    let message = e instanceof Error ? e.message : String(e);
    let tail = tracebackFor(def);
    if (e instanceof NodeError) {
      pyType = e.pyType;
      tail = e.tracebackTail ?? tail;
    } else if (e instanceof PyException) {
      pyType = e.pyType;
    } else {
      console.error(`[comfyui-sim] node ${id} (${def.name}) failed`, e);
      pyType = 'RuntimeError';
      message = `simulator error: ${message}`;
    }
    const oom = pyType.endsWith('OutOfMemoryError');
    const currentInputs: Array<[string, JsonValue]> = [];
    for (const [name, v] of args ?? []) currentInputs.push([name, [formatInputValue(v, `${id}/${name}`)]]);
    return {
      interrupted: false,
      oom,
      details: orderedObject([
        ['node_id', id],
        ['exception_message', `${message}\n${oom ? OOM_TIPS : ''}`],
        ['exception_type', pyType],
        ['traceback', [...EXECUTE_TRACEBACK, tail]],
        ['current_inputs', orderedObject(currentInputs)],
      ]),
    };
  }

  /** `get_input_data`: links from cached outputs (null when missing), declared constants, hidden inputs. */
  private inputData(node: JsonObject, def: NodeDef, prompt: JsonObject, extra: JsonObject, sigs: Map<string, string>): Map<string, RtValue> {
    const out = new Map<string, RtValue>();
    const inputs = isJsonObject(node.inputs) ? node.inputs : {};
    const declared = new Set([...def.required, ...def.optional].map(([n]) => n));
    for (const name of keysOf(inputs)) {
      const v = inputs[name];
      if (isLink(v)) {
        const cached = this.cache.get(sigs.get(v[0]) ?? '');
        const slot = Number(v[1]);
        out.set(name, cached && slot < cached.outputs.length ? cached.outputs[slot] : null);
      } else if (declared.has(name)) {
        out.set(name, v);
      }
    }
    for (const [name, kind] of def.hidden) {
      if (kind === 'PROMPT') out.set(name, prompt);
      if (kind === 'EXTRA_PNGINFO') out.set(name, Object.prototype.hasOwnProperty.call(extra, 'extra_pnginfo') ? extra.extra_pnginfo : null);
    }
    return out;
  }

  private previewEnabled(extra: JsonObject): boolean {
    const perPrompt = typeof extra.preview_method === 'string' ? extra.preview_method : 'default';
    const method = perPrompt === 'default' ? this.d.previewMethod : perPrompt;
    return method !== 'none';
  }

  private nodeContext(promptId: string, nodeId: string, prompt: JsonObject, extra: JsonObject, progress: ProgressRegistry, clientId: string | null): NodeContext {
    const { hub, renderer, dirs, stats } = this.d;
    const previews = this.previewEnabled(extra);
    return {
      promptId,
      nodeId,
      prompt,
      extraPngInfo: Object.prototype.hasOwnProperty.call(extra, 'extra_pnginfo') ? extra.extra_pnginfo : null,
      renderer,
      outputDir: dirs.output,
      tempDir: dirs.temp,
      inputDir: dirs.input,
      ensureLoaded: async (files: string[]): Promise<void> => {
        for (const f of files) {
          if (this.loaded.has(f)) continue;
          await this.sleep(this.d.loadMs);
          this.loaded.add(f);
          stats.modelLoads += 1;
        }
      },
      busySteps: async (steps: number): Promise<void> => {
        await this.holdWhileHung();
        await this.sleep(this.d.stepMs * steps);
      },
      samplerStep: async (step, total, preview): Promise<void> => {
        await this.holdWhileHung();
        await this.sleep(this.d.stepMs);
        await this.holdWhileHung();
        // The progress hook checks the interrupt flag before reporting the step.
        if (this.interruptFlag) throw new InterruptError();
        progress.update(nodeId, step, total);
        let jpeg: Buffer | undefined;
        if (previews && preview) jpeg = await this.renderPreview(renderer, preview, step / total);
        this.alive();
        const withMeta = hub.supports(clientId, 'supports_preview_metadata');
        if (jpeg && withMeta) {
          const meta = Buffer.from(pyDumps(orderedObject([
            ['node_id', nodeId], ['prompt_id', promptId], ['display_node_id', nodeId], ['parent_node_id', null],
            ['real_node_id', nodeId], ['image_type', 'image/jpeg'],
          ])), 'utf8');
          const len = Buffer.alloc(4);
          len.writeUInt32BE(meta.length);
          hub.sendBinary(4, Buffer.concat([len, meta, jpeg]), clientId);
        }
        hub.send('progress', orderedObject([['value', step], ['max', total], ['prompt_id', promptId], ['node', nodeId]]), clientId);
        if (jpeg && !withMeta) {
          const fmt = Buffer.alloc(4);
          fmt.writeUInt32BE(1); // JPEG
          hub.sendBinary(1, Buffer.concat([fmt, jpeg]), clientId);
        }
      },
    };
  }

  private async renderPreview(renderer: Renderer, p: { recipe: ImageRecipe; width: number; height: number }, fraction: number): Promise<Buffer | undefined> {
    try {
      return await renderer.preview(p.recipe, p.width, p.height, fraction);
    } catch {
      return undefined;
    }
  }
}
