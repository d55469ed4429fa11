/**
 * Simulator-only control endpoints (real ComfyUI has none of these):
 * GET/POST /sim/faults, POST /sim/faults/reset, POST /sim/restart, GET /sim/stats.
 * Plain JSON in and out (JSON.parse / JSON.stringify, no Python formatting).
 */
import { ServerResponse } from 'node:http';
import { parseFaultPatch } from './faults';
import { readBody } from './http-util';
import { Route, RouteRequest } from './route-context';

function reply(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length });
  res.end(body);
}

async function jsonOrEmpty(r: RouteRequest): Promise<{ ok: true; value: unknown } | { ok: false }> {
  const text = (await readBody(r.req)).toString('utf8').trim();
  if (!text) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

export const CONTROL_ROUTES: Route[] = [
  { method: 'GET', path: '/sim/faults', handler: (ctx, r) => reply(r.res, 200, ctx.faults.get()) },
  {
    method: 'POST', path: '/sim/faults',
    handler: async (ctx, r) => {
      const body = await jsonOrEmpty(r);
      if (!body.ok) return reply(r.res, 400, { error: 'body is not JSON' });
      const parsed = parseFaultPatch(body.value);
      if ('error' in parsed) return reply(r.res, 400, { error: parsed.error });
      reply(r.res, 200, ctx.faults.set(parsed.patch));
    },
  },
  { method: 'POST', path: '/sim/faults/reset', handler: (ctx, r) => reply(r.res, 200, ctx.faults.reset()) },
  {
    method: 'POST', path: '/sim/restart',
    handler: async (ctx, r) => {
      const body = await jsonOrEmpty(r);
      const value = body.ok ? body.value : {};
      const downMs = typeof value === 'object' && value !== null && 'downMs' in value ? Number((value as { downMs: unknown }).downMs) : 0;
      if (!Number.isFinite(downMs) || downMs < 0) return reply(r.res, 400, { error: 'downMs must be a number >= 0' });
      if (downMs > 0) {
        // Answer first: the listener is about to go away for downMs.
        r.res.on('finish', () => void ctx.restart(downMs));
        reply(r.res, 200, { restarted: true, downMs });
        return;
      }
      await ctx.restart(0);
      reply(r.res, 200, { restarted: true, downMs: 0 });
    },
  },
  { method: 'GET', path: '/sim/stats', handler: (ctx, r) => reply(r.res, 200, ctx.stats()) },
];
