import { pino, type LoggerOptions } from 'pino';

/** Headers and fields that never reach a log line, whoever logs them. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  '*.api_key',
  '*.apiKey',
  '*.secret',
  '*.webhook_secret',
  '*.password',
  '*.token',
];

const PROMPT_KEYS = ['prompt', 'negative_prompt'] as const;
const DEBUG = 20;

/**
 * Above debug, prompt text is replaced by its length (prompts are user content, often personal).
 * Looks at the logged object and one level below it (e.g. `params.prompt`); returns a copy.
 */
export function scrubPrompts(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  const scrub = (o: Record<string, unknown>): Record<string, unknown> | undefined => {
    let copy: Record<string, unknown> | undefined;
    for (const k of PROMPT_KEYS) {
      const v = o[k];
      if (typeof v !== 'string') continue;
      copy ??= { ...o };
      delete copy[k];
      copy[`${k}_length`] = v.length;
    }
    return copy;
  };
  const top = scrub(obj);
  if (top) out = top;
  for (const [k, v] of Object.entries(obj)) {
    if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Error) continue;
    const inner = scrub(v as Record<string, unknown>);
    if (inner) (out ??= { ...obj })[k] = inner;
  }
  return out ?? obj;
}

/**
 * pino options shared by the API and the worker: JSON lines with an ISO time and a textual level,
 * the service name, redaction, and prompts by length unless the level is debug or finer.
 */
export function baseLogOptions(service: string, level: string): LoggerOptions {
  return {
    level,
    base: { service, pid: process.pid },
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    hooks: {
      logMethod(args, method, lvl) {
        const first: unknown = args[0];
        if (first && typeof first === 'object' && !(first instanceof Error)) {
          let obj = first as Record<string, unknown>;
          if (lvl > DEBUG) obj = scrubPrompts(obj);
          // Inside a request the logger already carries request_id; callers that add it too would repeat the key.
          if ('request_id' in obj && this.bindings().request_id === obj.request_id) {
            const { request_id: _dup, ...rest } = obj;
            obj = rest;
          }
          return (method as (...a: unknown[]) => void).apply(this, [obj, ...(args.slice(1) as unknown[])]);
        }
        return (method as (...a: unknown[]) => void).apply(this, args as unknown[]);
      },
    },
  };
}
