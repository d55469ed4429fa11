import { randomUUID } from 'node:crypto';
import { ComfyUiClient } from './comfyui.client';
import {
  ClientClosedError,
  ComfyAbortError,
  ComfyHttpError,
  ComfyUiTimeoutError,
  ComfyUnavailableError,
  OutputFetchError,
  PromptInterruptedError,
  PromptLostError,
  PromptValidationError,
} from './comfyui.errors';
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
  executionErrorFrom,
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
import { HttpTransport, snippet, statusError, UNREACHABLE_CODES } from './http-transport';
import { imageProblem } from './image-bytes';
import type { ComfyFrame } from './ws-frames';

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
/** Events that prove the prompt is executing (and so trigger onStart). */
const RUNNING_EVENTS = new Set(['execution_start', 'execution_cached', 'executing', 'progress', 'progress_state', 'executed']);
/** How many prompt ids we remember events for when nobody waits on them yet. */
const SEEN_CAP = 512;
const SEEN_TTL_MS = 30 * 60_000;

/** What the socket told us about one prompt id, kept even when nobody waits on it (yet). */
interface Seen {
  at: number;
  started: boolean;
  terminal?: { type: string; data: Json };
}

type PollResult =
  | { kind: 'running' }
  | { kind: 'pending'; ahead: string }
  | { kind: 'entry'; entry: HistoryEntry }
  | { kind: 'absent' }
  | { kind: 'failed'; error: Error };

interface Waiter {
  promptId: string;
  opts: WaitOptions;
  resolve(o: PromptOutcome): void;
  reject(e: Error): void;
  settled: boolean;
  started: boolean;
  /** Last sign of life: a WS event for the prompt, a poll showing it pending, or it starting. */
  lastAlive: number;
  /** The prompts ComfyUI was running at the last look that found ours pending. */
  aheadSeen?: string;
  /** Consecutive answered looks that found the id nowhere, and when the first of them was. */
  absentCount: number;
  absentSince?: number;
  /** First failed look since the last answered one. */
  unreachableSince?: number;
  lastLookFailed: boolean;
  /** A terminal success was seen; history is being fetched (it is written a moment later). */
  finishing: boolean;
  idleTimer?: NodeJS.Timeout;
  finishTimer?: NodeJS.Timeout;
  detachAbort?: () => void;
}

/**
 * ComfyUI over HTTP + WebSocket for one server. The socket is the fast path (progress, completion
 * a few ms after it happens); /history is the truth and /queue + /history polling is the safety
 * net for every event the socket can lose.
 */
export class ComfyUiHttpClient extends ComfyUiClient {
  readonly baseUrl: string;
  readonly clientId: string;

