/** Delay before each retry: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h (about 10.7 h in all). */
export const DEFAULT_WEBHOOK_RETRY_SCHEDULE_MS: readonly number[] = [
  5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000,
];

/** Each delay is spread by ±20% so endpoints that failed together are not retried together. */
export const WEBHOOK_RETRY_JITTER = 0.2;

/** The first attempt plus one per schedule entry (BullMQ `attempts`). */
export function maxWebhookAttempts(scheduleMs: readonly number[]): number {
  return scheduleMs.length + 1;
}

/**
 * Delay before the next attempt, given how many attempts were already made (BullMQ's
 * `attemptsMade` in a backoff strategy: 1 after the first failure). Null when the schedule is
 * exhausted and the delivery should fail for good. `random` returns [0, 1), like Math.random.
 */
export function nextRetryDelayMs(attemptsMade: number, scheduleMs: readonly number[], random: () => number = Math.random): number | null {
  if (!Number.isInteger(attemptsMade) || attemptsMade < 0) throw new RangeError(`attemptsMade must be a whole number ≥ 0, got ${attemptsMade}`);
  if (attemptsMade === 0) return 0;
  const base = scheduleMs[attemptsMade - 1];
  if (base === undefined) return null;
  const factor = 1 - WEBHOOK_RETRY_JITTER + 2 * WEBHOOK_RETRY_JITTER * random();
  return Math.max(0, Math.round(base * factor));
}

/** A 429/503 Retry-After is honoured between these bounds: no hammering, and no parking for days. */
export const MIN_RETRY_AFTER_MS = 1_000;
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * How many times Retry-After may postpone one delivery without using up an attempt. Past that, a
 * receiver that keeps answering 429 is retried on the schedule like any other failure (its
 * Retry-After still sets the minimum delay), so it cannot keep an event alive forever.
 */
export const MAX_RETRY_AFTER_DEFERRALS = 10;

export function clampRetryAfterMs(ms: number): number {
  if (!Number.isFinite(ms)) return MAX_RETRY_AFTER_MS;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.round(ms)));
}
