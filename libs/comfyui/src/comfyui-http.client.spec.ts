import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { ComfyUiHttpClient, type ComfyUiHttpClientOptions } from './comfyui-http.client';
import {
  ClientClosedError,
  ComfyAbortError,
  ComfyHttpError,
  ComfyUiTimeoutError,
  ComfyUnavailableError,
  ExecutionError,
  OutputFetchError,
  PromptInterruptedError,
  PromptLostError,
  PromptValidationError,
} from './comfyui.errors';
import type { ComfyGraph, ConnectionState, PromptProgress } from './comfyui.types';

// ------------------------------------------------------------------------------------------------
// A small fake ComfyUI: the routes and WS frames of the protocol reference, driven step by step by
// the tests so every failure can be staged exactly.
// ------------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
interface Item {
  number: number;
  id: string;
  clientId?: string;
}
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => boolean | void;

/** 1×1 PNG. */
const PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cfc0f01f0005000201a3e1c4e40000000049454e44ae426082',
  'hex',
);

class FakeComfy {
  port = 0;
  prefix = '';
  autoPong = true;
  readonly requests: string[] = [];
  readonly bodies: Json[] = [];
  readonly sockets = new Map<string, WebSocket>();
  connections = 0;
  /** Set when a client opened a second socket while its first was still open (ComfyUI #16010). */
  overlapped = false;
  pending: Item[] = [];
  running?: Item;
  history: Record<string, Json> = {};
  counter = 0;
  files = new Map<string, Buffer>([['out_00001_.png', PNG]]);
  /** Tests put route overrides here: return true when handled. */
  override?: Handler;
  /** Runs after a prompt was queued and before the HTTP answer is written. */
  onQueued?: (item: Item) => void | Promise<void>;
  private server?: http.Server;
  private wss?: WebSocketServer;

  get url(): string {
    return `http://127.0.0.1:${this.port}${this.prefix}`;
  }

