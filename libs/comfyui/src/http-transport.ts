import axios, { type AxiosError } from 'axios';
import * as http from 'node:http';
import * as https from 'node:https';
import { ClientClosedError, ComfyAbortError, ComfyHttpError, ComfyUnavailableError } from './comfyui.errors';
import { parseJson } from './history';

export interface RawResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON (HTML from a proxy, empty 200…). */
  json: unknown;
}

export interface RequestOptions {
  query?: Record<string, string>;
  /** Sent as application/json. */
  json?: unknown;
  /** A raw body with its content type (multipart uploads). */
  body?: { data: Buffer; contentType: string };
  signal?: AbortSignal;
  timeoutMs?: number;
  headers?: Record<string, string>;
  /**
   * The body is binary (an image), fetched with a GET: read straight off the socket with Node's
   * own http client (axios costs a few ms more per megabyte), and on a 2xx kept as that Buffer,
   * never decoded as text or tried as JSON (`text` is '' and `json` undefined). Error answers still are.
   */
  binary?: boolean;
  /**
   * Maps a failure with no HTTP answer (refused, reset, cut body, timeout). Default:
   * ComfyUnavailableError. `code` is the Node/axios error code when there is one.
   */
  onNetworkError?: (what: string, code: string | undefined, message: string) => Error;
}

type AbortWhy = { kind: 'timeout'; ms: number } | { kind: 'caller'; reason: unknown } | { kind: 'closed' };

/** Codes that mean "no server there" rather than "the server broke the answer off". */
export const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/**
 * The HTTP half of one ComfyUI server: every call has a timeout and honours an AbortSignal, no
 * answer is parsed without a guard, and close() aborts whatever is still in flight and drops the
 * keep-alive sockets (so no handle outlives the client).
 */
