/**
 * Port of ComfyUI's `PromptQueue`: a binary heap ordered by (number, prompt_id) exactly like
 * Python's heapq (so GET /queue shows the same heap array), the running items, the in-memory
 * history (insertion = completion order, 10001-entry cap) and the /free flags.
 */
import { JsonObject, JsonValue, PyFloat, deepCopy, orderedObject, toNumber } from './py-json';

/** `(number, prompt_id, prompt, extra_data, outputs_to_execute)` */
export type QueueItem = [number | PyFloat, string, JsonObject, JsonObject, string[]];

export interface ExecutionStatus {
  status_str: 'success' | 'error';
  completed: boolean;
  messages: Array<[string, JsonObject]>;
}

export const MAXIMUM_HISTORY_SIZE = 10000;
export const SENSITIVE_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];

function less(a: QueueItem, b: QueueItem): boolean {
  const na = toNumber(a[0]);
  const nb = toNumber(b[0]);
  if (na !== nb) return na < nb;
  return a[1] < b[1];
}

function siftDown(heap: QueueItem[], start: number, pos: number): void {
  const item = heap[pos];
  while (pos > start) {
    const parentPos = (pos - 1) >> 1;
    const parent = heap[parentPos];
    if (less(item, parent)) {
      heap[pos] = parent;
      pos = parentPos;
      continue;
    }
    break;
  }
  heap[pos] = item;
}

function siftUp(heap: QueueItem[], pos: number): void {
  const end = heap.length;
  const start = pos;
  const item = heap[pos];
  let child = 2 * pos + 1;
  while (child < end) {
    const right = child + 1;
    if (right < end && !less(heap[child], heap[right])) child = right;
    heap[pos] = heap[child];
    pos = child;
    child = 2 * pos + 1;
  }
  heap[pos] = item;
  siftDown(heap, start, pos);
}

function heapify(heap: QueueItem[]): void {
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftUp(heap, i);
}

export class PromptQueue {
  private heap: QueueItem[] = [];
  private readonly running = new Map<number, QueueItem>();
  private readonly history = new Map<string, JsonObject>();
  private taskCounter = 0;
  private flags: Record<string, JsonValue> = {};
  private waiters: Array<() => void> = [];

  /** `server.queue_updated()`: called after every change that the `status` broadcast reports. */
  constructor(private readonly onUpdate: () => void) {}

  put(item: QueueItem, notify = true): void {
    this.heap.push(item);
    siftDown(this.heap, 0, this.heap.length - 1);
    if (notify) this.onUpdate();
    this.wake();
  }

  get size(): number {
    return this.heap.length;
  }

  /** Pops the next item (the copy kept as "running" is what history will show). */
  get(notify = true): [QueueItem, number] | undefined {
    if (this.heap.length === 0) return undefined;
    const last = this.heap.pop() as QueueItem;
    let item = last;
    if (this.heap.length > 0) {
      item = this.heap[0];
      this.heap[0] = last;
      siftUp(this.heap, 0);
    }
    const id = this.taskCounter++;
    this.running.set(id, deepCopy(item as unknown as JsonValue[]) as unknown as QueueItem);
    if (notify) this.onUpdate();
    return [item, id];
  }

  /** Resolves when an item or a flag is waiting (the worker's `not_empty.wait`). */
  waitForWork(): Promise<void> {
    if (this.heap.length > 0 || Object.keys(this.flags).length > 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Releases anyone blocked in waitForWork (used when the process is killed). */
  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  taskDone(itemId: number, result: { outputs: JsonObject; meta: JsonObject }, status: ExecutionStatus): void {
    const prompt = this.running.get(itemId);
    this.running.delete(itemId);
    if (!prompt) return;
    if (this.history.size > MAXIMUM_HISTORY_SIZE) {
      const oldest = this.history.keys().next();
      if (!oldest.done) this.history.delete(oldest.value);
    }
    const extra = prompt[3];
    for (const k of SENSITIVE_EXTRA_DATA_KEYS) delete extra[k];
    const statusJson = orderedObject([
      ['status_str', status.status_str],
      ['completed', status.completed],
      ['messages', status.messages.map(([e, d]) => [e, d])],
    ]);
    const entry = orderedObject([
      ['prompt', prompt as unknown as JsonValue[]],
      ['outputs', result.outputs],
      ['status', statusJson],
      ['meta', result.meta],
    ]);
    this.history.set(prompt[1], entry);
    this.onUpdate();
  }

  /** GET /queue: `[running items, copy of the heap array]`. */
  currentQueue(): [QueueItem[], QueueItem[]] {
    return [[...this.running.values()], [...this.heap]];
  }

  runningIds(): string[] {
    return [...this.running.values()].map((i) => i[1]);
  }

  tasksRemaining(): number {
    return this.heap.length + this.running.size;
  }

  wipeQueue(): void {
    this.heap = [];
    this.onUpdate();
  }

  /** Removes the first pending item with this id; true when one was removed. */
  deleteQueueItem(promptId: JsonValue): boolean {
    const idx = this.heap.findIndex((i) => i[1] === promptId);
    if (idx < 0) return false;
    if (this.heap.length === 1) {
      this.wipeQueue();
    } else {
      this.heap.splice(idx, 1);
      heapify(this.heap);
    }
    this.onUpdate();
    return true;
  }

  /** `get_history` with its exact max_items / offset arithmetic. */
  getHistory(maxItems?: number, offset = -1): JsonObject {
    const out: Array<[string, JsonValue]> = [];
    let start = offset;
    if (start < 0 && maxItems !== undefined) start = this.history.size - maxItems;
    let i = 0;
    for (const [k, v] of this.history) {
      if (i >= start) {
        out.push([k, v]);
        if (maxItems !== undefined && out.length >= maxItems) break;
      }
      i++;
    }
    return orderedObject(out);
  }

  historyEntry(promptId: string): JsonObject {
    const e = this.history.get(promptId);
    return e ? orderedObject([[promptId, deepCopy(e)]]) : {};
  }

  wipeHistory(): void {
    this.history.clear();
  }

  deleteHistoryItem(promptId: JsonValue): void {
    if (typeof promptId === 'string') this.history.delete(promptId);
  }

  setFlag(name: string, value: JsonValue): void {
    this.flags[name] = value;
    this.wake();
  }

  takeFlags(): Record<string, JsonValue> {
    const f = this.flags;
    this.flags = {};
    return f;
  }
}
