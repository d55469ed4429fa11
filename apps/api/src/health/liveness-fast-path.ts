import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';

const LIVE_PATH = '/health/live';
const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

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
