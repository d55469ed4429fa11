import {
  ClientClosedError,
  ComfyAbortError,
  ComfyUiTimeoutError,
  ComfyUnavailableError,
  ExecutionError,
  PromptInterruptedError,
  PromptLostError,
} from './comfyui.errors';
import type { ComfyUiLogger } from './comfyui-socket';
import type { PromptOutcome, PromptProgress, WaitOptions } from './comfyui.types';
import type { HistoryEntry, Json, QueueSnapshot } from './history';
import { PromptTracker, type PromptLookups } from './prompt-tracker';

/** The server as the tracker's two lookups see it; each field is set by the test between ticks. */
class FakeServer implements PromptLookups {
  running = new Set<string>();
  pending = new Set<string>();
  history = new Map<string, HistoryEntry>();
  /** While set, every lookup rejects with it (server unreachable). */
  down?: Error;
  queueCalls = 0;
  historyCalls: string[] = [];

  fetchQueue(): Promise<QueueSnapshot> {
    this.queueCalls++;
    if (this.down) return Promise.reject(this.down);
    return Promise.resolve({ running: new Set(this.running), pending: new Set(this.pending) });
  }

  fetchHistory(promptId: string): Promise<HistoryEntry | undefined> {
    this.historyCalls.push(promptId);
    if (this.down) return Promise.reject(this.down);
    return Promise.resolve(this.history.get(promptId));
  }

  succeed(id: string, filename = 'out_00001_.png'): void {
    this.running.delete(id);
    this.history.set(id, {
      statusStr: 'success',
      completed: true,
      messages: [['execution_start', { timestamp: 1000 }], ['execution_success', { timestamp: 1400 }]],
      outputs: { '9': { images: [{ filename, subfolder: '', type: 'output' }] } },
    });
  }
}

const errors: string[] = [];
const log: ComfyUiLogger = { debug() {}, info() {}, warn() {}, error: (m) => errors.push(m) };
const POLL_MS = 1_000;

/** A promise's state without awaiting it, so a test can assert "still waiting". */
function track<T>(p: Promise<T>): { readonly state: 'pending' | 'resolved' | 'rejected'; readonly value?: T; readonly error?: unknown } {
  const t: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (v) => Object.assign(t, { state: 'resolved', value: v }),
    (e: unknown) => Object.assign(t, { state: 'rejected', error: e }),
  );
  return t;
}