  private readonly log: ComfyUiLogger;
  private readonly http: HttpTransport;
  private readonly socket: ComfySocket;
  private readonly requestTimeoutMs: number;
  private readonly viewTimeoutMs: number;
  private readonly pollIntervalMs: number;

  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly seen = new Map<string, Seen>();
  /** Learned from the server: undefined until the first submit, false if it ignores or rejects our ids. */
  private promptIdSupported?: boolean;
  private pollTimer?: NodeJS.Timeout;
  private polling = false;
  private pollAgain = false;
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
    this.pollIntervalMs = opts.pollIntervalMs ?? 5_000;
    this.http = new HttpTransport(base.toString(), this.requestTimeoutMs, opts.headers);

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
      onFrame: (f) => this.guard('frame', () => this.handleFrame(f)),
      onOpen: (reconnected) => this.guard('open', () => this.handleOpen(reconnected)),
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
      this.clearPollTimer();
      for (const set of [...this.waiters.values()]) for (const w of [...set]) this.settle(w, new ClientClosedError());
      this.http.close();
      await this.socket.stop();
      this.seen.clear();
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
    // Events for this id may arrive before the POST answers (§1.6); anything older is a previous life of the id.
    if (promptId) this.seen.delete(promptId);
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
    if (this.closed) return Promise.reject(new ClientClosedError());
    if (opts.signal?.aborted) return Promise.reject(new ComfyAbortError(opts.signal.reason));
    return new Promise<PromptOutcome>((resolve, reject) => {
      const w: Waiter = {
        promptId,
        opts,
        resolve,
        reject,
        settled: false,
        started: false,
        lastAlive: Date.now(),
        absentCount: 0,
        lastLookFailed: false,
        finishing: false,
      };
      let set = this.waiters.get(promptId);
      if (!set) this.waiters.set(promptId, (set = new Set()));
      set.add(w);

      if (opts.signal) {
        const signal = opts.signal;
        const onAbort = () => this.settle(w, new ComfyAbortError(signal.reason));
        signal.addEventListener('abort', onAbort, { once: true });
        w.detachAbort = () => signal.removeEventListener('abort', onAbort);
      }
      this.armIdle(w, opts.idleTimeoutMs);

      // Replay what the socket said before anyone listened (events can beat the POST answer).
      const s = this.seen.get(promptId);
      if (s?.started) this.markStarted(w);
      if (s?.terminal) this.applyEvent(w, s.terminal.type, s.terminal.data);
      // Look at once: the prompt may have finished while nobody listened (re-attach after a restart of ours).
      if (!w.settled) this.pollNow();
    });
  }

  private settle(w: Waiter, result: PromptOutcome | Error): void {
    if (w.settled) return;
    w.settled = true;
    if (w.idleTimer) clearTimeout(w.idleTimer);
    if (w.finishTimer) clearTimeout(w.finishTimer);
    w.detachAbort?.();
    const set = this.waiters.get(w.promptId);
    set?.delete(w);
    if (set && !set.size) this.waiters.delete(w.promptId);
    if (!this.waiters.size) this.clearPollTimer();
    if (result instanceof Error) {
      this.log.debug('comfyui wait failed', { promptId: w.promptId, err: result.name, message: result.message });
      w.reject(result);
    } else {
      w.resolve(result);
    }
  }

  private armIdle(w: Waiter, delay: number): void {
    w.idleTimer = setTimeout(() => this.guard('idle', () => this.checkIdle(w)), Math.max(1, delay));
  }

  /**
   * Idle rule: nothing showed the prompt alive for idleTimeoutMs → hung. Alive means a WS event
   * for it, a look finding it pending while the queue ahead moves, or it starting.
   * A prompt the polls keep seeing as running but that emits nothing is hung. If our last look at
   * the server failed, the honest answer is "unavailable", not "hung".
   */
  private checkIdle(w: Waiter): void {
    w.idleTimer = undefined;
    if (w.settled) return;
    const idle = w.opts.idleTimeoutMs;
    const now = Date.now();
    if (w.unreachableSince !== undefined && now - w.unreachableSince >= idle) {
      this.settle(w, new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable for ${now - w.unreachableSince} ms while waiting for prompt ${w.promptId}`));
      return;
    }
    const quiet = now - w.lastAlive;
    if (quiet >= idle) {
      this.settle(
        w,
        w.lastLookFailed
          ? new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable while waiting for prompt ${w.promptId}`)
          : new ComfyUiTimeoutError(w.promptId, idle),
      );
      return;
    }
    let next = idle - quiet;
    if (w.unreachableSince !== undefined) next = Math.min(next, idle - (now - w.unreachableSince));
    this.armIdle(w, next);
  }

  private markStarted(w: Waiter): void {
    if (w.started) return;
    w.started = true;
    w.lastAlive = Date.now();
    if (w.opts.onStart) {
      const cb = w.opts.onStart;
      this.guard('onStart', () => cb());
    }
  }

  // ---------------------------------------------------------------- socket events

  private handleOpen(reconnected: boolean): void {
    // Whatever happened while we were away or not yet connected (completion, restart) shows up in
    // /queue + /history; look now rather than at the next tick.
    if (this.waiters.size) {
      this.log.debug('comfyui ws open: checking prompts in flight', { reconnected, prompts: this.waiters.size });
      this.pollNow();
    }
  }

  private handleFrame(f: ComfyFrame): void {
    switch (f.kind) {
      case 'event':
        this.handleEvent(f.type, f.data);
        return;
      case 'preview':
        // Previews are never outputs; a type-4 preview names its prompt, which proves it is alive.
        if (f.promptId) this.touch(f.promptId);
        return;
      case 'text':
        this.log.debug('comfyui progress text', { node: f.nodeId, text: snippet(f.text) });
        return;
      case 'invalid':
        this.log.debug('comfyui ws frame dropped', { reason: f.reason });
        return;
    }
  }

  private handleEvent(type: string, data: Json): void {
    const promptId = typeof data.prompt_id === 'string' ? data.prompt_id : undefined;
    // No prompt_id: status broadcasts, the reconnect `executing` resend, custom-node chatter.
    if (!promptId) return;
    this.remember(promptId, type, data);
    const set = this.waiters.get(promptId);
    if (!set) return;
    for (const w of [...set]) this.applyEvent(w, type, data);
  }

  private remember(promptId: string, type: string, data: Json): void {
    const now = Date.now();
    let s = this.seen.get(promptId);
    if (!s) {
      for (const [id, old] of this.seen) {
        if (this.seen.size < SEEN_CAP && now - old.at < SEEN_TTL_MS) break;
        this.seen.delete(id);
      }
      this.seen.set(promptId, (s = { at: now, started: false }));
    }
    s.at = now;
    if (RUNNING_EVENTS.has(type) && !(type === 'executing' && data.node === null)) s.started = true;
    const terminal = type === 'execution_success' || type === 'execution_error' || type === 'execution_interrupted' || (type === 'executing' && data.node === null);
    // The final `executing null` must not hide the error that came just before it.
    if (terminal && (!s.terminal || s.terminal.type === 'execution_success' || s.terminal.type === 'executing')) s.terminal = { type, data };
  }

  private touch(promptId: string): void {
    const set = this.waiters.get(promptId);
    if (set) for (const w of set) w.lastAlive = Date.now();
  }

  private applyEvent(w: Waiter, type: string, data: Json): void {
    if (w.settled) return;
    w.lastAlive = Date.now();
    w.absentCount = 0;
    w.absentSince = undefined;
    switch (type) {
      case 'execution_success':
        this.finish(w);
        return;
      case 'executing':
        if (data.node === null) this.finish(w);
        else this.markStarted(w);
        return;
      case 'execution_error':
        this.settle(w, executionErrorFrom(data));
        return;
      case 'execution_interrupted':
        this.settle(w, new PromptInterruptedError(w.promptId));
        return;
      case 'progress': {
        this.markStarted(w);
        const cb = w.opts.onProgress;
        if (cb && typeof data.value === 'number' && typeof data.max === 'number') {
          const p = { promptId: w.promptId, node: typeof data.node === 'string' ? data.node : String(data.node ?? ''), value: data.value, max: data.max };
          this.guard('onProgress', () => cb(p));
        }
        return;
      }
      default:
        if (RUNNING_EVENTS.has(type)) this.markStarted(w);
    }
  }

  /**
   * The socket says the prompt ended well; the outputs come from /history, which ComfyUI writes a
   * moment after execution_success. Retry briefly, then leave it to the regular poll.
   */
  private finish(w: Waiter): void {
    if (w.finishing || w.settled) return;
    w.finishing = true;
    const delays = [0, 25, 50, 100, 200, 400, 800, 1600];
    const attempt = (i: number) => {
      w.finishTimer = undefined;
      if (w.settled || this.closed) return;
      this.fetchHistory(w.promptId)
        .then((entry) => {
          if (w.settled) return;
          if (entry) return this.settleFromEntry(w, entry);
          if (i + 1 < delays.length) w.finishTimer = setTimeout(() => attempt(i + 1), delays[i + 1]);
          else w.finishing = false;
        })
        .catch((err: unknown) => {
          if (w.settled) return;
          this.log.debug('comfyui history fetch after completion failed', { promptId: w.promptId, err: String(err) });
          if (i + 1 < delays.length) w.finishTimer = setTimeout(() => attempt(i + 1), delays[i + 1]);
          else w.finishing = false;
        });
    };
    attempt(0);
  }

  private settleFromEntry(w: Waiter, entry: HistoryEntry): void {
    this.settle(w, isFailedEntry(entry) ? errorFromEntry(w.promptId, entry) : outcomeFromEntry(w.promptId, entry));
  }

  // ---------------------------------------------------------------- safety-net poll

  private clearPollTimer(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.closed || !this.waiters.size) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      void this.runPoll();
    }, this.pollIntervalMs);
  }

  private pollNow(): void {
    this.clearPollTimer();
    void this.runPoll();
  }

  /** One look per tick, shared by every waiter: one /queue, then /history only for ids not queued. */
  private async runPoll(): Promise<void> {
    if (this.closed) return;
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    try {
      await this.pollOnce();
    } catch (err) {
      this.log.error('comfyui poll failed unexpectedly', { err: String(err) });
    } finally {
      this.polling = false;
      if (this.pollAgain && !this.closed) {
        this.pollAgain = false;
        void this.runPoll();
      } else {
        this.schedulePoll();
      }
    }
  }

  private async pollOnce(): Promise<void> {
    const ids = [...this.waiters.keys()];
    if (!ids.length) return;
    let queue: QueueSnapshot | undefined;
    let failure: Error | undefined;
    try {
      queue = await this.fetchQueue();
    } catch (err) {
      failure = asError(err);
    }
    await Promise.all(
      ids.map(async (id) => {
        let result: PollResult;
        const where = queue ? locationInQueue(queue, id) : undefined;
        if (where === 'running') result = { kind: 'running' };
        else if (where === 'pending') result = { kind: 'pending', ahead: [...queue!.running].sort().join(',') };
        else {
          // History is asked even when /queue failed: an entry there settles the wait on its own.
          // Only "absent" needs both answers before it counts.
          try {
            const entry = await this.fetchHistory(id);
            if (entry) result = { kind: 'entry', entry };
            else result = queue ? { kind: 'absent' } : { kind: 'failed', error: failure ?? new Error('GET /queue gave no answer') };
          } catch (err) {
            result = { kind: 'failed', error: asError(err) };
          }
        }
        if (this.closed) return;
        for (const w of [...(this.waiters.get(id) ?? [])]) this.guard('poll result', () => this.applyPoll(w, result));
      }),
    );
  }

  /**
   * Lost rule: only when the server answered, twice in a row and at least half a poll interval
   * apart, that the id is neither running, pending nor in history. A failed look never counts.
   */
  private applyPoll(w: Waiter, r: PollResult): void {
    if (w.settled) return;
    const now = Date.now();
    if (r.kind === 'failed') {
      w.lastLookFailed = true;
      w.unreachableSince ??= now;
      this.log.debug('comfyui poll failed', { promptId: w.promptId, err: r.error.message });
      if (now - w.unreachableSince >= w.opts.idleTimeoutMs) {
        this.settle(w, new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable for ${now - w.unreachableSince} ms while waiting for prompt ${w.promptId}: ${r.error.message}`));
      }
      return;
    }
    w.lastLookFailed = false;
    w.unreachableSince = undefined;
    if (r.kind !== 'absent') {
      w.absentCount = 0;
      w.absentSince = undefined;
    }
    switch (r.kind) {
      case 'running':
        this.markStarted(w);
        return;
      case 'pending':
        // Queued behind others is alive only while the queue moves: behind a frozen prompt it is
        // as hung as that prompt (a GPU stuck in a node), so the idle clock keeps running.
        if (r.ahead === '' || r.ahead !== w.aheadSeen) {
          w.aheadSeen = r.ahead;
          w.lastAlive = now;
        }
        return;
      case 'entry':
        this.settleFromEntry(w, r.entry);
        return;
      case 'absent':
        w.absentCount++;
        w.absentSince ??= now;
        this.log.debug('comfyui prompt not found on the server', { promptId: w.promptId, times: w.absentCount });
        if (w.absentCount >= 2 && now - w.absentSince >= this.pollIntervalMs / 2) this.settle(w, new PromptLostError(w.promptId));
        return;
    }
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

  private guard(where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error(`comfyui ${where} handler failed`, { err: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
