/**
 * ComfyUI's HTTP API (server.py), handler by handler, with the same status codes and bodies:
 * GET / (the front page), POST /prompt, GET/POST /queue, GET/POST /history, POST /interrupt,
 * POST /free, GET /prompt, /system_stats, /object_info, /models, /embeddings, /extensions, /features.
 */
import { randomUUID } from 'node:crypto';
import { objectInfo } from './node-registry';
import { QueueItem } from './prompt-queue';
import { validatePrompt } from './prompt-validator';
import { JsonObject, JsonValue, PyFloat, isJsonObject, keysOf, orderedObject, parseJson, setKey } from './py-json';
import { PyException, pyFloat, pyInt, pyTruthy, pyTypeName } from './py-values';
import { BodyTooLarge, readBody, sendBytes, sendEmpty, sendInternalError, sendJson, sendText } from './http-util';
import { Route, RouteContext, RouteRequest } from './route-context';
import { UPLOAD_ROUTES } from './upload-routes';
import { viewHandler } from './view-handler';

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `key in value` for a parsed JSON body. */
function pyIn(value: JsonValue, key: string): boolean {
  if (isJsonObject(value)) return Object.prototype.hasOwnProperty.call(value, key);
  if (Array.isArray(value)) return value.some((x) => x === key);
  if (typeof value === 'string') return value.includes(key);
  throw new PyException('TypeError', `argument of type '${pyTypeName(value)}' is not iterable`);
}

/** `value[key]` for a parsed JSON body (only dicts can be indexed by a string). */
function pyGet(value: JsonValue, key: string): JsonValue {
  if (isJsonObject(value)) return value[key];
  throw new PyException('TypeError', `${pyTypeName(value)} indices must be integers or slices, not str`);
}

/** `for x in value` */
function pyIter(value: JsonValue): JsonValue[] {
  if (Array.isArray(value)) return value;
  if (typeof value === 'string') return [...value];
  if (isJsonObject(value)) return keysOf(value);
  throw new PyException('TypeError', `'${pyTypeName(value)}' object is not iterable`);
}

/** `await request.json()`; throws (→ 500) on a body that is not JSON. */
async function jsonBody(r: RouteRequest): Promise<JsonValue> {
  const body = await readBody(r.req);
  return parseJson(body.toString('utf8'));
}

const err = (type: string, message: string, details: string): JsonObject =>
  orderedObject([['type', type], ['message', message], ['details', details], ['extra_info', {}]]);

async function postPrompt(ctx: RouteContext, r: RouteRequest): Promise<void> {
  const { counters, faults } = ctx;
  let body: Buffer;
  try {
    body = await readBody(r.req);
  } catch (e) {
    counters.rejected += 1;
    throw e;
  }
  if (faults.takePromptFailCount()) {
    counters.rejected += 1;
    counters.injected.prompt503 += 1;
    sendText(r.res, 503, '503: Service Unavailable');
    return;
  }
  const rate = faults.get().promptFailRate;
  if (rate > 0 && Math.random() < rate) {
    counters.rejected += 1;
    counters.injected.prompt500 += 1;
    sendInternalError(r.res);
    return;
  }
  try {
    const json = parseJson(body.toString('utf8'));
    const accepted = submit(ctx, json, r);
    if (accepted) counters.submitted += 1;
    else counters.rejected += 1;
  } catch (e) {
    counters.rejected += 1;
    throw e;
  }
}

