import {
  ClientClosedError,
  ComfyAbortError,
  ComfyUiTimeoutError,
  ComfyUnavailableError,
  PromptInterruptedError,
  PromptLostError,
} from './comfyui.errors';
import type { ComfyUiLogger } from './comfyui-socket';
import type { PromptOutcome, WaitOptions } from './comfyui.types';
import {
  errorFromEntry,
  executionErrorFrom,
  isFailedEntry,
  locationInQueue,
  outcomeFromEntry,
  type HistoryEntry,
  type Json,
  type QueueSnapshot,
} from './history';
import { snippet } from './http-transport';
import type { ComfyFrame } from './ws-frames';

/** The two reads the tracker needs from the server; the HTTP client supplies them, unit tests fake them. */
export interface PromptLookups {
  fetchQueue(): Promise<QueueSnapshot>;
  /** undefined when history has no entry for the id (yet). */
  fetchHistory(promptId: string): Promise<HistoryEntry | undefined>;
}

export interface PromptTrackerOptions {
  /** Only for error messages and logs. */
  baseUrl: string;
  /** Safety-net poll of /queue + /history while a prompt is awaited. */
  pollIntervalMs: number;
  lookups: PromptLookups;
  log: ComfyUiLogger;
}

/** Events that prove the prompt is executing (and so trigger onStart). */
const RUNNING_EVENTS = new Set(['execution_start', 'execution_cached', 'executing', 'progress', 'progress_state', 'executed']);
/** How many prompt ids we remember events for when nobody waits on them yet. */
const SEEN_CAP = 512;
const SEEN_TTL_MS = 30 * 60_000;
/** After a terminal success event: history is written a moment later, so look again on this schedule. */
const FINISH_RETRY_DELAYS_MS = [0, 25, 50, 100, 200, 400, 800, 1600];

/** What the socket told us about one prompt id, kept even when nobody waits on it (yet). */
interface Seen {
  at: number;
  started: boolean;
  terminal?: { type: string; data: Json };
}

type PollResult =
  | { kind: 'running' }
  | { kind: 'pending'; ahead: string }
  | { kind: 'entry'; entry: HistoryEntry }
  | { kind: 'absent' }
  | { kind: 'failed'; error: Error };

interface Waiter {
  promptId: string;
  opts: WaitOptions;
  resolve(o: PromptOutcome): void;
  reject(e: Error): void;
  settled: boolean;
  started: boolean;
  /** Last sign of life: a WS event for the prompt, a poll showing it pending, or it starting. */
  lastAlive: number;
  /** The prompts ComfyUI was running at the last look that found ours pending. */
  aheadSeen?: string;
  /** Consecutive answered looks that found the id nowhere, and when the first of them was. */
  absentCount: number;
  absentSince?: number;
  /** First failed look since the last answered one. */
  unreachableSince?: number;
  lastLookFailed: boolean;
  /** A terminal success was seen; history is being fetched (it is written a moment later). */
  finishing: boolean;
  /** While finishing: look at /history again now (ComfyUI said it wrote it: the final `executing null`). */
  finishNow?: () => void;
  idleTimer?: NodeJS.Timeout;
  finishTimer?: NodeJS.Timeout;
  detachAbort?: () => void;
}

/**
 * Follows submitted prompts of one ComfyUI to their end. The socket is the fast path (progress,
 * completion a few ms after it happens); /history is the truth, and one shared /queue + /history
 * poll is the safety net for every event the socket can lose. It owns the three rules that decide
 * how a wait ends when events go missing: idle (hung), lost (restarted server) and unreachable.
 */
export class PromptTracker {
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly seen = new Map<string, Seen>();
  private readonly log: ComfyUiLogger;
  private readonly lookups: PromptLookups;
  private readonly baseUrl: string;
  private readonly pollIntervalMs: number;
  private pollTimer?: NodeJS.Timeout;
  private polling = false;
  private pollAgain = false;
  private closed = false;

  constructor(opts: PromptTrackerOptions) {
    this.log = opts.log;
    this.lookups = opts.lookups;
    this.baseUrl = opts.baseUrl;
    this.pollIntervalMs = opts.pollIntervalMs;
  }

  /** Prompt ids someone waits on. */
  get tracked(): number {
    return this.waiters.size;
  }

  /**
   * Drops what the socket said about an id about to be (re)submitted: events for it may arrive
   * before the POST answers (§1.6), so anything older belongs to a previous life of the id.
   */
  forget(promptId: string): void {
    this.seen.delete(promptId);
  }

