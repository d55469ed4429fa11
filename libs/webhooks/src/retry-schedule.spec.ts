import { Env } from '@app/config';
import {
  clampRetryAfterMs, DEFAULT_WEBHOOK_RETRY_SCHEDULE_MS, MAX_RETRY_AFTER_MS, maxWebhookAttempts, MIN_RETRY_AFTER_MS, nextRetryDelayMs,
} from './retry-schedule';

describe('nextRetryDelayMs', () => {
  const schedule = [1000, 10_000, 60_000];
  const mid = () => 0.5;

  it('walks the schedule: after attempt n comes entry n-1', () => {
    expect(nextRetryDelayMs(1, schedule, mid)).toBe(1000);
    expect(nextRetryDelayMs(2, schedule, mid)).toBe(10_000);
    expect(nextRetryDelayMs(3, schedule, mid)).toBe(60_000);
  });

  it('is null once the schedule is exhausted', () => {
    expect(nextRetryDelayMs(4, schedule, mid)).toBeNull();
    expect(nextRetryDelayMs(100, schedule, mid)).toBeNull();
    expect(nextRetryDelayMs(1, [], mid)).toBeNull();
  });

  it('spreads each delay by ±20%', () => {
    expect(nextRetryDelayMs(2, schedule, () => 0)).toBe(8000);
    expect(nextRetryDelayMs(2, schedule, () => 0.999999)).toBe(12_000);
    for (let i = 0; i < 200; i++) {
      const d = nextRetryDelayMs(3, schedule) as number;
      expect(d).toBeGreaterThanOrEqual(48_000);
      expect(d).toBeLessThanOrEqual(72_000);
    }
  });

  it('needs no delay before the first attempt and refuses nonsense counts', () => {
    expect(nextRetryDelayMs(0, schedule, mid)).toBe(0);
    expect(() => nextRetryDelayMs(-1, schedule)).toThrow(RangeError);
    expect(() => nextRetryDelayMs(1.5, schedule)).toThrow(RangeError);
  });

  it('has a default schedule of 5 s … 6 h, the same as the config default', () => {
    expect(DEFAULT_WEBHOOK_RETRY_SCHEDULE_MS).toEqual([5000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000]);
    expect(new Env().webhookRetryScheduleMs).toEqual(DEFAULT_WEBHOOK_RETRY_SCHEDULE_MS);
    expect(maxWebhookAttempts(DEFAULT_WEBHOOK_RETRY_SCHEDULE_MS)).toBe(9);
  });
});

describe('clampRetryAfterMs', () => {
  it('keeps a reasonable Retry-After and bounds the rest', () => {
    expect(clampRetryAfterMs(5_000)).toBe(5_000);
    expect(clampRetryAfterMs(0)).toBe(MIN_RETRY_AFTER_MS);
    expect(clampRetryAfterMs(7 * 86_400_000)).toBe(MAX_RETRY_AFTER_MS);
    expect(clampRetryAfterMs(Number.POSITIVE_INFINITY)).toBe(MAX_RETRY_AFTER_MS);
  });
});