  async start(port = this.port): Promise<void> {
    this.wss = new WebSocketServer({ noServer: true, autoPong: this.autoPong });
    this.server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => void this.route(req, res, body));
    });
    this.server.on('upgrade', (req, socket, head) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (u.pathname !== `${this.prefix}/ws` && u.pathname !== `${this.prefix}/api/ws`) {
        socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
        return;
      }
      this.wss!.handleUpgrade(req, socket, head, (ws) => this.accept(ws, u.searchParams.get('clientId') ?? randomUUID()));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets.values()) ws.terminate();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.wss?.close();
  }

  /** A ComfyUI restart: every queue, history and counter gone, same port. */
  async restart(): Promise<void> {
    await this.stop();
    this.pending = [];
    this.running = undefined;
    this.history = {};
    this.counter = 0;
    await this.start();
  }

  dropSockets(): void {
    for (const ws of this.sockets.values()) ws.terminate();
  }

  send(clientId: string | undefined, type: string, data: Json): void {
    const frame = JSON.stringify({ type, data });
    const targets = clientId ? [this.sockets.get(clientId)] : [...this.sockets.values()];
    for (const ws of targets) if (ws?.readyState === WebSocket.OPEN) ws.send(frame);
  }

  sendRaw(data: string | Buffer): void {
    for (const ws of this.sockets.values()) if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: Buffer.isBuffer(data) });
  }

  /** pending → running, with the events of §5.6 up to the first node. */
  begin(id: string, events = true): void {
    const i = this.pending.findIndex((p) => p.id === id);
    if (i < 0) throw new Error(`not pending: ${id}`);
    const [item] = this.pending.splice(i, 1);
    this.running = item;
    if (!events) return;
    const ts = Date.now();
    this.send(item.clientId, 'execution_start', { prompt_id: id, timestamp: ts });
    this.send(item.clientId, 'execution_cached', { nodes: [], prompt_id: id, timestamp: ts });
    this.send(item.clientId, 'executing', { node: '3', display_node: '3', prompt_id: id });
  }

  progress(id: string, value: number, max: number): void {
    this.send(this.running?.clientId, 'progress', { value, max, prompt_id: id, node: '3' });
  }

  /** Finishes the running prompt; with events: execution_success, history a moment later, executing null. */
  async succeed(id: string, events = true, images: Json[] = [{ filename: 'out_00001_.png', subfolder: '', type: 'output' }]): Promise<void> {
    const item = this.running;
    if (item?.id !== id) throw new Error(`not running: ${id}`);
    const start = Date.now() - 1234;
    const entry = {
      prompt: [item.number, id, {}, { client_id: item.clientId }, ['9']],
      outputs: { '9': { images }, '8': { images: [{ filename: 'preview.png', subfolder: '', type: 'temp' }] } },
      status: {
        status_str: 'success',
        completed: true,
        messages: [
          ['execution_start', { prompt_id: id, timestamp: start }],
          ['execution_cached', { nodes: [], prompt_id: id, timestamp: start }],
          ['execution_success', { prompt_id: id, timestamp: start + 1234 }],
        ],
      },
    };
    if (events) {
      this.send(item.clientId, 'executed', { node: '9', display_node: '9', output: { images }, prompt_id: id });
      this.send(item.clientId, 'execution_success', { prompt_id: id, timestamp: start + 1234 });
      // ComfyUI writes history just after execution_success (the race of §5.6).
      await new Promise((r) => setTimeout(r, 10));
    }
    this.history[id] = entry;
    this.running = undefined;
    if (events) {
      this.send(undefined, 'status', { status: { exec_info: { queue_remaining: this.pending.length } } });
      this.send(item.clientId, 'executing', { node: null, prompt_id: id });
    }
  }

  failRunning(id: string, events = true, kind: 'error' | 'interrupted' = 'error'): void {
    const item = this.running;
    if (item?.id !== id) throw new Error(`not running: ${id}`);
    const data =
      kind === 'error'
        ? {
            prompt_id: id,
            node_id: '3',
            node_type: 'KSampler',
            executed: ['1'],
            exception_message: 'CUDA out of memory\nThis error means you ran out of memory on your GPU.\n',
            exception_type: 'torch.OutOfMemoryError',
            traceback: ['  File "execution.py"'],
            current_inputs: {},
            current_outputs: [],
            timestamp: Date.now(),
          }
        : { prompt_id: id, node_id: '3', node_type: 'KSampler', executed: [], timestamp: Date.now() };
    const type = kind === 'error' ? 'execution_error' : 'execution_interrupted';
    this.history[id] = {
      prompt: [item.number, id, {}, {}, []],
      outputs: {},
      status: { status_str: 'error', completed: false, messages: [['execution_start', { prompt_id: id, timestamp: Date.now() }], [type, data]] },
    };
    this.running = undefined;
    if (events) {
      this.send(item.clientId, type, data);
      this.send(item.clientId, 'executing', { node: null, prompt_id: id });
    }
  }

  private accept(ws: WebSocket, clientId: string): void {
    const old = this.sockets.get(clientId);
    if (old && old.readyState === WebSocket.OPEN) this.overlapped = true;
    this.sockets.set(clientId, ws);
    this.connections++;
    ws.on('close', () => {
      if (this.sockets.get(clientId) === ws) this.sockets.delete(clientId);
    });
    ws.on('error', () => undefined);
    ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: this.pending.length } }, sid: clientId } }));
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, body: string): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    let path = u.pathname.startsWith(this.prefix) ? u.pathname.slice(this.prefix.length) : u.pathname;
    if (path.startsWith('/api/')) path = path.slice(4);
    this.requests.push(`${req.method} ${path}${u.search}`);
    let parsed: Json = {};
    try {
      parsed = body ? (JSON.parse(body) as Json) : {};
    } catch {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('500 Internal Server Error\n\nServer got itself in trouble');
      return;
    }
    if (req.method === 'POST') this.bodies.push(parsed);
    if (this.override?.(req, res, body)) return;
    const key = `${req.method} ${path}`;
    if (key === 'POST /prompt') {
      const item: Item = { number: this.counter++, id: typeof parsed.prompt_id === 'string' ? parsed.prompt_id : randomUUID(), clientId: parsed.client_id as string | undefined };
      this.pending.push(item);
      this.send(undefined, 'status', { status: { exec_info: { queue_remaining: this.pending.length } } });
      await this.onQueued?.(item);
      return this.json(res, 200, { prompt_id: item.id, number: item.number, node_errors: {} });
    }
    if (key === 'GET /queue') {
      const tuple = (i: Item) => [i.number, i.id, {}, { client_id: i.clientId }, ['9']];
      return this.json(res, 200, { queue_running: this.running ? [tuple(this.running)] : [], queue_pending: this.pending.map(tuple) });
    }
    if (req.method === 'GET' && path.startsWith('/history/')) {
      const id = decodeURIComponent(path.slice('/history/'.length));
      return this.json(res, 200, this.history[id] ? { [id]: this.history[id] } : {});
    }
    if (key === 'POST /queue') {
      const del = Array.isArray(parsed.delete) ? parsed.delete : [];
      this.pending = this.pending.filter((p) => !del.includes(p.id));
      res.writeHead(200).end();
      return;
    }
    if (key === 'POST /interrupt') {
      if (this.running && parsed.prompt_id === this.running.id) this.failRunning(this.running.id, true, 'interrupted');
      res.writeHead(200).end();
      return;
    }
    if (key === 'POST /free') {
      res.writeHead(200).end();
      return;
    }
    if (key === 'GET /prompt') return this.json(res, 200, { exec_info: { queue_remaining: this.pending.length + (this.running ? 1 : 0) } });
    if (key === 'GET /system_stats') {
      return this.json(res, 200, {
        system: { os: 'posix', comfyui_version: '0.3.64', ram_total: 1, ram_free: 1 },
        devices: [{ name: 'cuda:0 Fake', type: 'cuda', index: 0, vram_total: 100, vram_free: 60, torch_vram_total: 0, torch_vram_free: 0 }],
      });
    }
    if (key === 'GET /models/loras') return this.json(res, 200, ['a.safetensors', 'sub/b.safetensors']);
    if (key === 'GET /view') {
      const file = this.files.get(u.searchParams.get('filename') ?? '');
      if (!file || u.searchParams.get('type') !== 'output') {
        res.writeHead(404, { 'content-type': 'application/octet-stream' }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': file.length }).end(file);
      return;
    }
    res.writeHead(404).end();
  }
}