  /** Rejects every wait with ClientClosedError and stops every timer; later waits reject at once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearPollTimer();
    for (const set of [...this.waiters.values()]) for (const w of [...set]) this.settle(w, new ClientClosedError());
    this.seen.clear();
  }

  wait(promptId: string, opts: WaitOptions): Promise<PromptOutcome> {
    if (this.closed) return Promise.reject(new ClientClosedError());
    if (opts.signal?.aborted) return Promise.reject(new ComfyAbortError(opts.signal.reason));
    return new Promise<PromptOutcome>((resolve, reject) => {
      const w: Waiter = {
        promptId,
        opts,
        resolve,
        reject,
        settled: false,
        started: false,
        lastAlive: Date.now(),
        absentCount: 0,
        lastLookFailed: false,
        finishing: false,
      };
      let set = this.waiters.get(promptId);
      if (!set) this.waiters.set(promptId, (set = new Set()));
      set.add(w);

      if (opts.signal) {
        const signal = opts.signal;
        const onAbort = () => this.settle(w, new ComfyAbortError(signal.reason));
        signal.addEventListener('abort', onAbort, { once: true });
        w.detachAbort = () => signal.removeEventListener('abort', onAbort);
      }
      this.armIdle(w, opts.idleTimeoutMs);

      // Replay what the socket said before anyone listened (events can beat the POST answer).
      const s = this.seen.get(promptId);
      if (s?.started) this.markStarted(w);
      if (s?.terminal) this.applyEvent(w, s.terminal.type, s.terminal.data);
      // Look at once: the prompt may have finished while nobody listened (re-attach after a restart of ours).
      if (!w.settled) this.pollNow();
    });
  }

  // ---------------------------------------------------------------- socket input

  /** The socket (re)opened. */
  onOpen(reconnected: boolean): void {
    this.guard('open', () => {
      // Whatever happened while we were away or not yet connected (completion, restart) shows up in
      // /queue + /history; look now rather than at the next tick.
      if (this.waiters.size) {
        this.log.debug('comfyui ws open: checking prompts in flight', { reconnected, prompts: this.waiters.size });
        this.pollNow();
      }
    });
  }

  onFrame(f: ComfyFrame): void {
    this.guard('frame', () => {
      switch (f.kind) {
        case 'event':
          this.handleEvent(f.type, f.data);
          return;
        case 'preview':
          // Previews are never outputs; a type-4 preview names its prompt, which proves it is alive.
          if (f.promptId) this.touch(f.promptId);
          return;
        case 'text':
          this.log.debug('comfyui progress text', { node: f.nodeId, text: snippet(f.text) });
          return;
        case 'invalid':
          this.log.debug('comfyui ws frame dropped', { reason: f.reason });
          return;
      }
    });
  }

  private handleEvent(type: string, data: Json): void {
    const promptId = typeof data.prompt_id === 'string' ? data.prompt_id : undefined;
    // No prompt_id: status broadcasts, the reconnect `executing` resend, custom-node chatter.
    if (!promptId) return;
    this.remember(promptId, type, data);
    // A prompt waiting in the queue behind one that shows signs of life is alive too: the queue
    // moves (pipelined dispatch keeps one prompt waiting behind the running one for its whole run).
    for (const [id, others] of this.waiters) {
      if (id === promptId) continue;
      for (const w of others) if (!w.started && !w.settled) w.lastAlive = Date.now();
    }
    const set = this.waiters.get(promptId);
    if (!set) return;
    for (const w of [...set]) this.applyEvent(w, type, data);
  }

  private remember(promptId: string, type: string, data: Json): void {
    const now = Date.now();
    let s = this.seen.get(promptId);
    if (!s) {
      for (const [id, old] of this.seen) {
        if (this.seen.size < SEEN_CAP && now - old.at < SEEN_TTL_MS) break;
        this.seen.delete(id);
      }
      this.seen.set(promptId, (s = { at: now, started: false }));
    }
    s.at = now;
    if (RUNNING_EVENTS.has(type) && !(type === 'executing' && data.node === null)) s.started = true;
    const terminal = type === 'execution_success' || type === 'execution_error' || type === 'execution_interrupted' || (type === 'executing' && data.node === null);
    // The final `executing null` must not hide the error that came just before it.
    if (terminal && (!s.terminal || s.terminal.type === 'execution_success' || s.terminal.type === 'executing')) s.terminal = { type, data };
  }

  private touch(promptId: string): void {
    const set = this.waiters.get(promptId);
    if (set) for (const w of set) w.lastAlive = Date.now();
  }

