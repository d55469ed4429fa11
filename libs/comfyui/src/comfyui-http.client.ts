import { randomUUID } from 'node:crypto';
import { ComfyUiClient, type UploadImageOptions } from './comfyui.client';
import { ComfyHttpError, ComfyUnavailableError, OutputFetchError, PromptValidationError } from './comfyui.errors';
import { ComfySocket, type ComfyUiLogger, type ReconnectPolicy } from './comfyui-socket';
import type {
  ComfyGraph,
  ComfyImageRef,
  ConnectionState,
  GpuDevice,
  PromptLocation,
  PromptOutcome,
  SubmitResult,
  SystemStats,
  WaitOptions,
} from './comfyui.types';
import {
  errorFromEntry,
  isFailedEntry,
  isObject,
  locationInQueue,
  outcomeFromEntry,
  parseHistoryEntry,
  parseNodeErrors,
  parseQueue,
  type HistoryEntry,
  type Json,
  type QueueSnapshot,
} from './history';
import { HttpTransport, statusError, UNREACHABLE_CODES } from './http-transport';
import { imageProblem } from './image-bytes';
import { PromptTracker } from './prompt-tracker';

export type { ComfyUiLogger, ReconnectPolicy } from './comfyui-socket';

export interface ComfyUiHttpClientOptions {
  /** Same id on the WebSocket and in POST /prompt; default: a random UUID per instance. */
  clientId?: string;
  /** Timeout of every HTTP call except /view (default 10 s). */
  requestTimeoutMs?: number;
  /** Timeout of one /view download (default 30 s). */
  viewTimeoutMs?: number;
  /** Safety-net poll of /queue + /history while a prompt is awaited (default 5 s). */
  pollIntervalMs?: number;
  reconnect?: Partial<ReconnectPolicy>;
  /** WebSocket ping period (default 20 s); 0 disables the heartbeat. */
  pingIntervalMs?: number;
  /** No pong within this → the socket is terminated and reopened (default 10 s). */
  pongTimeoutMs?: number;
  /** Sent with every HTTP request and the WebSocket upgrade (e.g. Authorization for a proxy). */
  headers?: Record<string, string>;
  logger?: ComfyUiLogger;
}

const SILENT: ComfyUiLogger = { debug() {}, info() {}, warn() {}, error() {} };
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * ComfyUI over HTTP + WebSocket for one server: the REST commands live here; following a prompt
 * to its end (socket events, the /history safety net, the idle and lost rules) is the tracker's.
 */
export class ComfyUiHttpClient extends ComfyUiClient {
  readonly baseUrl: string;
  readonly clientId: string;

  private readonly log: ComfyUiLogger;
  private readonly http: HttpTransport;
  private readonly socket: ComfySocket;
  private readonly tracker: PromptTracker;
  private readonly requestTimeoutMs: number;
  private readonly viewTimeoutMs: number;

  /** Learned from the server: undefined until the first submit, false if it ignores or rejects our ids. */
  private promptIdSupported?: boolean;
  private closed = false;
  private closing?: Promise<void>;

  constructor(baseUrl: string, opts: ComfyUiHttpClientOptions = {}) {
    super();
    const base = new URL(baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`ComfyUI base URL must be http(s): ${baseUrl}`);
    base.search = '';
    base.hash = '';
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.baseUrl = base.toString().replace(/\/+$/, '');
    this.clientId = opts.clientId ?? randomUUID();
    this.log = opts.logger ?? SILENT;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.viewTimeoutMs = opts.viewTimeoutMs ?? Math.max(30_000, this.requestTimeoutMs);
    this.http = new HttpTransport(base.toString(), this.requestTimeoutMs, opts.headers);
    this.tracker = new PromptTracker({
      baseUrl: this.baseUrl,
      pollIntervalMs: opts.pollIntervalMs ?? 5_000,
      log: this.log,
      lookups: { fetchQueue: () => this.fetchQueue(), fetchHistory: (id) => this.fetchHistory(id) },
    });

    const wsUrl = new URL('ws', base);
    wsUrl.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    wsUrl.search = new URLSearchParams({ clientId: this.clientId }).toString();
    const reconnect: ReconnectPolicy = {
      baseMs: opts.reconnect?.baseMs ?? 500,
      maxMs: opts.reconnect?.maxMs ?? 30_000,
      jitter: opts.reconnect?.jitter ?? 0.2,
      stableMs: opts.reconnect?.stableMs ?? 10_000,
    };
    this.socket = new ComfySocket({
      url: wsUrl.toString(),
      headers: opts.headers,
      handshakeTimeoutMs: this.requestTimeoutMs,
      pingIntervalMs: opts.pingIntervalMs ?? 20_000,
      pongTimeoutMs: opts.pongTimeoutMs ?? 10_000,
      reconnect,
      log: this.log,
      onFrame: (f) => this.tracker.onFrame(f),
      onOpen: (reconnected) => this.tracker.onOpen(reconnected),
    });
  }

