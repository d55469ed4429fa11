import { ConfigModule, loadEnv } from '@app/config';
import { Test } from '@nestjs/testing';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsResultStore } from './fs-result.store';
import { REDIS_CLIENT } from './redis.provider';
import { RedisResultStore } from './redis-result.store';
import { ResultStore } from './result-store';
import { S3ResultStore } from './s3-result.store';
import { StorageModule, sweepIntervalMs } from './storage.module';

/** Stands in for ioredis: no server in unit tests. */
function fakeRedis() {
  // set: the S3 sweeper's lock; null = another process holds it this round.
  return { status: 'ready', quit: jest.fn().mockResolvedValue('OK'), disconnect: jest.fn(), set: jest.fn().mockResolvedValue(null) };
}

describe('StorageModule', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fictures-storage-module-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function boot(vars: Record<string, string>, redis = fakeRedis()) {
    const env = loadEnv({ RESULT_DIR: dir, ...vars });
    const moduleRef = await Test.createTestingModule({ imports: [ConfigModule.forRoot(env), StorageModule.forRoot()] })
      .overrideProvider(REDIS_CLIENT)
      .useValue(redis)
      .compile();
    const app = moduleRef.createNestApplication();
    await app.init();
    return { app, redis, store: app.get(ResultStore) };
  }

  it('RESULT_STORE=fs: a working FsResultStore with its sweeper, stopped on shutdown', async () => {
    const { app, redis, store } = await boot({ RESULT_STORE: 'fs' });
    expect(store).toBeInstanceOf(FsResultStore);
    const close = jest.spyOn(store, 'close');
    await store.putRecord('job-1', { ok: true });
    expect(await store.getRecord('job-1')).toEqual({ ok: true });
    await app.close();
    expect(close).toHaveBeenCalled();
    expect(redis.quit).toHaveBeenCalled();
  });

  it('RESULT_STORE=redis (default): RedisResultStore on the shared client, which is quit on shutdown', async () => {
    const { app, redis, store } = await boot({});
    expect(store).toBeInstanceOf(RedisResultStore);
    expect(app.get(REDIS_CLIENT)).toBe(redis);
    await app.close();
    expect(redis.quit).toHaveBeenCalledTimes(1);
  });

  it('RESULT_STORE=s3: an S3ResultStore whose sweeper takes a Redis lock per round; RESULT_S3_SWEEP_INTERVAL_SECONDS=0 turns it off', async () => {
    const s3 = { RESULT_STORE: 's3', RESULT_S3_BUCKET: 'results-bucket', RESULT_S3_ENDPOINT: 'http://127.0.0.1:9', QUEUE_PREFIX: 'pfx' };
    const { app, redis, store } = await boot(s3);
    expect(store).toBeInstanceOf(S3ResultStore);
    expect((store as S3ResultStore).key('job-1', 0)).toBe('job-1/0');
    expect(redis.set).toHaveBeenCalledWith('pfx:result-sweep', '1', 'PX', sweepIntervalMs(86_400) - 1000, 'NX');
    const close = jest.spyOn(store, 'close');
    await app.close();
    expect(close).toHaveBeenCalled();

    const off = await boot({ ...s3, RESULT_S3_SWEEP_INTERVAL_SECONDS: '0', RESULT_S3_PREFIX: 'a/b' });
    expect((off.store as S3ResultStore).key('job-1', 2)).toBe('a/b/job-1/2');
    expect(off.redis.set).not.toHaveBeenCalled();
    await off.app.close();
  });

  it('a client that is not connected is disconnected, not quit', async () => {
    const redis = { ...fakeRedis(), status: 'reconnecting' };
    const { app } = await boot({}, redis);
    await app.close();
    expect(redis.quit).not.toHaveBeenCalled();
    expect(redis.disconnect).toHaveBeenCalled();
  });

  it('sweeps every tenth of the TTL, between once a minute and once an hour', () => {
    expect(sweepIntervalMs(60)).toBe(60_000);
    expect(sweepIntervalMs(86_400)).toBe(3_600_000);
    expect(sweepIntervalMs(3_600)).toBe(360_000);
  });
});
