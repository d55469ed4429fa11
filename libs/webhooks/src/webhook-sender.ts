import type { ClientRequest } from 'node:http';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import axios from 'axios';
import { BLOCKED_DESTINATION, parseWebhookTarget, type GuardedAgents } from './ssrf-guard';
import { webhookHeaders } from './webhook-signer';

/**
 * delivered: 2xx. retry: try again later (per schedule, or not before retryAfterMs).
 * gone: 410, stop for good and disable the endpoint. blocked: the destination is not allowed;
 * permanent, since a retry must never turn it into a success.
 */
export type DeliveryOutcome = 'delivered' | 'retry' | 'gone' | 'blocked';

/** One attempt, as the delivery log keeps it. Never carries the full response. */
export interface DeliveryAttempt {
  outcome: DeliveryOutcome;
  status?: number;
  /** Short class: timeout, connection_refused, connection_reset, dns_failure, tls_error, blocked_destination, invalid_url, redirect, http_500, … */
  error?: string;
  /** From Retry-After (seconds or HTTP-date) on 429/503. */
  retryAfterMs?: number;
  durationMs: number;
  /** At most RESPONSE_SNIPPET_BYTES of the response body, decoded as UTF-8. */
  responseSnippet?: string;
  /** Response body bytes read, at most maxResponseBytes. */
  responseBytes?: number;
}

export interface SendWebhookInput {
  url: string;
  webhookId: string;
  /** The serialised event: these exact bytes are signed and sent. */
  body: string;
  secret: string;
  /** Hard deadline for the whole attempt: lookup, connect, TLS, headers and body. */
  timeoutMs: number;
  maxResponseBytes?: number;
  agents: GuardedAgents;
  /** Epoch ms, for the signature timestamp and HTTP-date Retry-After. */
  now?: () => number;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024;
export const RESPONSE_SNIPPET_BYTES = 1024;

/** Retry-After as a delay in ms: delta-seconds or an HTTP-date (a past date gives 0). Undefined if unreadable. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // HTTP-dates start with a day name; Date.parse alone would take "1.5" or "-5" for dates.
  if (!/^[A-Za-z]{3,9},?\s/.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Walks the error and its causes for the first errno-like code. */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return codes;
}

const CODE_CLASSES: [RegExp, string][] = [
  [/^(ECONNABORTED|ETIMEDOUT|ERR_CANCELED)$/, 'timeout'],
  [/^ECONNREFUSED$/, 'connection_refused'],
  [/^(ECONNRESET|EPIPE|ERR_STREAM_PREMATURE_CLOSE)$/, 'connection_reset'],
  [/^(ENOTFOUND|EAI_AGAIN|EAI_FAIL|EAI_NONAME|ENODATA)$/, 'dns_failure'],
  [/^(EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|ENETDOWN)$/, 'unreachable'],
  [/^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/, 'tls_error'],
  [/^HPE_/, 'protocol_error'],
];

function classifyError(err: unknown, deadlinePassed: boolean): string {
  const codes = errorCodes(err);
  if (codes.includes(BLOCKED_DESTINATION)) return BLOCKED_DESTINATION;
  if (deadlinePassed) return 'timeout';
  for (const code of codes) {
    for (const [re, cls] of CODE_CLASSES) if (re.test(code)) return cls;
  }
  return 'network_error';
}

/** Reads at most `max` bytes, then destroys the stream. Resolves on end, error, close or abort. */
function readAtMost(stream: Readable, max: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', finish);
      if (!stream.destroyed) stream.destroy();
      resolve(Buffer.concat(chunks, total));
    };
    stream.on('data', (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const take = Math.min(buf.length, max - total);
      if (take > 0) {
        chunks.push(take === buf.length ? buf : buf.subarray(0, take));
        total += take;
      }
      if (total >= max) finish();
    });
    stream.once('end', finish);
    // `on`, not `once`: axios may emit a second error while aborting, and an unheard one would crash.
    stream.on('error', finish);
    stream.once('close', finish);
    if (signal.aborted) finish();
    else signal.addEventListener('abort', finish, { once: true });
  });
}

function snippet(body: Buffer): string | undefined {
  if (body.length === 0) return undefined;
  // StringDecoder holds back a multi-byte character cut at the end instead of mangling it.
  return new StringDecoder('utf8').write(body.subarray(0, RESPONSE_SNIPPET_BYTES));
}

function outcomeOf(status: number): Pick<DeliveryAttempt, 'outcome' | 'error'> {
  if (status >= 200 && status < 300) return { outcome: 'delivered' };
  // Never followed: a redirect could point anywhere, including at what the guard protects.
  if (status >= 300 && status < 400) return { outcome: 'retry', error: 'redirect' };
  if (status === 410) return { outcome: 'gone', error: 'http_410' };
  return { outcome: 'retry', error: `http_${status}` };
}

/**
 * One delivery attempt. Never throws for anything the network or the receiver does; the result
 * says what to do next. Each call signs with a fresh timestamp; the caller keeps webhookId stable.
 */
export async function sendWebhook(input: SendWebhookInput): Promise<DeliveryAttempt> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const now = input.now ?? Date.now;
  const maxBytes = input.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;

  // Registration checked the URL already; check again so a bad stored URL can never be sent
  // (axios would turn userinfo into an Authorization header and reject other schemes less clearly).
  if (!parseWebhookTarget(input.url)) return { outcome: 'blocked', error: 'invalid_url', durationMs: elapsed() };

  const headers = webhookHeaders(input.secret, input.webhookId, Math.floor(now() / 1000), input.body);
  const controller = new AbortController();
  let deadlinePassed = false;
  const deadline = setTimeout(() => {
    deadlinePassed = true;
    controller.abort();
  }, input.timeoutMs);

  try {
    const res = await axios.request<Readable>({
      method: 'POST',
      url: input.url,
      headers: { ...headers },
      // A Buffer and no transform: axios would otherwise trim or re-encode a string body,
      // and the receiver would see other bytes than were signed.
      data: Buffer.from(input.body, 'utf8'),
      transformRequest: [(data: unknown) => data],
      maxRedirects: 0,
      proxy: false,
      validateStatus: () => true,
      httpAgent: input.agents.httpAgent,
      httpsAgent: input.agents.httpsAgent,
      timeout: input.timeoutMs,
      signal: controller.signal,
      responseType: 'stream',
      maxContentLength: -1,
    });
    const body = await readAtMost(res.data, maxBytes, controller.signal);
    (res.request as ClientRequest | undefined)?.destroy?.();

    const status = res.status;
    const attempt: DeliveryAttempt = { ...outcomeOf(status), status, durationMs: elapsed(), responseBytes: body.length };
    const text = snippet(body);
    if (text !== undefined) attempt.responseSnippet = text;
    if (status === 429 || status === 503) {
      const header = res.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(typeof header === 'string' ? header : undefined, now());
      if (retryAfterMs !== undefined) attempt.retryAfterMs = retryAfterMs;
    }
    return attempt;
  } catch (err) {
    const error = classifyError(err, deadlinePassed);
    return { outcome: error === BLOCKED_DESTINATION ? 'blocked' : 'retry', error, durationMs: elapsed() };
  } finally {
    clearTimeout(deadline);
  }
}
