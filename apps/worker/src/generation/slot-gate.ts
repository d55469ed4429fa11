/**
 * The seats a GPU slot has in its ComfyUI's queue, shared by the BullMQ workers of its models
 * (one per model queue). A job holds a seat from just before its prompt is submitted until the
 * prompt has ended in ComfyUI. One seat: a GPU runs one prompt at a time and nothing waits in
 * ComfyUI's queue. Two seats (pipelined dispatch): one prompt runs and at most one waits behind it,
 * so the GPU starts the next the instant the previous ends. Waiters are served by priority (BullMQ's
 * numbers: lower first), then in arrival order, so the models a slot serves take turns and a more
 * urgent job of one model goes ahead of a less urgent one of another. A waiter whose signal aborts
 * (cancel, shutdown) leaves the line at once without a seat: its job then ends without touching ComfyUI.
 */
export class SlotGate {
  private held = 0;
  /** In serving order: by priority, and behind the waiters of the same priority that came first. */
  private readonly waiters: Array<{ grant: () => void; priority: number }> = [];

  constructor(readonly seats = 1) {
    if (!Number.isInteger(seats) || seats < 1) throw new RangeError(`seats must be a positive integer, got ${seats}`);
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Seats taken now. */
  get inUse(): number {
    return this.held;
  }

  /**
   * Resolves true holding a seat (call release() once), or false when `signal` aborted first.
   * `priority`: the job's BullMQ priority (lower goes first; 0, BullMQ's "none", before any).
   */
  acquire(signal: AbortSignal, priority = 0): Promise<boolean> {
    if (this.held < this.seats) {
      this.held++;
      return Promise.resolve(true);
    }
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter = {
        priority,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(true);
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      // Behind every waiter of the same or a more urgent priority (a handful of waiters at most).
      let at = this.waiters.length;
      while (at > 0 && this.waiters[at - 1].priority > priority) at--;
      this.waiters.splice(at, 0, waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Takes up to `n` free seats at once, for prompts this gate did not give out (see the pool's
   * leftovers); answers how many it took. Each is given back with release().
   */
  occupy(n: number): number {
    const taken = Math.max(0, Math.min(n, this.seats - this.held));
    this.held += taken;
    return taken;
  }

  /** Gives a seat back: the first waiter takes it over. */
  release(): void {
    const next = this.waiters.shift();
    if (next) next.grant();
    else this.held = Math.max(0, this.held - 1);
  }
}
