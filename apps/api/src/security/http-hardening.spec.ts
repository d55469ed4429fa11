import express from 'express';
import helmet from 'helmet';
import request from 'supertest';
import { corsOptions, rejectPrototypeKeys, securityHeaders, staticHeadersOf } from './http-hardening';

describe('http hardening', () => {
  it('refuses prototype keys at any depth while parsing, and only those', () => {
    const parse = (s: string) => JSON.parse(s, rejectPrototypeKeys) as unknown;
    expect(() => parse('{"__proto__":{"x":1}}')).toThrow(/not allowed/);
    expect(() => parse('{"a":{"b":[{"constructor":1}]}}')).toThrow(/not allowed/);
    expect(parse('{"prompt":"__proto__ constructor","prototype":"v2"}')).toEqual({ prompt: '__proto__ constructor', prototype: 'v2' });
  });

  it('never allows credentials; "*" alone means any origin, otherwise an exact list', () => {
    expect(corsOptions(['*'])).toMatchObject({ origin: '*', credentials: false });
    expect(corsOptions(['https://a.example', 'https://b.example'])).toMatchObject({ origin: ['https://a.example', 'https://b.example'], credentials: false });
  });

  it("API answers carry helmet's headers, set from a list computed once; the docs pages get their own policy", async () => {
    const app = express();
    app.enable('x-powered-by');
    app.use(securityHeaders());
    app.get(['/api/v1/x', '/docs'], (_req, res) => res.json({ ok: true }));
    const a = await request(app).get('/api/v1/x').expect(200);
    const b = await request(app).get('/api/v1/x').expect(200);
    const docs = await request(app).get('/docs').expect(200);
    expect(a.headers['content-security-policy']).toBe("default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'");
    expect(a.headers).toMatchObject({
      'x-content-type-options': 'nosniff', 'cross-origin-resource-policy': 'same-site', 'x-frame-options': 'SAMEORIGIN', 'referrer-policy': 'no-referrer',
    });
    expect(a.headers['strict-transport-security']).toMatch(/^max-age=\d+/);
    expect(a.headers['x-powered-by']).toBeUndefined();
    const security = (h: Record<string, string>) => Object.fromEntries(Object.entries(h).filter(([k]) => !['date', 'etag', 'content-length', 'connection', 'keep-alive'].includes(k)));
    expect(security(b.headers)).toEqual(security(a.headers));
    expect(docs.headers['content-security-policy']).toContain("script-src 'self'");
    // The same headers as running helmet itself would set.
    const direct = staticHeadersOf([helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] } },
      crossOriginResourcePolicy: { policy: 'same-site' },
    })], '/api/v1/x');
    for (const [k, v] of Object.entries(direct)) expect({ [k]: a.headers[k] }).toEqual({ [k]: String(v) });
  });
});
