/**
 * Port of `comfy_execution/graph.py` ExecutionList: which nodes run and in which order
 * (`ux_friendly_pick_node`: outputs first, then nodes one or two hops before an output,
 * otherwise the first ready node in discovery order). Cached nodes are never added.
 */
import { JsonObject, JsonValue, isJsonObject, keysOf } from './py-json';

/** Python `is_link`: `[str, int|float]`. */
export function isLink(v: JsonValue): v is [string, number] {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === 'string'
    && (typeof v[1] === 'number' || typeof v[1] === 'boolean' || typeof v[1] === 'bigint');
}

export class ExecutionList {
  private readonly pending = new Map<string, true>();
  private readonly blockCount = new Map<string, number>();
  private readonly blocking = new Map<string, Map<string, Set<number>>>();

  constructor(
    private readonly prompt: JsonObject,
    private readonly isCached: (id: string) => boolean,
    private readonly isOutput: (id: string) => boolean,
  ) {}

  private inputsOf(id: string): JsonObject {
    const node = this.prompt[id];
    return isJsonObject(node) && isJsonObject(node.inputs) ? node.inputs : {};
  }

  addNode(start: string): void {
    const stack = [start];
    const links: Array<[string, number, string]> = [];
    while (stack.length > 0) {
      const id = stack.pop() as string;
      if (this.pending.has(id)) continue;
      this.pending.set(id, true);
      this.blockCount.set(id, 0);
      this.blocking.set(id, new Map());
      const inputs = this.inputsOf(id);
      for (const name of keysOf(inputs)) {
        const v = inputs[name];
        if (!isLink(v) || !Object.prototype.hasOwnProperty.call(this.prompt, v[0])) continue;
        if (!this.isCached(v[0])) stack.push(v[0]);
        links.push([v[0], Number(v[1]), id]);
      }
    }
    for (const [from, socket, to] of links) this.addStrongLink(from, socket, to);
  }

  private addStrongLink(from: string, socket: number, to: string): void {
    if (this.isCached(from)) return;
    this.addNode(from);
    const b = this.blocking.get(from) as Map<string, Set<number>>;
    if (!b.has(to)) {
      b.set(to, new Set());
      this.blockCount.set(to, (this.blockCount.get(to) ?? 0) + 1);
    }
    b.get(to)?.add(socket);
  }

  isEmpty(): boolean {
    return this.pending.size === 0;
  }

  /** Next node to run, or `{cycle}` naming the node blamed for a dependency cycle. */
  stage(): { id: string } | { cycle: string } {
    const ready = [...this.pending.keys()].filter((id) => this.blockCount.get(id) === 0);
    if (ready.length === 0) return { cycle: [...this.pending.keys()][0] };
    return { id: this.pick(ready) };
  }

  private pick(ready: string[]): string {
    for (const id of ready) if (this.isOutput(id)) return id;
    for (const id of ready) {
      for (const b of this.blocking.get(id)?.keys() ?? []) if (this.isOutput(b)) return id;
    }
    for (const id of ready) {
      for (const b of this.blocking.get(id)?.keys() ?? []) {
        for (const b1 of this.blocking.get(b)?.keys() ?? []) if (this.isOutput(b1)) return id;
      }
    }
    return ready[0];
  }

  complete(id: string): void {
    this.pending.delete(id);
    for (const blocked of this.blocking.get(id)?.keys() ?? []) {
      this.blockCount.set(blocked, (this.blockCount.get(blocked) ?? 0) - 1);
    }
    this.blocking.delete(id);
  }
}
