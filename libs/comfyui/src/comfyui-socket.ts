import WebSocket from 'ws';
import type { ConnectionState } from './comfyui.types';
import { decodeBinaryFrame, decodeTextFrame, type ComfyFrame } from './ws-frames';

export interface ComfyUiLogger {
  debug(msg: string, ctx?: object): void;
  info(msg: string, ctx?: object): void;
  warn(msg: string, ctx?: object): void;
  error(msg: string, ctx?: object): void;
}

export interface ReconnectPolicy {
  /** First retry delay. */
  baseMs: number;
  /** Cap of the exponential backoff. */
  maxMs: number;
  /** 0..1: each delay is spread by ±jitter of itself so many workers do not reconnect in step. */
  jitter: number;
  /** A connection that stayed open this long resets the backoff. */
  stableMs: number;
}

export interface ComfySocketOptions {
  url: string;
  headers?: Record<string, string>;
  handshakeTimeoutMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  reconnect: ReconnectPolicy;
  log: ComfyUiLogger;
  /** Every decoded frame; must not throw (it is called inside the ws listener anyway guarded). */
  onFrame(frame: ComfyFrame): void;
  /** The socket is open; `reconnected` is true from the second open on. */
  onOpen(reconnected: boolean): void;
}

/** Upgrade answers where retrying soon cannot help (wrong path, auth): wait the full cap. */
const HOPELESS_UPGRADE = /Unexpected server response: (401|403|404)\b/;

/**
 * The WebSocket half of one ComfyUI server: exactly one socket and one reconnect loop.
 *
 * Rules (see the pitfalls doc, items 4, 11, 12, 13, 18):
 * - a new socket is opened only after the previous one has emitted `close`, because ComfyUI's
 *   handler for the old socket unregisters the client id when it exits (ComfyUI #16010);
 * - retries never stop, with capped exponential backoff and jitter, reset after a stable period;
 * - liveness is our own ping/pong; silence is normal (model loads emit nothing);
 * - after stop() nothing is scheduled again and every timer is cleared.
 */
export class ComfySocket {
  private current: ConnectionState = 'closed';
  private started = false;
  private stopped = false;
  private ws?: WebSocket;
  private attempt = 0;
  private everOpened = false;
  private openedAt = 0;
  private lastFailure = '';
  private reconnectTimer?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private pongTimer?: NodeJS.Timeout;
  private readonly stateListeners = new Set<(s: ConnectionState) => void>();
  private readonly closeWaiters: Array<() => void> = [];

  constructor(private readonly opts: ComfySocketOptions) {}

  get state(): ConnectionState {
    return this.current;
  }

  /** Subscribe to state changes; returns the unsubscribe function. */
  onState(fn: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.open();
  }

