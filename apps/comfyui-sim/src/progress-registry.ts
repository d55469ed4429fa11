/**
 * `progress_state` bookkeeping: port of comfy_execution/progress.py (ProgressRegistry with the
 * WebUIProgressHandler). Every change sends the state of all non-pending nodes of the prompt.
 */
import { JsonObject, JsonValue, PyFloat, orderedObject } from './py-json';

type NodeState = { state: 'pending' | 'running' | 'finished'; value: JsonValue; max: JsonValue };

export class ProgressRegistry {
  private readonly nodes = new Map<string, NodeState>();

  constructor(private readonly promptId: string, private readonly emit: (data: JsonObject) => void) {}

  private entry(id: string): NodeState {
    let e = this.nodes.get(id);
    if (!e) {
      e = { state: 'pending', value: 0, max: 1 };
      this.nodes.set(id, e);
    }
    return e;
  }

  /** Node starts: running, 0.0 / 1.0 (floats, as ComfyUI sends them). */
  start(id: string): void {
    Object.assign(this.entry(id), { state: 'running', value: new PyFloat(0), max: new PyFloat(1) });
    this.send();
  }

  update(id: string, value: number, max: number): void {
    Object.assign(this.entry(id), { state: 'running', value, max });
    this.send();
  }

  /** Node done (or served from cache: then the values stay ints, 1 / 1). */
  finish(id: string): void {
    const e = this.entry(id);
    e.state = 'finished';
    e.value = e.max;
    this.send();
  }

  private send(): void {
    const nodes: Array<[string, JsonValue]> = [];
    for (const [id, e] of this.nodes) {
      if (e.state === 'pending') continue;
      nodes.push([id, orderedObject([
        ['value', e.value], ['max', e.max], ['state', e.state], ['node_id', id], ['prompt_id', this.promptId],
        ['display_node_id', id], ['parent_node_id', null], ['real_node_id', id],
      ])]);
    }
    this.emit(orderedObject([['prompt_id', this.promptId], ['nodes', orderedObject(nodes)]]));
  }
}
