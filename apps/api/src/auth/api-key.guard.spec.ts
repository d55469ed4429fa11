import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { loadEnv } from '@app/config';
import { ApiKeyGuard } from './api-key.guard';
import type { ApiKeyRecord, ApiKeyStore } from './api-key.store';
import type { AuthenticatedRequest } from './auth.types';

const KEY = 'fk_' + 'A'.repeat(43);
const record: ApiKeyRecord = { id: 'key_1', name: 'web', prefix: 'fk_AAAAAAA', created_at: '2026-01-01T00:00:00Z', revoked_at: null, max_jobs: 3, priority: 10 };

function fakeStore(opts: { exists: boolean }): ApiKeyStore {
  return {
    anyKeyExists: async () => opts.exists,
    list: async () => (opts.exists ? [record] : []),
    verify: async (key: string) => (key === KEY ? record : undefined),
  } as unknown as ApiKeyStore;
}

function context(path: string, headers: Record<string, string> = {}): { ctx: ExecutionContext; req: AuthenticatedRequest } {
  const req = { path, headers } as unknown as AuthenticatedRequest;
  class SomeController {}
  const ctx = {
    getType: () => 'http',
    getHandler: () => function handler() {},
    getClass: () => SomeController,
    switchToHttp: () => ({ getRequest: () => req }),
  } as unknown as ExecutionContext;
  return { ctx, req };
}

describe('ApiKeyGuard', () => {
  const env = loadEnv({}, { RATE_LIMIT_SUBMIT_PER_MINUTE: 50 });

  it('runs open while no key exists', async () => {
    const guard = new ApiKeyGuard(env, fakeStore({ exists: false }), new Reflector());
    await guard.onApplicationBootstrap();
    const { ctx, req } = context('/api/v1/models');
    await expect(guard.canActivate(ctx)).resolves.toBe(true);
    expect(req.caller).toBeUndefined();
  });

  it('requires a key once one exists, and describes the caller for the routes and limits', async () => {
    const guard = new ApiKeyGuard(env, fakeStore({ exists: true }), new Reflector());
    await expect(guard.canActivate(context('/api/v1/models').ctx)).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(guard.canActivate(context('/api/v1/models', { 'x-api-key': 'fk_nope' }).ctx)).rejects.toMatchObject({ code: 'unauthorized' });
    const { ctx, req } = context('/api/v1/images/jobs', { authorization: `Bearer ${KEY}` });
    await expect(guard.canActivate(ctx)).resolves.toBe(true);
    expect(req.caller).toEqual({ owner: 'key_1', priority: 10, maxJobs: 3 });
    expect(req.apiKey).toMatchObject({ id: 'key_1', rpm: 50, maxJobs: 3 });
  });

  it.each(['/health', '/health/ready', '/docs', '/docs-json', '/redoc', '/metrics'])('keeps %s public', async (path) => {
    const guard = new ApiKeyGuard(env, fakeStore({ exists: true }), new Reflector());
    await expect(guard.canActivate(context(path).ctx)).resolves.toBe(true);
  });

  it.each(['/healthz', '/docsx', '/api/v1/health', '/metrics/../api/v1/models'])('does not mistake %s for a public route', async (path) => {
    const guard = new ApiKeyGuard(env, fakeStore({ exists: true }), new Reflector());
    await expect(guard.canActivate(context(path).ctx)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('refuses to start open with AUTH_REQUIRED, and never runs open with it', async () => {
    const strict = loadEnv({}, { AUTH_REQUIRED: true });
    const guard = new ApiKeyGuard(strict, fakeStore({ exists: false }), new Reflector());
    await expect(guard.onApplicationBootstrap()).rejects.toThrow(/AUTH_REQUIRED=true but no API key exists/);
    await expect(guard.canActivate(context('/api/v1/models').ctx)).rejects.toMatchObject({ code: 'unauthorized' });
  });
});