// ------------------------------------------------------------------------------------------------

const GRAPH: ComfyGraph = {
  '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } },
  '9': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 't' } },
};

/** Waits for a condition by polling it (never a fixed sleep). */
async function until(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Rejection → the error; resolution → a failure. */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => process.on('unhandledRejection', onUnhandled));
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  expect(unhandled).toEqual([]);
});

describe('ComfyUiHttpClient', () => {
  let fake: FakeComfy;
  let client: ComfyUiHttpClient | undefined;
  const fast: ComfyUiHttpClientOptions = { pollIntervalMs: 100, requestTimeoutMs: 1000, reconnect: { baseMs: 20, maxMs: 200, jitter: 0.1 }, pingIntervalMs: 0 };

  async function open(opts: ComfyUiHttpClientOptions = {}): Promise<ComfyUiHttpClient> {
    client = new ComfyUiHttpClient(fake.url, { ...fast, ...opts });
    client.connect();
    expect(await client.waitOpen(2000)).toBe(true);
    return client;
  }

  beforeEach(async () => {
    fake = new FakeComfy();
    await fake.start();
  });

  afterEach(async () => {
    await client?.close();
    client = undefined;
    await fake.stop();
  });

  it('runs a prompt end to end: own prompt_id and client_id, progress, onStart once, outcome from history', async () => {
    const c = await open();
    const promptId = randomUUID();
    const sub = await c.submit(GRAPH, { promptId });
    expect(sub).toEqual({ promptId, number: 0, nodeWarnings: {} });
    expect(fake.bodies[0]).toMatchObject({ client_id: c.clientId, prompt_id: promptId, prompt: GRAPH });
    expect(fake.sockets.has(c.clientId)).toBe(true);

    const progress: PromptProgress[] = [];
    const onStart = jest.fn();
    const done = c.wait(promptId, { idleTimeoutMs: 5000, onProgress: (p) => progress.push(p), onStart });
    await until(() => fake.pending.length === 1);
    fake.begin(promptId);
    for (let i = 1; i <= 4; i++) fake.progress(promptId, i, 4);
    await until(() => progress.length === 4, 2000, 'progress');
    await fake.succeed(promptId);
    const outcome = await done;
    expect(outcome).toEqual({ promptId, images: [{ node: '9', filename: 'out_00001_.png', subfolder: '', type: 'output' }], executionMs: 1234, endedAt: expect.any(Number) });
    expect(progress.map((p) => p.value)).toEqual([1, 2, 3, 4]);
    expect(progress[0]).toEqual({ promptId, node: '3', value: 1, max: 4 });
    expect(onStart).toHaveBeenCalledTimes(1);
  });

  it('keeps events that arrive before the POST /prompt answer', async () => {
    const c = await open({ pollIntervalMs: 60_000 });
    const promptId = randomUUID();
    fake.onQueued = async (item) => {
      fake.begin(item.id);
      await fake.succeed(item.id);
      // Hold the HTTP answer until the client has certainly read the frames.
      await new Promise((r) => setTimeout(r, 50));
    };
    await c.submit(GRAPH, { promptId });
    const onStart = jest.fn();
    const outcome = await c.wait(promptId, { idleTimeoutMs: 5000, onStart });
    expect(outcome.images).toHaveLength(1);
    expect(onStart).toHaveBeenCalledTimes(1);
  });

  it('maps a 400 with node_errors to a structured PromptValidationError', async () => {
    const c = await open();
    const nodeErrors = {
      '3': {
        errors: [{ type: 'value_bigger_than_max', message: 'Value 20000 bigger than max of 10000', details: 'steps', extra_info: { input_name: 'steps', received_value: 20000 } }],
        dependent_outputs: ['9'],
        class_type: 'KSampler',
      },
    };
    fake.override = (req, res) => {
      if (req.url !== '/prompt') return false;
      res.writeHead(400, { 'content-type': 'application/json' }).end(
        JSON.stringify({ error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: '', extra_info: {} }, node_errors: nodeErrors }),
      );
      return true;
    };
    const err = await failure(c.submit(GRAPH, { promptId: randomUUID() }));
    expect(err).toBeInstanceOf(PromptValidationError);
    const v = err as PromptValidationError;
    expect(v.retryable).toBe(false);
    expect(v.error).toMatchObject({ type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation' });
    expect(v.nodeErrors).toEqual(nodeErrors);
    expect(v.message).toContain('node 3 (KSampler): Value 20000 bigger than max of 10000');
  });

  it('treats node_errors on a 200 as warnings', async () => {
    const c = await open();
    fake.override = (req, res, body) => {
      if (req.url !== '/prompt') return false;
      const id = (JSON.parse(body) as Json).prompt_id;
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ prompt_id: id, number: 3, node_errors: { '12': { errors: [{ type: 'required_input_missing', message: 'Required input is missing', details: 'images' }], dependent_outputs: ['12'], class_type: 'SaveImage' } } }),
      );
      return true;
    };
    const promptId = randomUUID();
    const sub = await c.submit(GRAPH, { promptId });
    expect(sub.promptId).toBe(promptId);
    expect(sub.number).toBe(3);
    expect(sub.nodeWarnings['12'].class_type).toBe('SaveImage');
    expect(sub.nodeWarnings['12'].errors[0].details).toBe('images');
  });

  it('falls back to server-minted ids after invalid_prompt_id, and remembers it', async () => {
    const c = await open();
    fake.override = (req, res, body) => {
      if (req.url !== '/prompt' || !('prompt_id' in (JSON.parse(body) as Json))) return false;
      res.writeHead(400, { 'content-type': 'application/json' }).end(
        JSON.stringify({ error: { type: 'invalid_prompt_id', message: 'prompt_id must be a valid UUID', details: '', extra_info: {} }, node_errors: {} }),
      );
      return true;
    };
    const ours = randomUUID();
    const sub = await c.submit(GRAPH, { promptId: ours });
    expect(sub.promptId).not.toBe(ours);
    expect(fake.pending.map((p) => p.id)).toEqual([sub.promptId]);
    await c.submit(GRAPH, { promptId: randomUUID() });
    const posts = fake.requests.filter((r) => r === 'POST /prompt');
    expect(posts).toHaveLength(3); // rejected, resent without id, then straight without id
    expect(fake.bodies.map((b) => 'prompt_id' in b)).toEqual([true, false, false]);
  });

  it('uses the id a server answers when it ignores ours', async () => {
    const c = await open();
    fake.override = (req, res) => {
      if (req.url !== '/prompt') return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ prompt_id: 'server-id-1', number: 0, node_errors: {} }));
      return true;
    };
    const sub = await c.submit(GRAPH, { promptId: randomUUID() });
    expect(sub.promptId).toBe('server-id-1');
    await c.submit(GRAPH, { promptId: randomUUID() });
    expect(fake.bodies.map((b) => 'prompt_id' in b)).toEqual([true, false]);
  });

  it('maps non-JSON and unexpected answers without parsing them blindly', async () => {
    const c = await open();
    let status = 500;
    fake.override = (req, res) => {
      if (req.url !== '/prompt') return false;
      res.writeHead(status, { 'content-type': 'text/html' }).end('<html><body>Bad Gateway</body></html>');
      return true;
    };
    const e500 = await failure(c.submit(GRAPH, { promptId: randomUUID() }));
    expect(e500).toBeInstanceOf(ComfyUnavailableError);
    expect((e500 as ComfyUnavailableError).status).toBe(500);
    status = 503;
    expect(await failure(c.submit(GRAPH, { promptId: randomUUID() }))).toBeInstanceOf(ComfyUnavailableError);
    status = 413;
    const e413 = await failure(c.submit(GRAPH, { promptId: randomUUID() }));
    expect(e413).toBeInstanceOf(ComfyHttpError);
    expect((e413 as ComfyHttpError).rawText).toContain('Bad Gateway');
    status = 400; // a 400 that is not ComfyUI's JSON (a proxy's page)
    expect(await failure(c.submit(GRAPH, { promptId: randomUUID() }))).toBeInstanceOf(ComfyHttpError);
  });

  it('survives a 502 HTML /queue: locate maps it, a wait still completes from /history', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    fake.override = (req, res) => {
      if (req.url !== '/queue') return false;
      res.writeHead(502, { 'content-type': 'text/html' }).end('<html><head><title>502 Bad Gateway</title></head></html>');
      return true;
    };
    const err = await failure(c.locate(promptId));
    expect(err).toBeInstanceOf(ComfyUnavailableError);
    expect((err as ComfyUnavailableError).status).toBe(502);
    const done = c.wait(promptId, { idleTimeoutMs: 5000 });
    fake.begin(promptId, false);
    await fake.succeed(promptId, false);
    expect((await done).images).toHaveLength(1);
  });

  it('ignores garbage frames, binary previews and events of other prompts', async () => {
    const c = await open();
    const promptId = randomUUID();
    const other = randomUUID();
    await c.submit(GRAPH, { promptId });
    const progress: PromptProgress[] = [];
    const done = c.wait(promptId, { idleTimeoutMs: 5000, onProgress: (p) => progress.push(p) });
    fake.begin(promptId);
    const meta = Buffer.from(JSON.stringify({ node_id: '3', prompt_id: other, image_type: 'image/jpeg' }));
    const header = (t: number, n: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(t, 0);
      b.writeUInt32BE(n, 4);
      return b;
    };
    for (const raw of ['not json', '{"type":1}', '[]', 'null', '{"type":"crystools.monitor","data":[1,2]}', '{"type":"executing","data":{"node":"3"}}']) fake.sendRaw(raw);
    fake.sendRaw(Buffer.from([0, 0]));
    fake.sendRaw(Buffer.concat([header(1, 1), Buffer.from([0xff, 0xd8, 0xff])]));
    fake.sendRaw(Buffer.concat([header(4, meta.length), meta, Buffer.from([0xff, 0xd8])]));
    fake.sendRaw(Buffer.concat([header(4, 9999), meta]));
    fake.sendRaw(Buffer.concat([header(3, 1), Buffer.from('3hello')]));
    fake.sendRaw(header(99, 0));
    fake.send(c.clientId, 'progress', { value: 1, max: 2, prompt_id: other, node: '3' });
    fake.send(c.clientId, 'execution_error', { prompt_id: other, node_id: '3', node_type: 'KSampler', exception_type: 'X', exception_message: 'not ours' });
    fake.send(c.clientId, 'execution_success', { prompt_id: other, timestamp: 1 });
    fake.progress(promptId, 1, 1);
    await until(() => progress.length === 1);
    await fake.succeed(promptId);
    expect((await done).images).toHaveLength(1);
    expect(progress).toEqual([{ promptId, node: '3', value: 1, max: 1 }]);
    expect(c.state).toBe('open');
  });

  it('completes from the /history poll when the completion events are lost', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = c.wait(promptId, { idleTimeoutMs: 5000 });
    fake.begin(promptId);
    await fake.succeed(promptId, false);
    expect((await done).images).toHaveLength(1);
  });

  it('reconnects after the socket drops mid-run and settles at once from /history', async () => {
    const c = await open({ pollIntervalMs: 60_000 });
    const states: ConnectionState[] = [];
    c.onStateChange((s) => states.push(s));
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = c.wait(promptId, { idleTimeoutMs: 10_000 });
    fake.begin(promptId);
    await until(() => fake.requests.includes('GET /queue')); // the wait's first look
    fake.dropSockets();
    await until(() => c.state !== 'open', 2000, 'drop noticed');
    await fake.succeed(promptId, false); // completes while nobody listens
    const outcome = await done;
    expect(outcome.images).toHaveLength(1);
    expect(states).toEqual(expect.arrayContaining(['reconnecting', 'open']));
    expect(fake.connections).toBe(2);
    expect(fake.overlapped).toBe(false);
  });

  it('declares PromptLostError when a restarted server no longer knows the prompt', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = c.wait(promptId, { idleTimeoutMs: 10_000 });
    fake.begin(promptId);
    await until(() => fake.requests.includes('GET /queue'));
    const t0 = Date.now();
    await fake.restart();
    const err = await failure(done);
    expect(err).toBeInstanceOf(PromptLostError);
    expect((err as PromptLostError).retryable).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50); // two answered looks, half a poll interval apart
  });

  it('never declares a prompt lost while the server is unreachable: ComfyUnavailableError after idleTimeoutMs', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = c.wait(promptId, { idleTimeoutMs: 400 });
    fake.begin(promptId);
    await until(() => fake.requests.includes('GET /queue'));
    await fake.stop();
    const err = await failure(done);
    expect(err).toBeInstanceOf(ComfyUnavailableError);
    await fake.start(); // so afterEach can stop it
  });

  it('connect() returns at once with ComfyUI down and keeps retrying until it is up', async () => {
    const port = fake.port;
    await fake.stop();
    client = new ComfyUiHttpClient(`http://127.0.0.1:${port}`, fast);
    const t0 = Date.now();
    client.connect();
    expect(Date.now() - t0).toBeLessThan(100);
    expect(client.state).toBe('connecting');
    expect(await client.waitOpen(150)).toBe(false);
    await fake.start(port);
    expect(await client.waitOpen(3000)).toBe(true);
    expect(client.state).toBe('open');
  });

  it('times a running prompt out when it shows no life for idleTimeoutMs', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const t0 = Date.now();
    const done = c.wait(promptId, { idleTimeoutMs: 300 });
    fake.begin(promptId, false); // running, silent, forever
    const err = await failure(done);
    expect(err).toBeInstanceOf(ComfyUiTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('does not time out a prompt that waits its turn in the queue', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    let settled = false;
    const done = c.wait(promptId, { idleTimeoutMs: 250 }).finally(() => (settled = true));
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 700, 2000, 'three idle periods');
    expect(settled).toBe(false);
    fake.begin(promptId);
    await fake.succeed(promptId);
    expect((await done).images).toHaveLength(1);
  });

  it('rejects with ComfyAbortError promptly on abort, without cancelling on the server', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const ac = new AbortController();
    const done = c.wait(promptId, { idleTimeoutMs: 10_000, signal: ac.signal });
    const t0 = Date.now();
    ac.abort('shutdown');
    const err = await failure(done);
    expect(err).toBeInstanceOf(ComfyAbortError);
    expect(Date.now() - t0).toBeLessThan(100);
    expect(fake.requests.filter((r) => r.startsWith('POST /interrupt') || r === 'POST /queue')).toEqual([]);
    expect(await failure(c.wait(promptId, { idleTimeoutMs: 1000, signal: ac.signal }))).toBeInstanceOf(ComfyAbortError);
  });

  it('maps execution_error, interrupts and error history entries', async () => {
    const c = await open();
    const a = randomUUID();
    await c.submit(GRAPH, { promptId: a });
    const waitA = c.wait(a, { idleTimeoutMs: 5000 });
    fake.begin(a);
    fake.failRunning(a);
    const ea = (await failure(waitA)) as ExecutionError;
    expect(ea).toBeInstanceOf(ExecutionError);
    expect(ea).toMatchObject({ nodeId: '3', nodeType: 'KSampler', exceptionType: 'torch.OutOfMemoryError' });
    expect(ea.exceptionMessage).toContain('CUDA out of memory');
    expect(ea.traceback).toEqual(['  File "execution.py"']);

    const b = randomUUID(); // same error, seen only in history
    await c.submit(GRAPH, { promptId: b });
    const waitB = c.wait(b, { idleTimeoutMs: 5000 });
    fake.begin(b, false);
    fake.failRunning(b, false);
    expect(await failure(waitB)).toMatchObject({ nodeId: '3', exceptionType: 'torch.OutOfMemoryError' });
    expect(await failure(c.outcome(b))).toBeInstanceOf(ExecutionError);
    expect(await c.locate(b)).toBe('failed');

    const d = randomUUID(); // interrupted, by event then by history
    await c.submit(GRAPH, { promptId: d });
    const waitD = c.wait(d, { idleTimeoutMs: 5000 });
    fake.begin(d);
    fake.failRunning(d, true, 'interrupted');
    expect(await failure(waitD)).toBeInstanceOf(PromptInterruptedError);
    expect(await failure(c.wait(d, { idleTimeoutMs: 5000 }))).toBeInstanceOf(PromptInterruptedError);
  });

  it('reads outcomes from history: output images only, undefined when unknown', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    expect(await c.outcome(promptId)).toBeUndefined();
    expect(await c.locate(promptId)).toBe('pending');
    expect(await c.queuedPromptIds()).toEqual([promptId]);
    fake.begin(promptId, false);
    expect(await c.locate(promptId)).toBe('running');
    expect(await c.queuedPromptIds()).toEqual([promptId]);
    await fake.succeed(promptId, false);
    expect(await c.locate(promptId)).toBe('done');
    expect(await c.queuedPromptIds()).toEqual([]);
    expect(await c.locate(randomUUID())).toBe('unknown');
    const out = await c.outcome(promptId);
    expect(out?.images.map((i) => i.type)).toEqual(['output']);
  });

  it('downloads outputs and rejects cut, wrong or missing ones with OutputFetchError', async () => {
    const c = await open();
    expect((await c.view({ filename: 'out_00001_.png', subfolder: '', type: 'output' })).equals(PNG)).toBe(true);
    expect(await failure(c.view({ filename: 'nope.png', subfolder: '', type: 'output' }))).toBeInstanceOf(OutputFetchError);

    let mode: 'short' | 'truncated' | 'html' = 'short';
    let seenQuery = '';
    fake.override = (req, res) => {
      if (!req.url?.startsWith('/view')) return false;
      seenQuery = req.url;
      if (mode === 'short') {
        // Declares the full size, sends half, hangs up.
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': PNG.length });
        res.write(PNG.subarray(0, 30));
        setTimeout(() => res.socket?.destroy(), 10);
      } else if (mode === 'truncated') {
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': 30 }).end(PNG.subarray(0, 30));
      } else {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html>oops</html>');
      }
      return true;
    };
    const ref = { filename: 'a b&c=d.png', subfolder: 'x/y', type: 'output' };
    expect(await failure(c.view(ref))).toBeInstanceOf(OutputFetchError);
    expect(new URL(seenQuery, 'http://x').searchParams.get('filename')).toBe('a b&c=d.png');
    expect(new URL(seenQuery, 'http://x').searchParams.get('subfolder')).toBe('x/y');
    mode = 'truncated';
    expect(await failure(c.view(ref))).toBeInstanceOf(OutputFetchError);
    mode = 'html';
    expect(await failure(c.view(ref))).toBeInstanceOf(OutputFetchError);
  });

  it('cancels precisely: delete when pending, interrupt with prompt_id when running, nothing when done', async () => {
    const c = await open();
    const a = randomUUID();
    const b = randomUUID();
    await c.submit(GRAPH, { promptId: a });
    await c.submit(GRAPH, { promptId: b });
    fake.begin(a);
    const waitA = c.wait(a, { idleTimeoutMs: 5000 });
    expect(await c.cancel(b)).toBe('pending');
    expect(fake.pending).toEqual([]);
    expect(fake.bodies).toContainEqual({ delete: [b] });
    expect(await c.cancel(a)).toBe('running');
    expect(fake.bodies).toContainEqual({ prompt_id: a });
    expect(await failure(waitA)).toBeInstanceOf(PromptInterruptedError);
    expect(await c.cancel(a)).toBe('failed');
    expect(await c.cancel(randomUUID())).toBe('unknown');
  });

  it('terminates a socket that stops answering pings and reconnects only after the old one closed', async () => {
    await fake.stop();
    fake = new FakeComfy();
    fake.autoPong = false;
    await fake.start();
    const c = await open({ pingIntervalMs: 50, pongTimeoutMs: 50 });
    await until(() => fake.connections >= 3, 3000, 'reconnects');
    expect(fake.overlapped).toBe(false);
    expect(['open', 'reconnecting']).toContain(c.state);
  });

  it('honours a path prefix in the base URL and answers the small endpoints', async () => {
    fake.prefix = '/comfy';
    const c = await open();
    expect(c.baseUrl).toBe(`http://127.0.0.1:${fake.port}/comfy`);
    expect(fake.sockets.has(c.clientId)).toBe(true);
    const stats = await c.systemStats(undefined, 500);
    expect(stats.devices[0]).toMatchObject({ type: 'cuda', vram_free: 60 });
    expect(await c.listModels('loras')).toEqual(['a.safetensors', 'sub/b.safetensors']);
    expect(await failure(c.listModels('nope'))).toBeInstanceOf(ComfyHttpError);
    await c.free();
    expect(fake.bodies).toContainEqual({ unload_models: true, free_memory: true });
    expect(await c.queueRemaining()).toBe(0);
    expect(await c.queuedPromptIds()).toEqual([]);
    expect(fake.requests.every((r) => !r.includes('/comfy'))).toBe(true);
  });

  it('survives callbacks that throw', async () => {
    const c = await open();
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = c.wait(promptId, {
      idleTimeoutMs: 5000,
      onStart: () => {
        throw new Error('boom');
      },
      onProgress: () => {
        throw new Error('boom');
      },
    });
    fake.begin(promptId);
    fake.progress(promptId, 1, 1);
    await fake.succeed(promptId);
    expect((await done).images).toHaveLength(1);
  });

  it('honours an AbortSignal and its own timeout on plain HTTP calls', async () => {
    const c = await open({ requestTimeoutMs: 200 });
    fake.override = (req) => req.url === '/system_stats'; // never answers
    const t0 = Date.now();
    expect(await failure(c.systemStats())).toBeInstanceOf(ComfyUnavailableError);
    expect(Date.now() - t0).toBeLessThan(1000);
    const ac = new AbortController();
    const p = c.systemStats(ac.signal, 5000);
    ac.abort();
    expect(await failure(p)).toBeInstanceOf(ComfyAbortError);
  });

  it('close() rejects waiters with ClientClosedError, stops everything and leaves no handles', async () => {
    const count = () => {
      const m = new Map<string, number>();
      for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
      return m;
    };
    const before = count();
    const c = await open({ pingIntervalMs: 50, pongTimeoutMs: 1000, pollIntervalMs: 60_000 });
    const promptId = randomUUID();
    await c.submit(GRAPH, { promptId });
    const done = failure(c.wait(promptId, { idleTimeoutMs: 10_000 }));
    const opened = c.waitOpen(10);
    await until(() => fake.requests.includes('GET /queue'), 2000, 'first look');
    await c.systemStats(); // leaves an idle keep-alive socket in the agent
    await c.close();
    expect(await done).toBeInstanceOf(ClientClosedError);
    expect(await opened).toBe(true);
    expect(c.state).toBe('closed');
    expect(await c.waitOpen(10)).toBe(false);
    c.connect(); // nothing restarts after close()
    expect(c.state).toBe('closed');
    expect(await failure(c.submit(GRAPH, { promptId: randomUUID() }))).toBeInstanceOf(ClientClosedError);
    expect(await failure(c.wait(promptId, { idleTimeoutMs: 10 }))).toBeInstanceOf(ClientClosedError);
    // Server-side ends of the sockets close a moment later; ours must already be gone.
    const same = () => {
      const now = count();
      return [...new Set([...before.keys(), ...now.keys()])].every((k) => (now.get(k) ?? 0) <= (before.get(k) ?? 0));
    };
    await until(same, 2000, `handles back to ${JSON.stringify([...before])}, now ${JSON.stringify([...count()])}`);
    client = undefined;
  });
});