  private applyEvent(w: Waiter, type: string, data: Json): void {
    if (w.settled) return;
    w.lastAlive = Date.now();
    w.absentCount = 0;
    w.absentSince = undefined;
    switch (type) {
      case 'execution_success':
        this.finish(w);
        return;
      case 'executing':
        if (data.node === null) {
          // After execution_success, ComfyUI writes history and then sends this: look again at once.
          if (w.finishing) w.finishNow?.();
          else this.finish(w);
        } else this.markStarted(w);
        return;
      case 'execution_error':
        this.settle(w, executionErrorFrom(data));
        return;
      case 'execution_interrupted':
        this.settle(w, new PromptInterruptedError(w.promptId));
        return;
      case 'progress': {
        this.markStarted(w);
        const cb = w.opts.onProgress;
        if (cb && typeof data.value === 'number' && typeof data.max === 'number') {
          const p = { promptId: w.promptId, node: typeof data.node === 'string' ? data.node : String(data.node ?? ''), value: data.value, max: data.max };
          this.guard('onProgress', () => cb(p));
        }
        return;
      }
      default:
        if (RUNNING_EVENTS.has(type)) this.markStarted(w);
    }
  }

  // ---------------------------------------------------------------- a waiter's life

  private settle(w: Waiter, result: PromptOutcome | Error): void {
    if (w.settled) return;
    w.settled = true;
    if (w.idleTimer) clearTimeout(w.idleTimer);
    if (w.finishTimer) clearTimeout(w.finishTimer);
    w.detachAbort?.();
    const set = this.waiters.get(w.promptId);
    set?.delete(w);
    if (set && !set.size) this.waiters.delete(w.promptId);
    if (!this.waiters.size) this.clearPollTimer();
    if (result instanceof Error) {
      this.log.debug('comfyui wait failed', { promptId: w.promptId, err: result.name, message: result.message });
      w.reject(result);
    } else {
      w.resolve(result);
    }
  }

  private armIdle(w: Waiter, delay: number): void {
    w.idleTimer = setTimeout(() => this.guard('idle', () => this.checkIdle(w)), Math.max(1, delay));
  }

