import { ComfyUiError, ExecutionError, PromptInterruptedError } from './comfyui.errors';
import type { ComfyImageRef, ComfyNodeError, PromptLocation, PromptOutcome } from './comfyui.types';

/**
 * Pure parsers for the JSON ComfyUI answers on /history, /queue and over the WebSocket. Nothing
 * here trusts the shape it is given: every field is checked, unknown keys are ignored.
 */

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

/** JSON.parse that never throws: undefined for anything that is not JSON. */
export function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** One entry of GET /history/{id}, reduced to what the client reads. */
export interface HistoryEntry {
  statusStr?: string;
  completed?: boolean;
  messages: Array<[string, Json]>;
  outputs: Record<string, unknown>;
}

/** `{}` (running, pending, unknown, lost) → undefined; `{[id]: entry}` → the entry. */
export function parseHistoryEntry(body: unknown, promptId: string): HistoryEntry | undefined {
  if (!isObject(body)) return undefined;
  const raw = body[promptId];
  if (!isObject(raw)) return undefined;
  const status = isObject(raw.status) ? raw.status : {};
  const messages: Array<[string, Json]> = [];
  if (Array.isArray(status.messages)) {
    for (const m of status.messages) {
      if (Array.isArray(m) && typeof m[0] === 'string') messages.push([m[0], isObject(m[1]) ? m[1] : {}]);
    }
  }
  return {
    statusStr: typeof status.status_str === 'string' ? status.status_str : undefined,
    completed: typeof status.completed === 'boolean' ? status.completed : undefined,
    messages,
    outputs: isObject(raw.outputs) ? raw.outputs : {},
  };
}

/** Failed entries are `status_str: "error"`; an entry without status (very old servers) counts as done. */
export function isFailedEntry(entry: HistoryEntry): boolean {
  if (entry.statusStr === 'error') return true;
  if (entry.statusStr === 'success') return false;
  return entry.messages.some(([t]) => t === 'execution_error' || t === 'execution_interrupted');
}

/** The error a failed history entry stands for: the same classes the live events map to. */
export function errorFromEntry(promptId: string, entry: HistoryEntry): ComfyUiError {
  for (let i = entry.messages.length - 1; i >= 0; i--) {
    const [type, data] = entry.messages[i];
    if (type === 'execution_error') return executionErrorFrom(data);
    if (type === 'execution_interrupted') return new PromptInterruptedError(promptId);
  }
  return new ExecutionError('', '', 'unknown', `ComfyUI recorded prompt ${promptId} as failed without an error message`);
}

export function executionErrorFrom(data: Json): ExecutionError {
  const traceback = Array.isArray(data.traceback) ? data.traceback.map(str) : [];
  return new ExecutionError(str(data.node_id), str(data.node_type), str(data.exception_type) || 'unknown', str(data.exception_message), traceback);
}

/** Outcome of a successful entry: every saved image (type "output"; temp previews are not results). */
export function outcomeFromEntry(promptId: string, entry: HistoryEntry): PromptOutcome {
  const images: Array<ComfyImageRef & { node: string }> = [];
  for (const [node, out] of Object.entries(entry.outputs)) {
    if (!isObject(out) || !Array.isArray(out.images)) continue;
    for (const img of out.images) {
      if (!isObject(img) || typeof img.filename !== 'string' || !img.filename) continue;
      const type = typeof img.type === 'string' ? img.type : 'output';
      if (type !== 'output') continue;
      images.push({ node, filename: img.filename, subfolder: str(img.subfolder), type });
    }
  }
  const outcome: PromptOutcome = { promptId, images };
  const start = timestampOf(entry.messages, 'execution_start');
  const end = timestampOf(entry.messages, 'execution_success');
  if (start !== undefined && end !== undefined && end >= start) outcome.executionMs = end - start;
  if (end !== undefined) outcome.endedAt = end;
  return outcome;
}

function timestampOf(messages: Array<[string, Json]>, name: string): number | undefined {
  const m = messages.find(([t]) => t === name);
  const v = m?.[1].timestamp;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** GET /queue reduced to prompt ids. Items are `[number, prompt_id, graph, extra, outputs]` tuples. */
export interface QueueSnapshot {
  running: Set<string>;
  pending: Set<string>;
}

export function parseQueue(body: unknown): QueueSnapshot | undefined {
  if (!isObject(body)) return undefined;
  const ids = (list: unknown): Set<string> => {
    const out = new Set<string>();
    if (!Array.isArray(list)) return out;
    for (const item of list) {
      if (Array.isArray(item) && typeof item[1] === 'string') out.add(item[1]);
      else if (isObject(item) && typeof item.prompt_id === 'string') out.add(item.prompt_id);
    }
    return out;
  };
  if (!('queue_running' in body) && !('queue_pending' in body)) return undefined;
  return { running: ids(body.queue_running), pending: ids(body.queue_pending) };
}

export function locationInQueue(q: QueueSnapshot, promptId: string): PromptLocation | undefined {
  if (q.running.has(promptId)) return 'running';
  if (q.pending.has(promptId)) return 'pending';
  return undefined;
}

/** node_errors as ComfyUI sends them, keeping only entries that have the documented shape. */
export function parseNodeErrors(v: unknown): Record<string, ComfyNodeError> {
  const out: Record<string, ComfyNodeError> = {};
  if (!isObject(v)) return out;
  for (const [id, ne] of Object.entries(v)) {
    if (!isObject(ne)) continue;
    const errors = Array.isArray(ne.errors)
      ? ne.errors.filter(isObject).map((e) => {
          const item: ComfyNodeError['errors'][number] = { type: str(e.type), message: str(e.message), details: str(e.details) };
          if (isObject(e.extra_info)) item.extra_info = e.extra_info;
          return item;
        })
      : [];
    const dependent = Array.isArray(ne.dependent_outputs) ? ne.dependent_outputs.map(str) : [];
    out[id] = { errors, dependent_outputs: dependent, class_type: str(ne.class_type) };
  }
  return out;
}
