import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import request from 'supertest';
import { securityHeaders, staticHeadersOf } from '../security/http-hardening';
import { installLivenessFastPath } from './liveness-fast-path';

describe('liveness fast path', () => {
  let server: Server;
  let url: string;
  let appHits: string[];
  const observed: Array<[number, number]> = [];

  beforeAll(async () => {
    appHits = [];
    const app = express();
    const helmet = securityHeaders();
    app.use(helmet);
    app.use((req, res) => {
      appHits.push(`${req.method} ${req.url}`);
      res.setHeader('Cache-Control', 'no-store');
      res.json({ via: 'app' });
    });
    server = createServer(app);
    installLivenessFastPath(server, staticHeadersOf([helmet], '/health/live'), (status, seconds) => observed.push([status, seconds]));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  it('answers GET /health/live without the application, with the same security headers as the application', async () => {
    const live = await request(url).get('/health/live').set('X-Request-Id', 'probe-1').expect(200);
    expect(live.body).toEqual({ status: 'ok', uptime_s: expect.any(Number) });
    expect(live.headers['x-request-id']).toBe('probe-1');
    expect(live.headers['cache-control']).toBe('no-store');
    expect(live.headers['content-type']).toBe('application/json; charset=utf-8');
    const viaApp = await request(url).get('/other').expect(200);
    expect(viaApp.body).toEqual({ via: 'app' });
    expect(appHits).toEqual(['GET /other']);
    const security = (h: Record<string, string>) =>
      Object.fromEntries(Object.entries(h).filter(([k]) => /^(content-security-policy|strict-transport|x-|cross-origin|referrer|origin-agent)/.test(k) && k !== 'x-request-id'));
    expect(Object.keys(security(live.headers)).length).toBeGreaterThanOrEqual(8);
    expect(security(live.headers)).toEqual(security(viaApp.headers));
    expect(observed.at(-1)?.[0]).toBe(200);
  });

  it('makes a request id when none or an unsafe one is given; HEAD has no body', async () => {
    const made = await request(url).get('/health/live').set('X-Request-Id', 'bad id with spaces').expect(200);
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const head = await request(url).head('/health/live').expect(200);
    expect(head.text ?? '').toBe('');
  });

  it('leaves other methods, paths and query strings to the application', async () => {
    appHits.length = 0;
    await request(url).post('/health/live').expect(200);
    await request(url).get('/health/live?verbose=1').expect(200);
    await request(url).get('/health/lives').expect(200);
    expect(appHits).toEqual(['POST /health/live', 'GET /health/live?verbose=1', 'GET /health/lives']);
  });

  it('refuses to precompute headers from a middleware that does not finish at once', () => {
    expect(() => staticHeadersOf([() => undefined], '/health/live')).toThrow(/synchronously/);
  });
});