  /**
   * Idle rule: nothing showed the prompt alive for idleTimeoutMs → hung. Alive means a WS event
   * for it, a look finding it pending while the queue ahead moves, or it starting.
   * A prompt the polls keep seeing as running but that emits nothing is hung. If our last look at
   * the server failed, the honest answer is "unavailable", not "hung".
   */
  private checkIdle(w: Waiter): void {
    w.idleTimer = undefined;
    if (w.settled) return;
    const idle = w.opts.idleTimeoutMs;
    const now = Date.now();
    if (w.unreachableSince !== undefined && now - w.unreachableSince >= idle) {
      this.settle(w, new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable for ${now - w.unreachableSince} ms while waiting for prompt ${w.promptId}`));
      return;
    }
    const quiet = now - w.lastAlive;
    if (quiet >= idle) {
      this.settle(
        w,
        w.lastLookFailed
          ? new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable while waiting for prompt ${w.promptId}`)
          : new ComfyUiTimeoutError(w.promptId, idle),
      );
      return;
    }
    let next = idle - quiet;
    if (w.unreachableSince !== undefined) next = Math.min(next, idle - (now - w.unreachableSince));
    this.armIdle(w, next);
  }

  private markStarted(w: Waiter): void {
    if (w.started) return;
    w.started = true;
    w.lastAlive = Date.now();
    if (w.opts.onStart) {
      const cb = w.opts.onStart;
      this.guard('onStart', () => cb());
    }
  }

  /**
   * The socket says the prompt ended well; the outputs come from /history, which ComfyUI writes a
   * moment after execution_success. Retry briefly, then leave it to the regular poll.
   */
  private finish(w: Waiter): void {
    if (w.finishing || w.settled) return;
    w.finishing = true;
    let inFlight = false;
    let next = 0;
    const retry = (i: number) => {
      next = i + 1;
      if (i + 1 < FINISH_RETRY_DELAYS_MS.length) w.finishTimer = setTimeout(() => attempt(i + 1), FINISH_RETRY_DELAYS_MS[i + 1]);
      else {
        w.finishing = false;
        w.finishNow = undefined;
      }
    };
    w.finishNow = () => {
      if (inFlight || !w.finishTimer) return;
      clearTimeout(w.finishTimer);
      attempt(next);
    };
    const attempt = (i: number) => {
      w.finishTimer = undefined;
      if (w.settled || this.closed) return;
      inFlight = true;
      this.lookups
        .fetchHistory(w.promptId)
        .then((entry) => {
          inFlight = false;
          if (w.settled) return;
          if (entry) return this.settleFromEntry(w, entry);
          retry(i);
        })
        .catch((err: unknown) => {
          inFlight = false;
          if (w.settled) return;
          this.log.debug('comfyui history fetch after completion failed', { promptId: w.promptId, err: String(err) });
          retry(i);
        });
    };
    attempt(0);
  }

  private settleFromEntry(w: Waiter, entry: HistoryEntry): void {
    this.settle(w, isFailedEntry(entry) ? errorFromEntry(w.promptId, entry) : outcomeFromEntry(w.promptId, entry));
  }

  // ---------------------------------------------------------------- safety-net poll

  private clearPollTimer(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.closed || !this.waiters.size) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      void this.runPoll();
    }, this.pollIntervalMs);
  }

  private pollNow(): void {
    this.clearPollTimer();
    void this.runPoll();
  }

  /** One look per tick, shared by every waiter: one /queue, then /history only for ids not queued. */
  private async runPoll(): Promise<void> {
    if (this.closed) return;
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    this.polling = true;
    try {
      await this.pollOnce();
    } catch (err) {
      this.log.error('comfyui poll failed unexpectedly', { err: String(err) });
    } finally {
      this.polling = false;
      if (this.pollAgain && !this.closed) {
        this.pollAgain = false;
        void this.runPoll();
      } else {
        this.schedulePoll();
      }
    }
  }

  private async pollOnce(): Promise<void> {
    const ids = [...this.waiters.keys()];
    if (!ids.length) return;
    let queue: QueueSnapshot | undefined;
    let failure: Error | undefined;
    try {
      queue = await this.lookups.fetchQueue();
    } catch (err) {
      failure = asError(err);
    }
    await Promise.all(
      ids.map(async (id) => {
        let result: PollResult;
        const where = queue ? locationInQueue(queue, id) : undefined;
        if (where === 'running') result = { kind: 'running' };
        else if (where === 'pending') result = { kind: 'pending', ahead: [...queue!.running].sort().join(',') };
        else {
          // History is asked even when /queue failed: an entry there settles the wait on its own.
          // Only "absent" needs both answers before it counts.
          try {
            const entry = await this.lookups.fetchHistory(id);
            if (entry) result = { kind: 'entry', entry };
            else result = queue ? { kind: 'absent' } : { kind: 'failed', error: failure ?? new Error('GET /queue gave no answer') };
          } catch (err) {
            result = { kind: 'failed', error: asError(err) };
          }
        }
        if (this.closed) return;
        for (const w of [...(this.waiters.get(id) ?? [])]) this.guard('poll result', () => this.applyPoll(w, result));
      }),
    );
  }

  /**
   * Lost rule: only when the server answered, twice in a row and at least half a poll interval
   * apart, that the id is neither running, pending nor in history. A failed look never counts.
   */
  private applyPoll(w: Waiter, r: PollResult): void {
    if (w.settled) return;
    const now = Date.now();
    if (r.kind === 'failed') {
      w.lastLookFailed = true;
      w.unreachableSince ??= now;
      this.log.debug('comfyui poll failed', { promptId: w.promptId, err: r.error.message });
      if (now - w.unreachableSince >= w.opts.idleTimeoutMs) {
        this.settle(w, new ComfyUnavailableError(`ComfyUI ${this.baseUrl} unreachable for ${now - w.unreachableSince} ms while waiting for prompt ${w.promptId}: ${r.error.message}`));
      }
      return;
    }
    w.lastLookFailed = false;
    w.unreachableSince = undefined;
    if (r.kind !== 'absent') {
      w.absentCount = 0;
      w.absentSince = undefined;
    }
    switch (r.kind) {
      case 'running':
        this.markStarted(w);
        return;
      case 'pending':
        // Queued behind others is alive only while the queue moves: behind a frozen prompt it is
        // as hung as that prompt (a GPU stuck in a node), so the idle clock keeps running.
        if (r.ahead === '' || r.ahead !== w.aheadSeen) {
          w.aheadSeen = r.ahead;
          w.lastAlive = now;
        }
        return;
      case 'entry':
        this.settleFromEntry(w, r.entry);
        return;
      case 'absent':
        w.absentCount++;
        w.absentSince ??= now;
        this.log.debug('comfyui prompt not found on the server', { promptId: w.promptId, times: w.absentCount });
        if (w.absentCount >= 2 && now - w.absentSince >= this.pollIntervalMs / 2) this.settle(w, new PromptLostError(w.promptId));
        return;
    }
  }

  private guard(where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error(`comfyui ${where} handler failed`, { err: err instanceof Error ? err.stack ?? err.message : String(err) });
    }
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