describe('PromptTracker', () => {
  let server: FakeServer;
  let tracker: PromptTracker;

  const event = (type: string, data: Json) => tracker.onFrame({ kind: 'event', type, data });
  const wait = (id: string, opts: Partial<WaitOptions> = {}) => track(tracker.wait(id, { idleTimeoutMs: 10_000, ...opts }));
  const tick = (ms: number) => jest.advanceTimersByTimeAsync(ms);

  beforeEach(() => {
    jest.useFakeTimers();
    errors.length = 0;
    server = new FakeServer();
    tracker = new PromptTracker({ baseUrl: 'http://gpu:8188', pollIntervalMs: POLL_MS, lookups: server, log });
  });

  afterEach(() => {
    tracker.close();
    expect(jest.getTimerCount()).toBe(0);
    jest.useRealTimers();
  });

  it('follows the socket: onStart once, progress, outcome from history after execution_success', async () => {
    server.running.add('a');
    const onStart = jest.fn();
    const progress: PromptProgress[] = [];
    const w = wait('a', { onStart, onProgress: (p) => progress.push(p) });
    event('execution_start', { prompt_id: 'a' });
    event('executing', { prompt_id: 'a', node: '3' });
    event('progress', { prompt_id: 'a', node: '3', value: 1, max: 4 });
    event('progress', { prompt_id: 'a', node: '3', value: 2, max: 4 });
    server.succeed('a');
    event('execution_success', { prompt_id: 'a' });
    await tick(0);
    expect(w.state).toBe('resolved');
    expect(w.value).toEqual<PromptOutcome>({ promptId: 'a', images: [{ node: '9', filename: 'out_00001_.png', subfolder: '', type: 'output' }], executionMs: 400, endedAt: 1400 });
    expect(onStart).toHaveBeenCalledTimes(1);
    expect(progress.map((p) => p.value)).toEqual([1, 2]);
    expect(tracker.tracked).toBe(0);
  });

  it('retries /history briefly when execution_success beats the entry', async () => {
    server.running.add('a');
    const w = wait('a');
    await tick(0);
    event('execution_success', { prompt_id: 'a' });
    await tick(100);
    expect(w.state).toBe('pending');
    server.succeed('a');
    await tick(200);
    expect(w.state).toBe('resolved');
    // Well before the next safety-net poll: the fast path settled it.
    expect(server.queueCalls).toBe(1);
  });

  it('replays events that came before the wait, and forgets them on resubmit', async () => {
    event('execution_start', { prompt_id: 'a' });
    event('execution_error', { prompt_id: 'a', node_id: '3', node_type: 'KSampler', exception_type: 'RuntimeError', exception_message: 'boom' });
    // The closing `executing null` must not hide the error before it.
    event('executing', { prompt_id: 'a', node: null });
    const onStart = jest.fn();
    const w = wait('a', { onStart });
    await tick(0);
    expect(w.state).toBe('rejected');
    expect(w.error).toBeInstanceOf(ExecutionError);
    expect(onStart).toHaveBeenCalledTimes(1);

    event('execution_interrupted', { prompt_id: 'b' });
    tracker.forget('b');
    server.pending.add('b');
    const again = wait('b');
    await tick(0);
    expect(again.state).toBe('pending');
    server.pending.delete('b');
    server.succeed('b');
    await tick(POLL_MS);
    expect(again.state).toBe('resolved');
  });

  it('maps execution_interrupted to PromptInterruptedError and ignores events of other prompts', async () => {
    server.running.add('a');
    const w = wait('a');
    event('execution_interrupted', { prompt_id: 'other' });
    event('status', { status: { exec_info: { queue_remaining: 1 } } });
    await tick(0);
    expect(w.state).toBe('pending');
    event('execution_interrupted', { prompt_id: 'a' });
    await tick(0);
    expect(w.error).toBeInstanceOf(PromptInterruptedError);
  });

  it('settles from the poll when the socket says nothing: success entry and error entry', async () => {
    server.running.add('ok');
    server.running.add('bad');
    const ok = wait('ok');
    const bad = wait('bad');
    await tick(0);
    server.succeed('ok');
    server.running.delete('bad');
    server.history.set('bad', { statusStr: 'error', messages: [['execution_error', { node_id: '5', exception_type: 'OOM', exception_message: 'CUDA out of memory' }]], outputs: {} });
    await tick(POLL_MS);
    expect(ok.state).toBe('resolved');
    expect(bad.error).toBeInstanceOf(ExecutionError);
    expect((bad.error as ExecutionError).nodeId).toBe('5');
  });

  it('polls once per tick for every waiter, and stops polling when nobody waits', async () => {
    server.running.add('a');
    server.running.add('b');
    const a = wait('a');
    const b = wait('b');
    await tick(0);
    const first = server.queueCalls;
    await tick(POLL_MS * 3);
    expect(server.queueCalls - first).toBe(3);
    // Both ids are running: /history is not asked for either.
    expect(server.historyCalls).toEqual([]);
    server.succeed('a');
    server.succeed('b');
    await tick(POLL_MS);
    expect([a.state, b.state]).toEqual(['resolved', 'resolved']);
    const after = server.queueCalls;
    await tick(POLL_MS * 5);
    expect(server.queueCalls).toBe(after);
  });

  it('idle rule: a prompt the poll sees running but that emits nothing times out', async () => {
    server.running.add('a');
    const w = wait('a', { idleTimeoutMs: 3_000 });
    await tick(2_500);
    expect(w.state).toBe('pending');
    await tick(1_000);
    expect(w.error).toBeInstanceOf(ComfyUiTimeoutError);
  });

  it('idle rule: events and previews that name the prompt keep it alive', async () => {
    server.running.add('a');
    const w = wait('a', { idleTimeoutMs: 3_000 });
    for (let i = 0; i < 4; i++) {
      await tick(2_000);
      if (i % 2) event('progress', { prompt_id: 'a', node: '3', value: i, max: 10 });
      else tracker.onFrame({ kind: 'preview', format: 'jpeg', bytes: 10, promptId: 'a' });
    }
    expect(w.state).toBe('pending');
    await tick(3_000);
    expect(w.error).toBeInstanceOf(ComfyUiTimeoutError);
  });

  it('idle rule: waiting behind a moving queue is alive, behind a frozen prompt it is not', async () => {
    server.pending.add('a');
    server.running.add('x1');
    const w = wait('a', { idleTimeoutMs: 3_000 });
    for (let i = 2; i <= 8; i++) {
      await tick(POLL_MS);
      server.running.clear();
      server.running.add(`x${i}`);
    }
    expect(w.state).toBe('pending');
    // The prompt ahead stops moving: the idle clock runs out like the frozen prompt's would.
    await tick(2_500);
    expect(w.state).toBe('pending');
    await tick(2_000);
    expect(w.error).toBeInstanceOf(ComfyUiTimeoutError);
  });

  it('idle rule: a held prompt waiting behind a long run that shows signs of life stays alive (pipelined dispatch)', async () => {
    server.pending.add('held');
    server.running.add('long');
    const running = wait('long', { idleTimeoutMs: 3_000 });
    const held = wait('held', { idleTimeoutMs: 3_000 });
    // The running prompt keeps stepping for four idle periods; the one behind it never moves in the queue.
    for (let i = 1; i <= 24; i++) {
      await tick(500);
      event('progress', { prompt_id: 'long', node: '3', value: i, max: 24 });
    }
    expect(held.state).toBe('pending');
    expect(running.state).toBe('pending');
    // The run ahead freezes: the held prompt's idle clock runs out with it.
    await tick(3_500);
    expect(held.error).toBeInstanceOf(ComfyUiTimeoutError);
    expect(running.error).toBeInstanceOf(ComfyUiTimeoutError);
  });

  it('looks at /history again at once on the final `executing null` when execution_success beat the entry', async () => {
    server.running.add('a');
    const w = wait('a');
    await tick(0);
    event('execution_success', { prompt_id: 'a' });
    await tick(0);
    expect(w.state).toBe('pending');
    server.succeed('a');
    const calls = server.historyCalls.length;
    event('executing', { node: null, prompt_id: 'a' });
    await tick(0);
    expect(w.state).toBe('resolved');
    expect(server.historyCalls.length).toBe(calls + 1);
  });

  it('lost rule: two answered looks without the id, half a poll apart → PromptLostError', async () => {
    const w = wait('a');
    await tick(0);
    expect(w.state).toBe('pending');
    await tick(POLL_MS);
    expect(w.error).toBeInstanceOf(PromptLostError);
  });

  it('lost rule: an absent look followed by a sign of life starts the count over', async () => {
    const w = wait('a');
    await tick(0);
    server.running.add('a');
    await tick(POLL_MS);
    server.running.delete('a');
    await tick(POLL_MS);
    expect(w.state).toBe('pending');
    event('progress', { prompt_id: 'a', node: '3', value: 1, max: 2 });
    await tick(POLL_MS);
    expect(w.state).toBe('pending');
    await tick(POLL_MS);
    expect(w.error).toBeInstanceOf(PromptLostError);
  });

  it('an unreachable server never makes a prompt lost: ComfyUnavailableError after the idle timeout', async () => {
    server.down = new Error('ECONNREFUSED');
    const w = wait('a', { idleTimeoutMs: 4_000 });
    await tick(3_500);
    expect(w.state).toBe('pending');
    await tick(1_000);
    expect(w.error).toBeInstanceOf(ComfyUnavailableError);
    expect((w.error as Error).message).toContain('http://gpu:8188');
  });

  it('a /history entry settles the wait even while /queue fails', async () => {
    server.running.add('a');
    const w = wait('a');
    await tick(0);
    server.succeed('a');
    server.fetchQueue = () => Promise.reject(new Error('502'));
    await tick(POLL_MS);
    expect(w.state).toBe('resolved');
  });

  it('a socket (re)open looks at once instead of at the next tick', async () => {
    server.running.add('a');
    const w = wait('a');
    await tick(0);
    server.succeed('a');
    tracker.onOpen(true);
    await tick(0);
    expect(w.state).toBe('resolved');
    const calls = server.queueCalls;
    tracker.onOpen(true);
    await tick(0);
    expect(server.queueCalls).toBe(calls);
  });

  it('abort rejects with ComfyAbortError; an already aborted signal rejects at once', async () => {
    server.running.add('a');
    const ac = new AbortController();
    const w = wait('a', { signal: ac.signal });
    await tick(0);
    ac.abort('cancel');
    await tick(0);
    expect(w.error).toBeInstanceOf(ComfyAbortError);
    expect((w.error as ComfyAbortError).reason).toBe('cancel');
    const late = wait('a', { signal: ac.signal });
    await tick(0);
    expect(late.error).toBeInstanceOf(ComfyAbortError);
    expect(tracker.tracked).toBe(0);
  });

  it('close rejects every wait with ClientClosedError and refuses new ones', async () => {
    server.running.add('a');
    const a1 = wait('a');
    const a2 = wait('a');
    await tick(0);
    tracker.close();
    await tick(0);
    expect([a1.error, a2.error].every((e) => e instanceof ClientClosedError)).toBe(true);
    const late = wait('b');
    await tick(0);
    expect(late.error).toBeInstanceOf(ClientClosedError);
  });

  it('survives callbacks that throw and logs them', async () => {
    server.running.add('a');
    const w = wait('a', {
      onStart: () => {
        throw new Error('start');
      },
      onProgress: () => {
        throw new Error('progress');
      },
    });
    event('progress', { prompt_id: 'a', node: '3', value: 1, max: 2 });
    server.succeed('a');
    event('execution_success', { prompt_id: 'a' });
    await tick(0);
    expect(w.state).toBe('resolved');
    expect(errors).toEqual(['comfyui onStart handler failed', 'comfyui onProgress handler failed']);
  });
});
