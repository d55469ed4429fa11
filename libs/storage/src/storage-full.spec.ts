import { DomainError, ErrorCode } from '@app/common';
import { isRedisOutOfMemory, isStorageFull, retryWhileStorageFull, storageFullError } from './storage-full';

const oom = () => Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), { name: 'ReplyError' });

describe('isRedisOutOfMemory', () => {
  it('knows the OOM reply, alone or as the reason a MULTI was discarded', () => {
    expect(isRedisOutOfMemory(oom())).toBe(true);
    const execAbort = Object.assign(new Error('EXECABORT Transaction discarded because of previous errors.'), { previousErrors: [oom()] });
    expect(isRedisOutOfMemory(execAbort)).toBe(true);
  });

  it('is false for other replies and for anything that is not an error', () => {
    expect(isRedisOutOfMemory(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
    expect(isRedisOutOfMemory(Object.assign(new Error('EXECABORT'), { previousErrors: [new Error('ERR syntax error')] }))).toBe(false);
    expect(isRedisOutOfMemory(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBe(false);
    expect(isRedisOutOfMemory(undefined)).toBe(false);
    expect(isRedisOutOfMemory('OOM command not allowed')).toBe(false);
  });
});

describe('retryWhileStorageFull', () => {
  const quick = { tries: 3, delayMs: 1 };

  it('tries again while storage is full and returns the first success', async () => {
    let calls = 0;
    const value = await retryWhileStorageFull(async () => {
      calls++;
      if (calls < 3) throw storageFullError(oom());
      return 'stored';
    }, quick);
    expect(value).toBe('stored');
    expect(calls).toBe(3);
  });

  it('gives up after the last try with the storage_full error itself', async () => {
    let calls = 0;
    const failing = retryWhileStorageFull(async () => {
      calls++;
      throw storageFullError();
    }, quick);
    await expect(failing).rejects.toMatchObject({ code: ErrorCode.StorageFull });
    expect(calls).toBe(3);
  });

  it('passes any other error at once', async () => {
    let calls = 0;
    const failing = retryWhileStorageFull(async () => {
      calls++;
      throw new DomainError(ErrorCode.RedisUnavailable, 'down');
    }, quick);
    await expect(failing).rejects.toMatchObject({ code: ErrorCode.RedisUnavailable });
    expect(calls).toBe(1);
  });

  it('storage_full is a DomainError with its cause kept for the logs', () => {
    const cause = oom();
    const err = storageFullError(cause);
    expect(isStorageFull(err)).toBe(true);
    expect(err.cause).toBe(cause);
    expect(err.message).not.toMatch(/maxmemory'/);
  });
});
