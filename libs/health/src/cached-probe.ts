type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Memoises an async probe for a short time — its answer or its failure — and shares the call in
 * flight, so a storm of health probes (or many load balancers) turns into at most one call per
 * window upstream, and a dependency that hangs costs one timeout per window, not one per probe.
 */
export class CachedProbe<T> {
  private last?: { at: number; outcome: Settled<T> };
  private inFlight?: Promise<T>;

  constructor(
    private readonly run: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<T> {
    if (this.last && this.now() - this.last.at < this.ttlMs) {
      const o = this.last.outcome;
      return o.ok ? Promise.resolve(o.value) : Promise.reject(o.error);
    }
    if (this.inFlight) return this.inFlight;
    const remember = (outcome: Settled<T>) => {
      this.last = { at: this.now(), outcome };
      this.inFlight = undefined;
    };
    const call = this.run().then(
      (value) => {
        remember({ ok: true, value });
        return value;
      },
      (error: unknown) => {
        remember({ ok: false, error });
        throw error;
      },
    );
    this.inFlight = call;
    return call;
  }

  /** Forgets the remembered outcome (the next get() probes again). */
  clear(): void {
    this.last = undefined;
  }
}