  get state(): ConnectionState {
    return this.closed ? 'closed' : this.socket.state;
  }

  /** State changes of the WebSocket (for health checks and metrics); returns the unsubscribe function. */
  onStateChange(fn: (s: ConnectionState) => void): () => void {
    return this.socket.onState(fn);
  }

  connect(): void {
    if (this.closed) {
      this.log.warn('comfyui connect() after close() ignored', { baseUrl: this.baseUrl });
      return;
    }
    this.socket.start();
  }

  waitOpen(timeoutMs: number): Promise<boolean> {
    if (this.state === 'open') return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        clearTimeout(timer);
        off();
        resolve(v);
      };
      const timer = setTimeout(() => done(false), Math.max(0, timeoutMs));
      const off = this.socket.onState((s) => {
        if (s === 'open') done(true);
        else if (s === 'closed') done(false);
      });
    });
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      this.tracker.close();
      this.http.close();
      await this.socket.stop();
      this.log.debug('comfyui client closed', { baseUrl: this.baseUrl });
    })();
    return this.closing;
  }

  // ---------------------------------------------------------------- submit

  async submit(graph: ComfyGraph, opts: { promptId: string; signal?: AbortSignal }): Promise<SubmitResult> {
    if (this.promptIdSupported === false) return this.postPrompt(graph, undefined, opts.signal);
    try {
      return await this.postPrompt(graph, opts.promptId, opts.signal);
    } catch (err) {
      if (!(err instanceof PromptValidationError) || err.error.type !== 'invalid_prompt_id') throw err;
      // A 400 means nothing was queued, so sending again without our id is safe. Only a server
      // that refuses a canonical UUID is marked; a malformed id of the caller's says nothing about it.
      if (CANONICAL_UUID.test(opts.promptId)) this.promptIdSupported = false;
      this.log.warn('comfyui rejected our prompt_id; letting the server mint one', { baseUrl: this.baseUrl, promptId: opts.promptId });
      return this.postPrompt(graph, undefined, opts.signal);
    }
  }

  private async postPrompt(graph: ComfyGraph, promptId: string | undefined, signal?: AbortSignal): Promise<SubmitResult> {
    if (promptId) this.tracker.forget(promptId);
    const body: Json = { prompt: graph, client_id: this.clientId };
    if (promptId) body.prompt_id = promptId;
    const res = await this.http.request('POST', 'prompt', { json: body, signal });
    const json = res.json;

    if (res.status === 200) {
      if (!isObject(json) || typeof json.prompt_id !== 'string' || !json.prompt_id) throw new ComfyHttpError(200, res.text.slice(0, 4000), json);
      const serverId = json.prompt_id;
      if (promptId && serverId !== promptId) {
        this.promptIdSupported = false;
        this.log.warn('comfyui ignores client prompt_id; using its own ids from now on', { baseUrl: this.baseUrl, sent: promptId, got: serverId });
      } else if (promptId) {
        this.promptIdSupported = true;
      }
      const nodeWarnings = parseNodeErrors(json.node_errors);
      if (Object.keys(nodeWarnings).length) {
        this.log.warn('comfyui queued the prompt without some outputs', { promptId: serverId, nodes: Object.keys(nodeWarnings) });
      }
      const n = typeof json.number === 'number' ? json.number : Number(json.number);
      return { promptId: serverId, number: Number.isFinite(n) ? n : -1, nodeWarnings };
    }

    if (res.status === 400 && isObject(json) && isObject(json.error)) {
      const e = json.error;
      throw new PromptValidationError(
        {
          type: typeof e.type === 'string' ? e.type : 'unknown',
          message: typeof e.message === 'string' ? e.message : '',
          details: typeof e.details === 'string' ? e.details : '',
          extra_info: e.extra_info,
        },
        parseNodeErrors(json.node_errors),
      );
    }
    throw statusError('POST /prompt', res);
  }

  // ---------------------------------------------------------------- wait

  wait(promptId: string, opts: WaitOptions): Promise<PromptOutcome> {
    return this.tracker.wait(promptId, opts);
  }

  // ---------------------------------------------------------------- lookups

  private async fetchQueue(signal?: AbortSignal): Promise<QueueSnapshot> {
    const res = await this.http.request('GET', 'queue', { signal });
    if (res.status !== 200) throw statusError('GET /queue', res);
    const q = parseQueue(res.json);
    if (!q) throw new ComfyHttpError(res.status, res.text.slice(0, 4000), res.json);
    return q;
  }

  private async fetchHistory(promptId: string, signal?: AbortSignal): Promise<HistoryEntry | undefined> {
    const res = await this.http.request('GET', `history/${encodeURIComponent(promptId)}`, { signal });
    if (res.status !== 200) throw statusError('GET /history/{id}', res);
    if (!isObject(res.json)) throw new ComfyHttpError(res.status, res.text.slice(0, 4000), res.json);
    return parseHistoryEntry(res.json, promptId);
  }

  async locate(promptId: string, signal?: AbortSignal): Promise<PromptLocation> {
    const q = await this.fetchQueue(signal);
    const where = locationInQueue(q, promptId);
    if (where) return where;
    const entry = await this.fetchHistory(promptId, signal);
    if (!entry) return 'unknown';
    return isFailedEntry(entry) ? 'failed' : 'done';
  }

  async queuedPromptIds(signal?: AbortSignal): Promise<string[]> {
    const q = await this.fetchQueue(signal);
    return [...q.running, ...q.pending];
  }

  async outcome(promptId: string, signal?: AbortSignal): Promise<PromptOutcome | undefined> {
    const entry = await this.fetchHistory(promptId, signal);
    if (!entry) return undefined;
    if (isFailedEntry(entry)) throw errorFromEntry(promptId, entry);
    return outcomeFromEntry(promptId, entry);
  }

  async view(ref: ComfyImageRef, signal?: AbortSignal): Promise<Buffer> {
    const what = `GET /view ${ref.subfolder ? `${ref.subfolder}/` : ''}${ref.filename}`;
    const res = await this.http.request('GET', 'view', {
      query: { filename: ref.filename, subfolder: ref.subfolder ?? '', type: ref.type || 'output' },
      signal,
      timeoutMs: this.viewTimeoutMs,
      headers: { accept: '*/*', 'accept-encoding': 'identity' },
      binary: true,
      onNetworkError: (_w, code, message) =>
        code && UNREACHABLE_CODES.has(code)
          ? new ComfyUnavailableError(`ComfyUI ${what} failed: ${code} ${message}`)
          : new OutputFetchError(`ComfyUI ${what} broke off: ${code ?? ''} ${message}`.replace(/\s+/g, ' ')),
    });
    if (res.status >= 500) throw statusError(what, res);
    if (res.status !== 200) throw new OutputFetchError(`ComfyUI ${what} answered HTTP ${res.status}`);
    const declared = res.headers['content-length'];
    if (declared !== undefined && !res.headers['content-encoding']) {
      const n = Number(declared);
      if (Number.isFinite(n) && n !== res.body.length) throw new OutputFetchError(`ComfyUI ${what}: got ${res.body.length} of ${n} bytes`);
    }
    const problem = imageProblem(res.body);
    if (problem) throw new OutputFetchError(`ComfyUI ${what}: ${problem} (${res.body.length} bytes)`);
    return res.body;
  }

  /**
   * Pending → POST /queue {delete}; running → POST /interrupt {prompt_id} (never a bare interrupt,
   * which would kill whatever runs). A prompt can start between our look and the delete, so look
   * again after deleting.
   */
  async cancel(promptId: string): Promise<PromptLocation> {
    const where = await this.locate(promptId);
    if (where === 'pending') {
      await this.postEmpty('queue', { delete: [promptId] });
      const q = await this.fetchQueue();
      if (q.running.has(promptId)) {
        await this.postEmpty('interrupt', { prompt_id: promptId });
        return 'running';
      }
      return 'pending';
    }
    if (where === 'running') await this.postEmpty('interrupt', { prompt_id: promptId });
    return where;
  }

  async systemStats(signal?: AbortSignal, timeoutMs?: number): Promise<SystemStats> {
    const res = await this.http.request('GET', 'system_stats', { signal, timeoutMs });
    if (res.status !== 200) throw statusError('GET /system_stats', res);
    const j = res.json;
    if (!isObject(j) || !isObject(j.system) || !Array.isArray(j.devices)) throw new ComfyHttpError(res.status, res.text.slice(0, 4000), j);
    return { system: j.system, devices: j.devices.filter(isObject) as unknown as GpuDevice[] };
  }

  async listModels(folder: string, signal?: AbortSignal): Promise<string[]> {
    const res = await this.http.request('GET', `models/${encodeURIComponent(folder)}`, { signal });
    if (res.status !== 200) throw statusError(`GET /models/${folder}`, res);
    if (!Array.isArray(res.json)) throw new ComfyHttpError(res.status, res.text.slice(0, 4000), res.json);
    return res.json.filter((x): x is string => typeof x === 'string');
  }

  async uploadImage(bytes: Buffer, opts: UploadImageOptions): Promise<string> {
    const boundary = `----fictures${randomUUID().replace(/-/g, '')}`;
    const field = (name: string, value: string) =>
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
    // Names are ours (job id + role), never a client's: nothing to escape in the header.
    const parts = [
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${opts.filename}"\r\nContent-Type: ${opts.contentType}\r\n\r\n`),
      bytes,
      Buffer.from('\r\n'),
      field('type', 'input'),
      field('subfolder', opts.subfolder ?? ''),
      field('overwrite', opts.overwrite ? 'true' : 'false'),
      ...(opts.mask ? [field('original_ref', JSON.stringify(opts.mask.originalRef))] : []),
      Buffer.from(`--${boundary}--\r\n`),
    ];
    const path = opts.mask ? 'upload/mask' : 'upload/image';
    const res = await this.http.request('POST', path, {
      body: { data: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` },
      signal: opts.signal,
      timeoutMs: this.viewTimeoutMs,
    });
    if (res.status !== 200) throw statusError(`POST /${path}`, res);
    const j = res.json;
    if (!isObject(j) || typeof j.name !== 'string' || !j.name) throw new ComfyHttpError(res.status, res.text.slice(0, 4000), j);
    const sub = typeof j.subfolder === 'string' ? j.subfolder : '';
    return sub ? `${sub}/${j.name}` : j.name;
  }

  async free(): Promise<void> {
    await this.postEmpty('free', { unload_models: true, free_memory: true });
  }

  /** GET /prompt: pending + running on this server (cheap; for picking a server). */
  async queueRemaining(signal?: AbortSignal): Promise<number> {
    const res = await this.http.request('GET', 'prompt', { signal });
    if (res.status !== 200) throw statusError('GET /prompt', res);
    const j = res.json;
    const n = isObject(j) && isObject(j.exec_info) ? j.exec_info.queue_remaining : undefined;
    if (typeof n !== 'number') throw new ComfyHttpError(res.status, res.text.slice(0, 4000), j);
    return n;
  }

  /** POSTs whose 200 has an empty body (queue, interrupt, free): never parse it. */
  private async postEmpty(path: string, json: Json): Promise<void> {
    const res = await this.http.request('POST', path, { json });
    if (res.status < 200 || res.status >= 300) throw statusError(`POST /${path}`, res);
  }
}