/** The body of `post_prompt` after JSON parsing; returns true when the prompt was queued. */
function submit(ctx: RouteContext, json: JsonValue, r: RouteRequest): boolean {
  const proc = ctx.proc;
  let number: number | PyFloat;
  if (pyIn(json, 'number')) {
    number = pyFloat(pyGet(json, 'number'));
  } else {
    number = proc.number;
    if (pyIn(json, 'front') && pyTruthy(pyGet(json, 'front'))) number = -number;
    proc.number += 1;
  }
  if (!pyIn(json, 'prompt')) {
    sendJson(r.res, 400, orderedObject([['error', err('no_prompt', 'No prompt provided', 'No prompt provided')], ['node_errors', {}]]));
    return false;
  }
  const prompt = pyGet(json, 'prompt');
  const obj = json as JsonObject;
  let promptId: string;
  if (!pyIn(obj, 'prompt_id') || obj.prompt_id === null) {
    promptId = randomUUID();
  } else if (typeof obj.prompt_id === 'string' && CANONICAL_UUID.test(obj.prompt_id)) {
    promptId = obj.prompt_id;
  } else {
    sendJson(r.res, 400, orderedObject([
      ['error', err('invalid_prompt_id', 'prompt_id must be a valid UUID',
        'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one')],
      ['node_errors', {}],
    ]));
    return false;
  }
  const partial = pyIn(obj, 'partial_execution_targets') ? obj.partial_execution_targets : undefined;
  const valid = validatePrompt(prompt, ctx.registry, partial, ctx.dirs.input);
  let extra: JsonValue = pyIn(obj, 'extra_data') ? obj.extra_data : orderedObject([]);
  if (pyIn(obj, 'client_id')) {
    if (!isJsonObject(extra)) throw new PyException('TypeError', `'${pyTypeName(extra)}' object does not support item assignment`);
    setKey(extra, 'client_id', obj.client_id);
  }
  if (!valid.ok) {
    sendJson(r.res, 400, orderedObject([['error', valid.error], ['node_errors', valid.nodeErrors]]));
    return false;
  }
  if (!isJsonObject(extra)) extra = orderedObject([]);
  const item: QueueItem = [number, promptId, prompt as JsonObject, extra, valid.goodOutputs];
  // The hang fault is a frozen server: the prompt is accepted without any WS traffic.
  proc.queue.put(item, !ctx.faults.get().hang);
  sendJson(r.res, 200, orderedObject([['prompt_id', promptId], ['number', number], ['node_errors', valid.nodeErrors]]));
  return true;
}

async function postQueue(ctx: RouteContext, r: RouteRequest): Promise<void> {
  const json = await jsonBody(r);
  const q = ctx.proc.queue;
  if (pyIn(json, 'clear') && pyTruthy(pyGet(json, 'clear'))) q.wipeQueue();
  if (pyIn(json, 'delete')) for (const id of pyIter(pyGet(json, 'delete'))) q.deleteQueueItem(id);
  sendEmpty(r.res, 200);
}

async function postHistory(ctx: RouteContext, r: RouteRequest): Promise<void> {
  const json = await jsonBody(r);
  const q = ctx.proc.queue;
  if (pyIn(json, 'clear') && pyTruthy(pyGet(json, 'clear'))) q.wipeHistory();
  if (pyIn(json, 'delete')) for (const id of pyIter(pyGet(json, 'delete'))) q.deleteHistoryItem(id);
  sendEmpty(r.res, 200);
}

async function postInterrupt(ctx: RouteContext, r: RouteRequest): Promise<void> {
  let json: JsonValue;
  try {
    json = await jsonBody(r);
  } catch (e) {
    if (e instanceof BodyTooLarge) throw e;
    json = orderedObject([]);
  }
  if (!isJsonObject(json)) throw new PyException('AttributeError', `'${pyTypeName(json)}' object has no attribute 'get'`);
  const promptId = json.prompt_id;
  if (pyTruthy(promptId)) {
    if (typeof promptId === 'string') ctx.proc.executor.interrupt(promptId);
  } else {
    ctx.proc.executor.interrupt();
  }
  sendEmpty(r.res, 200);
}

async function postFree(ctx: RouteContext, r: RouteRequest): Promise<void> {
  const json = await jsonBody(r);
  const q = ctx.proc.queue;
  if (pyIn(json, 'unload_models')) q.setFlag('unload_models', pyGet(json, 'unload_models'));
  if (pyIn(json, 'free_memory')) q.setFlag('free_memory', pyGet(json, 'free_memory'));
  sendEmpty(r.res, 200);
}

