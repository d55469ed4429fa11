import type { NextFunction, Request, Response } from 'express';
import { adminAuth, presentedSecret, presentsAdminToken } from './admin-auth';

const TOKEN = 'admin-token-0123456789';

function run(header?: string): { passed: boolean; status?: number; challenge?: string } {
  const req = { header: (n: string) => (n.toLowerCase() === 'authorization' ? header : undefined), id: 'r1' } as unknown as Request & { id?: string };
  let status: number | undefined;
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (k: string, v: string) => (headers[k] = v),
    status: (s: number) => {
      status = s;
      return res;
    },
    json: () => res,
  } as unknown as Response;
  let passed = false;
  adminAuth(TOKEN)(req, res, (() => (passed = true)) as NextFunction);
  return { passed, status, challenge: headers['WWW-Authenticate'] };
}

describe('admin auth', () => {
  it('reads a Bearer token or the basic-auth password', () => {
    expect(presentedSecret(`Bearer ${TOKEN}`)).toBe(TOKEN);
    expect(presentedSecret(`Basic ${Buffer.from(`ops:${TOKEN}`).toString('base64')}`)).toBe(TOKEN);
    expect(presentedSecret('Basic bm9jb2xvbg==')).toBeUndefined();
    expect(presentedSecret('Token abc')).toBeUndefined();
    expect(presentedSecret(undefined)).toBeUndefined();
  });

  it('lets the right token through, in either form', () => {
    expect(run(`Bearer ${TOKEN}`).passed).toBe(true);
    expect(run(`Basic ${Buffer.from(`anyone:${TOKEN}`).toString('base64')}`).passed).toBe(true);
  });

  it('answers 401 with a basic-auth challenge otherwise', () => {
    for (const h of [undefined, 'Bearer wrong', `Bearer ${TOKEN}x`, `Basic ${Buffer.from('ops:nope').toString('base64')}`]) {
      const r = run(h);
      expect(r).toMatchObject({ passed: false, status: 401 });
      expect(r.challenge).toContain('Basic realm=');
    }
  });

  it('presentsAdminToken: true only for the configured token, never without one', () => {
    expect(presentsAdminToken(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(presentsAdminToken(`Bearer ${TOKEN}`, `${TOKEN}x`)).toBe(false);
    expect(presentsAdminToken(undefined, TOKEN)).toBe(false);
    expect(presentsAdminToken('Bearer ', undefined)).toBe(false);
    expect(presentsAdminToken(`Bearer ${TOKEN}`, undefined)).toBe(false);
  });
});
