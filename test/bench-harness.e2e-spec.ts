import request from 'supertest';
import { Stack } from './support/stack';

type Span = { start?: number; end?: number };
interface Bench {
  gpuSide(spans: Span[]): { busyPct: number; gaps: number[]; span: number };
  benchLine(f: Record<string, number | undefined>): string;
  simHistory(sim: { url: string }): Promise<Map<string, Span & { graph?: Record<string, unknown>; image?: { filename: string } }>>;
  clearHistory(sim: { url: string }): Promise<unknown>;
  hopSplit(m: { at: number; e2e: number; createdAt?: string | number; finishedAt?: string | number; gpuStart?: number; gpuEnd?: number }): Record<'intake' | 'dispatch' | 'drain' | 'answer', number>;
  DirectClient: new (sim: { url: string }, graph: Record<string, unknown>) => {
    open(): Promise<{ run(): Promise<{ e2e: number; promptId: string; bytes: number }>; close(): void }>;
  };
}
// Plain CommonJS like every bench script; required, not run (its command line only parses as a script).
const bench = require('../bench/latency.js') as Bench;

const BENCH_LINE = /^BENCH sync_ovh_p50_ms=(\S+) async_wait_ovh_p50_ms=(\S+) gpu_busy_pct=(\S+) submit_rps=(\S+) get_rps=(\S+) scale8_x=(\S+)$/;

describe('npm run bench: the parts that make its figures', () => {
  it('GPU busy share and idle gaps come from the executions alone, whatever their order', () => {
    const side = bench.gpuSide([{ start: 1_200, end: 1_300 }, { start: 1_000, end: 1_100 }, { start: 1_110, end: 1_200 }, { start: 5 }]);
    expect(side.span).toBe(300);
    expect(side.gaps).toEqual([10, 0]);
    expect(side.busyPct).toBeCloseTo((290 / 300) * 100, 6);
    expect(Number.isNaN(bench.gpuSide([]).busyPct)).toBe(true);
  });

  it('a job\'s overhead is cut at its created and finished marks into four legs that add up to it', () => {
    const at = Date.parse('2026-12-04T10:00:00.000Z');
    const legs = bench.hopSplit({ at, e2e: 250, createdAt: '2026-12-04T10:00:00.004Z', gpuStart: at + 12, gpuEnd: at + 222, finishedAt: '2026-12-04T10:00:00.231Z' });
    expect(legs).toEqual({ intake: 4, dispatch: 8, drain: 9, answer: 19 });
    // Together with the GPU's own run they make up the client's whole time.
    expect(legs.intake + legs.dispatch + 210 + legs.drain + legs.answer).toBe(250);
    expect(bench.hopSplit({ at, e2e: 250, createdAt: at + 4, gpuStart: at + 12, gpuEnd: at + 222, finishedAt: at + 231 })).toEqual(legs);
    // A job whose resource or history could not be read gives NaN, which the table leaves out.
    const missing = bench.hopSplit({ at, e2e: 250, gpuStart: at + 12, gpuEnd: at + 222 });
    expect([missing.intake, missing.dispatch, missing.drain, missing.answer].every(Number.isNaN)).toBe(true);
  });

  it('the BENCH line always carries the six figures, n/a where a row did not run', () => {
    const full = bench.benchLine({ syncOvh: 3.14, waitOvh: 2.5, busy: 99.61, submitRps: 3012.4, getRps: 6020, scale8: 7.912 });
    expect(full).toBe('BENCH sync_ovh_p50_ms=3.1 async_wait_ovh_p50_ms=2.5 gpu_busy_pct=99.6 submit_rps=3012 get_rps=6020 scale8_x=7.91');
    expect(BENCH_LINE.exec(full)?.slice(1).map(Number)).toEqual([3.1, 2.5, 99.6, 3012, 6020, 7.91]);
    const partial = bench.benchLine({ syncOvh: 1, waitOvh: NaN });
    expect(BENCH_LINE.exec(partial)?.slice(2)).toEqual(['n/a', 'n/a', 'n/a', 'n/a', 'n/a']);
  });

  describe('against the simulator over HTTP and WebSocket', () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({ comfyui: 1, sim: { stepMs: 20 } });
    });
    afterAll(async () => stack?.close());

    it('the direct client runs the graph the API built, with a fresh seed each time, and the history times it', async () => {
      const sim = { url: stack.sims[0].url };
      await bench.clearHistory(sim);
      await request(stack.url).post('/api/v1/images/generate').send({ prompt: 'a bench graph', width: 256, height: 256, num_inference_steps: 4, seed: 3 }).expect(200);
      const [apiRun] = [...(await bench.simHistory(sim)).values()];
      expect(apiRun.graph).toBeDefined();
      await bench.clearHistory(sim);
      const client = await new bench.DirectClient(sim, apiRun.graph as Record<string, unknown>).open();
      try {
        const runs = [await client.run(), await client.run(), await client.run()];
        for (const r of runs) {
          expect(r.bytes).toBeGreaterThan(1000);
          expect(r.e2e).toBeGreaterThan(0);
        }
        const hist = await bench.simHistory(sim);
        expect([...hist.keys()].sort()).toEqual(runs.map((r) => r.promptId).sort());
        // A fresh seed each time: none of them was answered from ComfyUI's cache (each executed its 4 steps).
        for (const h of hist.values()) expect((h.end as number) - (h.start as number)).toBeGreaterThanOrEqual(4 * 20);
        const side = bench.gpuSide([...hist.values()]);
        expect(side.gaps).toHaveLength(2);
        expect(side.busyPct).toBeGreaterThan(0);
        expect(side.busyPct).toBeLessThanOrEqual(100);
      } finally {
        client.close();
      }
    });
  });
});
