import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';

/** Probes and scrapes come every few seconds from every balancer: not worth a line each. */
export const QUIET_PATHS = /^\/(health(\/(live|ready))?|metrics)\/?(\?|$)/;

const ENDS = ['finish', 'close', 'error'] as const;

type LoggedRequest = IncomingMessage & { id?: string; originalUrl?: string; log?: Logger };

/** 500 is a bug or an outage; 502/503/504 are answers the API chose (job failed, Redis away, sync timeout). */
export function requestLogLevel(status: number, err?: Error): 'info' | 'warn' | 'error' {
  return err || status === 500 || status > 504 ? 'error' : status >= 500 ? 'warn' : 'info';
}

/**
 * One JSON line per request, when its answer has gone out (or the connection closed first):
 * `request_id`, `req` (method, url, remote address, headers: credentials redacted by the logger),
 * `res.status_code` and `duration_ms`, at the level requestLogLevel gives. `req.log` is the
 * request's own child logger (request_id bound), which nestjs-pino hands to every Nest Logger call
 * made while serving it. The same fields as pino-http gave, at a fraction of its cost per request
 * (two child loggers and serializer wrappers per request there; one child here).
 */
export function requestLogMiddleware(root: Logger) {
  return (req: LoggedRequest, res: ServerResponse, next: () => void): void => {
    // request-id.middleware has set req.id (from X-Request-Id or new) before this runs.
    const log = root.child({ request_id: req.id });
    req.log = log;
    if (QUIET_PATHS.test(req.url ?? '')) return next();
    const started = Date.now();
    // One listener for the three ends ('finish' and 'close' pass nothing, 'error' its error), gone after the first.
    const done = (err?: Error) => {
      for (const event of ENDS) res.off(event, done);
      const status = res.statusCode;
      const level = requestLogLevel(status, err);
      const line: Record<string, unknown> = {
        req: { method: req.method, url: req.originalUrl ?? req.url, remote_address: req.socket?.remoteAddress, headers: req.headers },
        res: { status_code: status },
        duration_ms: Date.now() - started,
      };
      // A thrown error is kept on the line; a 5xx the API chose to answer needs none.
      if (err) line.err = err;
      const msg = err || status >= 500 ? 'request errored' : res.writableEnded ? 'request completed' : 'request aborted';
      log[level](line, msg);
    };
    for (const event of ENDS) res.on(event, done);
    next();
  };
}