  /** Terminates the socket, cancels the loop and resolves once the socket has emitted `close`. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer('reconnectTimer');
    this.stopHeartbeat();
    const ws = this.ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      let fallback: NodeJS.Timeout | undefined;
      const closed = new Promise<void>((resolve) => {
        this.closeWaiters.push(resolve);
        // terminate() destroys the TCP socket, so `close` follows within a tick; never hang close() on it.
        fallback = setTimeout(resolve, 2000);
      });
      try {
        ws.terminate();
      } catch (err) {
        this.opts.log.debug('comfyui ws terminate failed', { err: String(err) });
      }
      await closed;
      clearTimeout(fallback);
    }
    this.ws = undefined;
    this.setState('closed');
  }

  private open(): void {
    if (this.stopped) return;
    this.setState(this.everOpened ? 'reconnecting' : 'connecting');
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.opts.url, {
        handshakeTimeout: this.opts.handshakeTimeoutMs,
        perMessageDeflate: false,
        headers: this.opts.headers,
      });
    } catch (err) {
      // A malformed URL throws synchronously; retrying cannot fix it but must not crash either.
      this.lastFailure = String(err);
      this.opts.log.error('comfyui ws cannot be created', { url: this.opts.url, err: String(err) });
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.on('open', () => this.guard('open', () => this.handleOpen(ws)));
    ws.on('message', (data, isBinary) => this.guard('message', () => this.handleMessage(data, isBinary)));
    ws.on('pong', () => this.guard('pong', () => this.clearTimer('pongTimer')));
    ws.on('error', (err) =>
      this.guard('error', () => {
        this.lastFailure = err.message;
        this.opts.log.debug('comfyui ws error', { url: this.opts.url, err: err.message });
      }),
    );
    ws.on('close', (code, reason) => this.guard('close', () => this.handleClose(ws, code, reason.toString('utf8'))));
  }

  private handleOpen(ws: WebSocket): void {
    if (ws !== this.ws) return;
    if (this.stopped) {
      ws.terminate();
      return;
    }
    const reconnected = this.everOpened;
    this.everOpened = true;
    this.openedAt = Date.now();
    this.lastFailure = '';
    this.setState('open');
    this.opts.log.info(reconnected ? 'comfyui ws reconnected' : 'comfyui ws open', { url: this.opts.url, attempt: this.attempt });
    // Ask for type-4 previews: they carry prompt_id, so even previews are attributable.
    ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }), (err) => {
      if (err) this.opts.log.debug('comfyui ws feature_flags not sent', { err: err.message });
    });
    this.startHeartbeat(ws);
    this.opts.onOpen(reconnected);
  }

  private handleMessage(data: WebSocket.RawData, isBinary: boolean): void {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    this.opts.onFrame(isBinary ? decodeBinaryFrame(buf) : decodeTextFrame(buf.toString('utf8')));
  }

  private handleClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.stopHeartbeat();
    this.ws = undefined;
    if (this.stopped) {
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    if (this.openedAt && Date.now() - this.openedAt >= this.opts.reconnect.stableMs) this.attempt = 0;
    const wasOpen = this.openedAt > 0;
    this.openedAt = 0;
    if (wasOpen) this.opts.log.warn('comfyui ws closed', { url: this.opts.url, code, reason });
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    this.setState(this.everOpened ? 'reconnecting' : 'connecting');
    const delay = HOPELESS_UPGRADE.test(this.lastFailure) ? this.jittered(this.opts.reconnect.maxMs) : this.nextDelay();
    this.attempt++;
    this.opts.log.debug('comfyui ws retry scheduled', { url: this.opts.url, delayMs: delay, attempt: this.attempt, lastFailure: this.lastFailure });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.guard('reconnect', () => this.open());
    }, delay);
  }

  private nextDelay(): number {
    const { baseMs, maxMs } = this.opts.reconnect;
    // 2^attempt overflows to Infinity long after the cap; Math.min keeps it finite.
    return this.jittered(Math.min(maxMs, baseMs * 2 ** Math.min(this.attempt, 30)));
  }

  private jittered(ms: number): number {
    const j = Math.min(1, Math.max(0, this.opts.reconnect.jitter));
    const spread = ms * j * (Math.random() * 2 - 1);
    return Math.max(0, Math.round(Math.min(this.opts.reconnect.maxMs, ms + spread)));
  }

  private startHeartbeat(ws: WebSocket): void {
    this.stopHeartbeat();
    if (this.opts.pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      this.guard('ping', () => {
        if (ws !== this.ws || ws.readyState !== WebSocket.OPEN || this.pongTimer) return;
        // Our ping is not activity: only the pong (or its absence) says anything.
        this.pongTimer = setTimeout(() => {
          this.pongTimer = undefined;
          this.guard('pong-timeout', () => {
            if (ws !== this.ws) return;
            this.opts.log.warn('comfyui ws: no pong, terminating', { url: this.opts.url, pongTimeoutMs: this.opts.pongTimeoutMs });
            ws.terminate();
          });
        }, this.opts.pongTimeoutMs);
        ws.ping();
      });
    }, this.opts.pingIntervalMs);
  }

  private stopHeartbeat(): void {
    this.clearTimer('pingTimer');
    this.clearTimer('pongTimer');
  }

  private clearTimer(name: 'reconnectTimer' | 'pingTimer' | 'pongTimer'): void {
    const t = this[name];
    if (t) {
      clearTimeout(t);
      this[name] = undefined;
    }
  }

  private setState(s: ConnectionState): void {
    if (this.current === s) return;
    this.current = s;
    for (const fn of [...this.stateListeners]) this.guard('state listener', () => fn(s));
  }

  /** Every listener body goes through here: a throw inside a ws callback would crash the process. */
  private guard(where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.opts.log.error(`comfyui ws ${where} handler failed`, { err: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
  }
}
