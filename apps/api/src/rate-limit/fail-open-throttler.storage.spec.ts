import type { ThrottlerStorage } from '@nestjs/throttler';
import { FailOpenThrottlerStorage } from './fail-open-throttler.storage';

describe('FailOpenThrottlerStorage', () => {
  const record = { totalHits: 3, timeToExpire: 40, isBlocked: true, timeToBlockExpire: 40 };

  it('passes the Redis answer through', async () => {
    const inner: ThrottlerStorage = { increment: async () => record };
    await expect(new FailOpenThrottlerStorage(inner).increment('k', 60_000, 2, 60_000, 'default')).resolves.toEqual(record);
  });

  it('lets requests through while Redis is unreachable, then limits again', async () => {
    let down = true;
    const inner: ThrottlerStorage = {
      increment: async () => {
        if (down) throw new Error('Stream isn\'t writeable and enableOfflineQueue options is false');
        return record;
      },
    };
    const storage = new FailOpenThrottlerStorage(inner);
    await expect(storage.increment('k', 60_000, 2, 60_000, 'default')).resolves.toMatchObject({ isBlocked: false, totalHits: 0 });
    down = false;
    await expect(storage.increment('k', 60_000, 2, 60_000, 'default')).resolves.toEqual(record);
  });

  it('does not hide other errors', async () => {
    const inner: ThrottlerStorage = { increment: async () => Promise.reject(new TypeError('Expected totalHits to be a number')) };
    await expect(new FailOpenThrottlerStorage(inner).increment('k', 1, 1, 1, 'default')).rejects.toThrow(TypeError);
  });
});
