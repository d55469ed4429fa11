/**
 * At most one job at a time on one GPU slot across the BullMQ workers of its models (one per
 * model queue, concurrency 1 each). Waiters are served in arrival order, so models a slot serves
 * take turns. A waiter whose signal aborts (cancel, shutdown) leaves the line at once without the
 * gate: its job then ends without touching ComfyUI.
 */
export class SlotGate {
  private busy = false;
  private readonly waiters: Array<() => void> = [];

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves true holding the gate (call release()), or false when `signal` aborted first. */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(true);
    }
    if (signal.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const grant = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      this.waiters.push(grant);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.busy = false;
  }
}