export class HttpTransport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly inFlight = new Set<(why: AbortWhy) => void>();
  private closed = false;

  constructor(
    /** Absolute base URL ending in `/` (path prefix included). */
    private readonly base: string,
    private readonly defaultTimeoutMs: number,
    private readonly headers: Record<string, string> = {},
  ) {}

  url(path: string, query?: Record<string, string>): string {
    const u = new URL(path.replace(/^\/+/, ''), this.base);
    if (query) u.search = new URLSearchParams(query).toString();
    return u.toString();
  }

  async request(method: 'GET' | 'POST', path: string, opts: RequestOptions = {}): Promise<RawResponse> {
    const what = `${method} /${path.replace(/^\/+/, '')}`;
    if (this.closed) throw new ClientClosedError();
    if (opts.signal?.aborted) throw new ComfyAbortError(opts.signal.reason);

    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const controller = new AbortController();
    let why: AbortWhy | undefined;
    const abort = (w: AbortWhy) => {
      if (why) return;
      why = w;
      controller.abort();
    };
    const timer = setTimeout(() => abort({ kind: 'timeout', ms: timeoutMs }), timeoutMs);
    const onCallerAbort = () => abort({ kind: 'caller', reason: opts.signal?.reason });
    opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
    this.inFlight.add(abort);

    const headers: Record<string, string> = { accept: 'application/json', ...this.headers, ...opts.headers };
    let data: string | Buffer | undefined;
    if (opts.json !== undefined) {
      data = JSON.stringify(opts.json);
      headers['content-type'] = 'application/json';
    } else if (opts.body) {
      data = opts.body.data;
      headers['content-type'] = opts.body.contentType;
    }

    try {
      if (opts.binary && method === 'GET' && opts.json === undefined && !opts.body) {
        const res = await this.getRaw(this.url(path, opts.query), headers, controller.signal);
        if (res.status >= 200 && res.status < 300) return { ...res, text: '', json: undefined };
        const text = res.body.toString('utf8');
        return { ...res, text, json: parseJson(text) };
      }
      const res = await axios.request<Buffer>({
        url: this.url(path, opts.query),
        method,
        data,
        headers,
        signal: controller.signal,
        responseType: 'arraybuffer',
        // Bodies are decoded by us, with a guard; axios must not try JSON on HTML error pages.
        transformResponse: [(d: unknown) => d],
        validateStatus: () => true,
        maxRedirects: 0,
        // ComfyUI sits on localhost or a private network; an HTTP(S)_PROXY meant for the internet must not capture it.
        proxy: false,
        maxContentLength: -1,
        maxBodyLength: -1,
        httpAgent: this.httpAgent,
        httpsAgent: this.httpsAgent,
      });
      const body = Buffer.isBuffer(res.data) ? res.data : Buffer.from((res.data as unknown as ArrayBuffer | undefined) ?? new ArrayBuffer(0));
      const out: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(res.headers ?? {})) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v == null ? undefined : String(v);
      // A 1.4 MB image decoded as UTF-8 and tried as JSON costs milliseconds on every job: not for binary bodies.
      if (opts.binary && res.status >= 200 && res.status < 300) return { status: res.status, headers: out, body, text: '', json: undefined };
      const text = body.toString('utf8');
      return { status: res.status, headers: out, body, text, json: parseJson(text) };
    } catch (err) {
      throw this.mapFailure(what, err, why, opts);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onCallerAbort);
      this.inFlight.delete(abort);
    }
  }

  /**
   * One GET with Node's http(s) client on the same keep-alive agents: status, headers and the body
   * as one Buffer. Rejects on a connection failure or a body cut short (the caller maps both).
   */
  private getRaw(url: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ status: number; headers: Record<string, string | undefined>; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const mod = u.protocol === 'https:' ? https : http;
      const req = mod.request(u, { method: 'GET', headers, agent: u.protocol === 'https:' ? this.httpsAgent : this.httpAgent, signal }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          chunks.push(d);
          size += d.length;
        });
        res.once('end', () => {
          const out: Record<string, string | undefined> = {};
          for (const [k, v] of Object.entries(res.headers)) out[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve({ status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks, size) });
        });
        res.once('aborted', () => reject(Object.assign(new Error('the response was cut short'), { code: 'ECONNRESET' })));
        res.once('error', reject);
      });
      req.once('error', reject);
      req.end();
    });
  }

  /** Aborts every call in flight with ClientClosedError and closes idle keep-alive sockets. */
  close(): void {
    this.closed = true;
    for (const abort of [...this.inFlight]) abort({ kind: 'closed' });
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private mapFailure(what: string, err: unknown, why: AbortWhy | undefined, opts: RequestOptions): Error {
    if (why?.kind === 'closed' || (this.closed && !why)) return new ClientClosedError();
    if (why?.kind === 'caller') return new ComfyAbortError(why.reason);
    if (why?.kind === 'timeout') {
      const msg = `${what} timed out after ${why.ms} ms`;
      return opts.onNetworkError ? opts.onNetworkError(what, 'ETIMEDOUT', msg) : new ComfyUnavailableError(`ComfyUI ${msg}`);
    }
    const e = err as Partial<AxiosError> & { cause?: { code?: string } };
    const code = typeof e?.code === 'string' ? e.code : e?.cause?.code;
    const message = err instanceof Error ? err.message : String(err);
    if (opts.onNetworkError) return opts.onNetworkError(what, code, message);
    return new ComfyUnavailableError(`ComfyUI ${what} failed: ${code ?? ''} ${message}`.replace(/\s+/g, ' ').trim());
  }
}

/** Non-2xx answer → domain error: 5xx is "unavailable" (retry later), anything else keeps status and raw text. */
export function statusError(what: string, res: RawResponse): Error {
  if (res.status >= 500) return new ComfyUnavailableError(`ComfyUI ${what} answered HTTP ${res.status}: ${snippet(res.text)}`, res.status);
  return new ComfyHttpError(res.status, res.text.slice(0, 4000), res.json);
}

export function snippet(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