function getHistory(ctx: RouteContext, r: RouteRequest): void {
  const q = r.url.searchParams;
  const maxRaw = q.get('max_items');
  const offRaw = q.get('offset');
  const maxItems = maxRaw === null ? undefined : Number(pyInt(maxRaw));
  const offset = offRaw === null ? -1 : Number(pyInt(offRaw));
  sendJson(r.res, 200, ctx.proc.queue.getHistory(maxItems, offset));
}

function getQueue(ctx: RouteContext, r: RouteRequest): void {
  const [running, pending] = ctx.proc.queue.currentQueue();
  sendJson(r.res, 200, orderedObject([
    ['queue_running', running as unknown as JsonValue[]],
    ['queue_pending', pending as unknown as JsonValue[]],
  ]));
}

/**
 * The real server answers / with its web front end (index.html, no-cache); some clients probe /
 * before anything else and refuse a server whose answer is not 2xx. A small page stands in for it.
 */
const FRONT_PAGE = Buffer.from(
  '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="UTF-8">\n<title>ComfyUI</title>\n</head>\n'
    + '<body>\n<h1>ComfyUI</h1>\n<p>ComfyUI simulator: the HTTP API and WebSocket of a real server, without the graph editor.</p>\n'
    + '</body>\n</html>\n',
  'utf8',
);

function getRoot(_ctx: RouteContext, r: RouteRequest): void {
  r.res.setHeader('Cache-Control', 'no-cache');
  r.res.setHeader('Pragma', 'no-cache');
  r.res.setHeader('Expires', '0');
  sendBytes(r.res, 200, 'text/html', FRONT_PAGE);
}

function getModels(ctx: RouteContext, r: RouteRequest): void {
  const folder = r.params.folder;
  const files = ctx.models.get(folder);
  if (!files) sendEmpty(r.res, 404);
  else sendJson(r.res, 200, [...files]);
}

function getObjectInfo(ctx: RouteContext, r: RouteRequest): void {
  const cls = r.params.node_class;
  if (cls !== undefined) {
    const def = ctx.registry.get(cls);
    sendJson(r.res, 200, def ? orderedObject([[cls, objectInfo(def)]]) : {});
    return;
  }
  sendJson(r.res, 200, orderedObject([...ctx.registry.values()].map((d) => [d.name, objectInfo(d)])));
}

export const COMFY_ROUTES: Route[] = [
  { method: 'GET', path: '/', handler: getRoot },
  { method: 'POST', path: '/prompt', handler: postPrompt },
  { method: 'GET', path: '/prompt', handler: (ctx, r) => sendJson(r.res, 200, ctx.proc.queueInfo()) },
  { method: 'GET', path: '/queue', handler: getQueue },
  { method: 'POST', path: '/queue', handler: postQueue },
  { method: 'GET', path: '/history', handler: getHistory },
  { method: 'GET', path: '/history/{prompt_id}', handler: (ctx, r) => sendJson(r.res, 200, ctx.proc.queue.historyEntry(r.params.prompt_id)) },
  { method: 'POST', path: '/history', handler: postHistory },
  { method: 'POST', path: '/interrupt', handler: postInterrupt },
  { method: 'POST', path: '/free', handler: postFree },
  { method: 'GET', path: '/view', handler: viewHandler },
  { method: 'GET', path: '/system_stats', handler: (ctx, r) => sendJson(r.res, 200, ctx.systemStats()) },
  { method: 'GET', path: '/object_info', handler: getObjectInfo },
  { method: 'GET', path: '/object_info/{node_class}', handler: getObjectInfo },
  { method: 'GET', path: '/models', handler: (ctx, r) => sendJson(r.res, 200, [...ctx.models.keys()]) },
  { method: 'GET', path: '/models/{folder}', handler: getModels },
  {
    method: 'GET', path: '/embeddings',
    handler: (ctx, r) => sendJson(r.res, 200, (ctx.models.get('embeddings') ?? []).map((f) => f.replace(/\.[^.]*$/, ''))),
  },
  { method: 'GET', path: '/extensions', handler: (_ctx, r) => sendJson(r.res, 200, []) },
  { method: 'GET', path: '/features', handler: (ctx, r) => sendJson(r.res, 200, ctx.serverFeatures()) },
  ...UPLOAD_ROUTES,
];
