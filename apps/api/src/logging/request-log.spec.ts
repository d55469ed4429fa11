import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { baseLogOptions } from '@app/health';
import { requestLogLevel, requestLogMiddleware } from './request-log';

/** A root logger writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, root: pino(baseLogOptions('api', 'info'), stream) };
}

function exchange(url: string, headers: Record<string, string> = {}) {
  const req = Object.assign(new EventEmitter(), { id: 'rid-1', method: 'GET', url, originalUrl: url, headers, socket: { remoteAddress: '127.0.0.1' } }) as unknown as IncomingMessage & { id?: string; log?: Logger };
  const res = Object.assign(new EventEmitter(), { statusCode: 200, writableEnded: false }) as unknown as ServerResponse & { writableEnded: boolean };
  return { req, res };
}

describe('requestLogMiddleware', () => {
  it('one line when the answer is out: request_id, req (credentials redacted), res, duration; req.log carries request_id', () => {
    const { lines, root } = capture();
    const { req, res } = exchange('/api/v1/models', { authorization: 'Bearer sk_secret', 'user-agent': 't' });
    let nexted = false;
    requestLogMiddleware(root)(req, res, () => void (nexted = true));
    expect(nexted).toBe(true);
    req.log?.info({ context: 'X' }, 'inside');
    (res as unknown as { writableEnded: boolean }).writableEnded = true;
    res.emit('finish');
    res.emit('close'); // once only
    expect(lines.map((l) => l.msg)).toEqual(['inside', 'request completed']);
    expect(lines[0]).toMatchObject({ request_id: 'rid-1', context: 'X' });
    expect(lines[1]).toMatchObject({
      level: 'info', service: 'api', request_id: 'rid-1',
      req: { method: 'GET', url: '/api/v1/models', remote_address: '127.0.0.1', headers: { authorization: '[redacted]', 'user-agent': 't' } },
      res: { status_code: 200 },
    });
    expect(typeof lines[1].duration_ms).toBe('number');
  });

  it('5xx and errors are logged as errored at their level; a closed connection as aborted; probes not at all', () => {
    const { lines, root } = capture();
    const mw = requestLogMiddleware(root);
    const a = exchange('/api/v1/images/generate');
    mw(a.req, a.res, () => undefined);
    a.res.statusCode = 503;
    a.res.emit('finish');
    const b = exchange('/api/v1/images/jobs');
    mw(b.req, b.res, () => undefined);
    b.res.emit('close');
    const c = exchange('/api/v1/x');
    mw(c.req, c.res, () => undefined);
    c.res.emit('error', new Error('socket broke'));
    const d = exchange('/health/ready');
    mw(d.req, d.res, () => undefined);
    d.res.emit('finish');
    expect(lines.map((l) => [l.msg, l.level])).toEqual([['request errored', 'warn'], ['request aborted', 'info'], ['request errored', 'error']]);
    expect(lines[0].err).toBeUndefined();
    expect(lines[2].err).toMatchObject({ message: 'socket broke' });
  });

  it('levels: 500 and above 504 are errors, 502–504 warnings, the rest info', () => {
    expect([200, 404, 500, 502, 503, 504, 507].map((s) => requestLogLevel(s))).toEqual(['info', 'info', 'error', 'warn', 'warn', 'warn', 'error']);
    expect(requestLogLevel(200, new Error('x'))).toBe('error');
  });
});
