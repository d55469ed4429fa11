import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';

type Middleware = (req: Request, res: Response, next: NextFunction) => void;

const LIVE_PATH = '/health/live';
const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The headers a middleware chain sets on every answer that does not depend on the request (helmet's
 * security headers): run once against a stand-in response and kept, so a request that skips the
 * chain still carries exactly them. Throws when a middleware does not finish synchronously.
 */
export function staticHeadersOf(middlewares: Middleware[], path: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const res = {
    setHeader: (name: string, value: string | number | string[]) => void (headers[name.toLowerCase()] = value),
    getHeader: (name: string) => headers[name.toLowerCase()],
    removeHeader: (name: string) => void delete headers[name.toLowerCase()],
    locals: {},
  } as unknown as Response;
  const req = { method: 'GET', url: path, path, headers: {}, secure: false } as unknown as Request;
  for (const mw of middlewares) {
    let called = false;
    mw(req, res, (err?: unknown) => {
      if (err) throw err;
      called = true;
    });
    if (!called) throw new Error('a middleware did not call next() synchronously: its headers cannot be precomputed');
  }
  return headers;
}

/**
 * `GET /health/live` answered by the HTTP server itself, before Express and Nest: liveness must
 * stay cheap when the process is busiest (load balancers probe it under load, and a slow answer
 * gets a healthy instance restarted). The answer is the controller's (`{status, uptime_s}`, no-store)
 * with the same security headers and request id as every other route; any other method or path,
 * or a query string, goes through the application as before. `observe` keeps the probe in the HTTP
 * metrics; the request log skips probes anyway, so nothing is lost by the shortcut.
 */
export function installLivenessFastPath(server: Server, securityHeaders: OutgoingHttpHeaders, observe?: (status: number, seconds: number) => void): void {
  const fixed: OutgoingHttpHeaders = { ...securityHeaders, 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8' };
  const app = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  if (app.length !== 1) throw new Error(`expected the application as the only request listener, found ${app.length}`);
  const [handle] = app;
  server.removeListener('request', handle);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== LIVE_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) return handle(req, res);
    const started = observe && process.hrtime.bigint();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && SAFE_ID.test(given) ? given : randomUUID();
    const body = `{"status":"ok","uptime_s":${Math.round(process.uptime())}}`;
    res.writeHead(200, { ...fixed, 'x-request-id': id, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
    if (started) observe(200, Number(process.hrtime.bigint() - started) / 1e9);
  });
}
