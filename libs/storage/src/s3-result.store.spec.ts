import { DomainError, ErrorCode } from '@app/common';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PassThrough, Readable } from 'node:stream';
import { JobRecord, ResultStore, StoredImage, type StoredInput } from './result-store';
import { EXPIRES_AT_META, s3ClientConfig, S3ResultStore, type S3ResultStoreOptions } from './s3-result.store';

const TTL_S = 600;
const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);

type Send = (cmd: unknown, opts?: { abortSignal?: AbortSignal }) => Promise<unknown>;

/** The records half: what the S3 store must hand through untouched. */
class FakeRecords extends ResultStore {
  records = new Map<string, JobRecord>();
  deleted: string[] = [];
  closed = false;
  async putImage(): Promise<void> {
    throw new Error('images never go to the records store');
  }
  async getImage(): Promise<StoredImage | undefined> {
    throw new Error('images never come from the records store');
  }
  inputs = new Map<string, StoredInput>();
  async putInput(id: string, input: StoredInput) {
    this.inputs.set(id, input);
  }
  async getInput(id: string) {
    return this.inputs.get(id);
  }
  async putRecord(id: string, r: JobRecord) {
    this.records.set(id, r);
  }
  async getRecord(id: string) {
    return this.records.get(id);
  }
  async wasExpired(id: string) {
    return id === 'gone';
  }
  async delete(id: string) {
    this.deleted.push(id);
  }
  async close() {
    this.closed = true;
  }
}

function s3Error(name: string, status: number): Error {
  return Object.assign(new Error(`${name} from the bucket at 10.0.0.7`), { name, $metadata: { httpStatusCode: status } });
}

function bodyOf(bytes: Buffer): Readable {
  return Readable.from([bytes]);
}

describe('S3ResultStore', () => {
  let clock: number;
  let client: S3Client;
  let send: jest.MockedFunction<Send>;
  let records: FakeRecords;

  const make = (o: Partial<S3ResultStoreOptions> = {}) =>
    new S3ResultStore(client, records, { bucket: 'bkt', prefix: 'results', ttlSeconds: TTL_S, timeoutMs: 1000, now: () => clock, ...o });
  const sent = <T>(type: new (...a: never[]) => T): T[] => send.mock.calls.map((c) => c[0]).filter((c): c is T => c instanceof type);

  beforeEach(() => {
    clock = T0;
    records = new FakeRecords();
    client = new S3Client({
      ...s3ClientConfig({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, timeoutMs: 1000 }),
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
    });
    send = jest.fn<ReturnType<Send>, Parameters<Send>>();
    client.send = send as unknown as S3Client['send'];
  });
  afterEach(() => client.destroy());

  async function failure(p: Promise<unknown>): Promise<DomainError> {
    const err = await p.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    return err as DomainError;
  }

  describe('putImage', () => {
    it('uploads under <prefix>/<job>/<index> with type, length, cache headers and the job expiry', async () => {
      send.mockResolvedValue({});
      const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0xff]);
      await make().putImage('job-1', 2, bytes, 'image/png');
      const [put] = sent(PutObjectCommand);
      const expires = new Date(T0 + TTL_S * 1000);
      expect(put.input).toEqual({
        Bucket: 'bkt', Key: 'results/job-1/2', Body: bytes, ContentLength: 6, ContentType: 'image/png',
        CacheControl: `private, max-age=${TTL_S}, immutable`, Expires: expires, Metadata: { [EXPIRES_AT_META]: expires.toISOString() },
      });
      expect(send.mock.calls[0][1]?.abortSignal).toBeInstanceOf(AbortSignal);
    });

    it('objects behind a public base URL are publicly cacheable; a prefix that ends in / or is empty is kept as is', async () => {
      send.mockResolvedValue({});
      await make({ prefix: 'a/b/', publicBaseUrl: 'https://images.example.net' }).putImage('job-1', 0, Buffer.from('x'), 'image/webp');
      await make({ prefix: '' }).putImage('job-1', 0, Buffer.from('x'), 'image/webp');
      const [a, b] = sent(PutObjectCommand);
      expect(a.input).toMatchObject({ Key: 'a/b/job-1/0', CacheControl: `public, max-age=${TTL_S}, immutable` });
      expect(b.input.Key).toBe('job-1/0');
    });

    it('refuses bad input before any call', async () => {
      const store = make();
      expect((await failure(store.putImage('../x', 0, Buffer.from('x'), 'image/png'))).code).toBe(ErrorCode.ValidationFailed);
      expect((await failure(store.putImage('job-1', -1, Buffer.from('x'), 'image/png'))).code).toBe(ErrorCode.ValidationFailed);
      expect((await failure(store.putImage('job-1', 0, Buffer.from('x'), 'image/png\r\nX: 1'))).code).toBe(ErrorCode.ValidationFailed);
      expect((await failure(store.openImage('a/b', 0))).code).toBe(ErrorCode.ValidationFailed);
      expect(send).not.toHaveBeenCalled();
    });
  });

  describe('failures are storage_unavailable, with the cause kept out of the details', () => {
    it.each([
      ['credentials refused', s3Error('InvalidAccessKeyId', 403)],
      ['signature refused', s3Error('SignatureDoesNotMatch', 403)],
      ['no such bucket', s3Error('NoSuchBucket', 404)],
      ['a 5xx', s3Error('InternalError', 500)],
      ['connection refused', Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:9000'), { code: 'ECONNREFUSED' })],
    ])('%s', async (_what, cause) => {
      send.mockRejectedValue(cause);
      const store = make();
      for (const p of [store.putImage('job-1', 0, Buffer.from('x'), 'image/png'), store.openImage('job-1', 0), store.getImage('job-1', 0), store.delete('job-1'), store.sweep()]) {
        const err = await failure(p);
        expect(err.code).toBe(ErrorCode.StorageUnavailable);
        expect(err.cause).toBe(cause);
        expect(JSON.stringify(err.details)).not.toContain('10.0.0.7');
      }
    });

    it('a call that never answers fails at the deadline and is aborted', async () => {
      let signal: AbortSignal | undefined;
      send.mockImplementation((_cmd, opts) => {
        signal = opts?.abortSignal;
        return new Promise(() => undefined); // ignores the abort too: the race must still answer
      });
      const err = await failure(make({ timeoutMs: 50 }).putImage('job-1', 0, Buffer.from('x'), 'image/png'));
      expect(err.code).toBe(ErrorCode.StorageUnavailable);
      expect(err.cause).toMatchObject({ name: 'TimeoutError' });
      expect(signal?.aborted).toBe(true);
    });

    it('a download body that breaks half-way is storage_unavailable for a buffered read', async () => {
      const body = new PassThrough();
      send.mockResolvedValue({ Body: body, ContentType: 'image/png', Metadata: {} });
      const read = make().getImage('job-1', 0);
      body.write(Buffer.from('half'));
      setImmediate(() => body.destroy(new Error('socket hang up')));
      expect((await failure(read)).code).toBe(ErrorCode.StorageUnavailable);
    });
  });

  describe('reads', () => {
    it('a live image: the stream, its type and length; getImage buffers it', async () => {
      const bytes = Buffer.from('png bytes');
      send.mockImplementation(async () => ({ Body: bodyOf(bytes), ContentType: 'image/png', ContentLength: bytes.length, Metadata: { [EXPIRES_AT_META]: new Date(T0 + 1).toISOString() } }));
      const store = make();
      const stream = await store.openImage('job-1', 3);
      expect(stream).toMatchObject({ contentType: 'image/png', contentLength: bytes.length });
      expect(sent(GetObjectCommand)[0].input).toEqual({ Bucket: 'bkt', Key: 'results/job-1/3' });
      stream!.body.destroy();
      expect(await store.getImage('job-1', 3)).toEqual({ bytes, contentType: 'image/png' });
    });

    it('no such key: undefined (expired or never stored)', async () => {
      send.mockRejectedValue(s3Error('NoSuchKey', 404));
      expect(await make().openImage('job-1', 0)).toBeUndefined();
      expect(await make().getImage('job-1', 0)).toBeUndefined();
    });

    it('an object past its expiry that nobody swept yet is not served, and its body is released', async () => {
      const body = bodyOf(Buffer.from('old'));
      send.mockResolvedValue({ Body: body, ContentType: 'image/png', Metadata: { [EXPIRES_AT_META]: new Date(T0).toISOString() } });
      expect(await make().openImage('job-1', 0)).toBeUndefined();
      expect(body.destroyed).toBe(true);
    });

    it('an object without our metadata (uploaded by hand) is served with a fallback type', async () => {
      send.mockResolvedValue({ Body: bodyOf(Buffer.from('x')) });
      expect(await make().openImage('job-1', 0)).toMatchObject({ contentType: 'application/octet-stream', contentLength: undefined });
    });
  });

  describe('imageLink', () => {
    it('none configured: undefined, the API streams', async () => {
      expect(await make().imageLink('job-1', 0)).toBeUndefined();
      expect(await make({ signedUrlTtlSeconds: 0 }).imageLink('job-1', 0)).toBeUndefined();
    });

    it('a public base URL: <base>/<key>, never expiring, and it wins over signing', async () => {
      const store = make({ prefix: 'imgs (v1)/', publicBaseUrl: 'https://images.example.net/bucket/', signedUrlTtlSeconds: 60 });
      expect(await store.imageLink('job-1', 4)).toEqual({ url: 'https://images.example.net/bucket/imgs%20(v1)/job-1/4', expires: false });
      expect(send).not.toHaveBeenCalled();
    });

    it('signed: a presigned GET of the key that expires after the TTL, signed at the store clock', async () => {
      const link = await make({ signedUrlTtlSeconds: 90 }).imageLink('job-1', 1);
      expect(link?.expires).toBe(true);
      const url = new URL(link!.url);
      expect(url.origin + url.pathname).toBe('http://127.0.0.1:9/bkt/results/job-1/1');
      expect(url.searchParams.get('X-Amz-Expires')).toBe('90');
      expect(url.searchParams.get('X-Amz-Date')).toBe('20260102T030405Z');
      expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(send).not.toHaveBeenCalled(); // signing is local
    });

    it('signing without credentials is storage_unavailable', async () => {
      const noCreds = new S3Client({ region: 'us-east-1', credentials: async () => Promise.reject(new Error('Could not load credentials from any providers')) });
      try {
        const store = new S3ResultStore(noCreds, records, { bucket: 'bkt', prefix: '', ttlSeconds: TTL_S, timeoutMs: 1000, signedUrlTtlSeconds: 60 });
        expect((await failure(store.imageLink('job-1', 0))).code).toBe(ErrorCode.StorageUnavailable);
      } finally {
        noCreds.destroy();
      }
    });
  });

  describe('records, delete, sweep, close', () => {
    it('records and tombstones are the records store\'s', async () => {
      const store = make();
      await store.putRecord('job-1', { status: 'succeeded' });
      expect(await store.getRecord('job-1')).toEqual({ status: 'succeeded' });
      expect(records.records.get('job-1')).toEqual({ status: 'succeeded' });
      expect(await store.wasExpired('gone')).toBe(true);
      expect(send).not.toHaveBeenCalled();
    });

    it('delete removes every object of the job (one DeleteObject each) and then the record', async () => {
      send.mockImplementation(async (cmd) => {
        if (cmd instanceof ListObjectsV2Command) return { Contents: [{ Key: 'results/job-1/0' }, { Key: 'results/job-1/1' }] };
        return {};
      });
      await make().delete('job-1');
      expect(sent(ListObjectsV2Command)[0].input).toMatchObject({ Bucket: 'bkt', Prefix: 'results/job-1/' });
      expect(sent(DeleteObjectCommand).map((c) => c.input.Key).sort()).toEqual(['results/job-1/0', 'results/job-1/1']);
      expect(records.deleted).toEqual(['job-1']);
    });

    it('sweep pages through the prefix and deletes only our objects whose retention has ended', async () => {
      const ttlMs = TTL_S * 1000;
      const at = (ms: number) => new Date(T0 - ms);
      send.mockImplementation(async (cmd) => {
        if (cmd instanceof ListObjectsV2Command) {
          if (!cmd.input.ContinuationToken) {
            return { IsTruncated: true, NextContinuationToken: 'p2', Contents: [
              { Key: 'results/old/0', LastModified: at(ttlMs) }, // just expired
              { Key: 'results/young/0', LastModified: at(ttlMs - 1) },
              { Key: 'results/README.txt', LastModified: at(10 * ttlMs) }, // not ours
            ] };
          }
          return { IsTruncated: false, Contents: [
            { Key: 'results/old/1', LastModified: at(2 * ttlMs) },
            { Key: 'results/old/1/extra', LastModified: at(2 * ttlMs) }, // not our shape
            { Key: 'results/bad id/0', LastModified: at(2 * ttlMs) },
          ] };
        }
        return {};
      });
      expect(await make().sweep()).toBe(2);
      expect(sent(ListObjectsV2Command).map((c) => c.input)).toEqual([
        { Bucket: 'bkt', Prefix: 'results/', ContinuationToken: undefined },
        { Bucket: 'bkt', Prefix: 'results/', ContinuationToken: 'p2' },
      ]);
      expect(sent(DeleteObjectCommand).map((c) => c.input.Key).sort()).toEqual(['results/old/0', 'results/old/1']);
    });

    it('the sweeper sweeps only the rounds it claims; close stops it, closes the records store and the client', async () => {
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick'] });
      try {
        send.mockResolvedValue({ Contents: [] });
        const store = make();
        const destroy = jest.spyOn(client, 'destroy');
        const claims = [true, false, true];
        const claim = jest.fn(async () => claims.shift() ?? false);
        const sweep = jest.spyOn(store, 'sweep');
        store.startSweeper(1000, claim);
        await jest.advanceTimersByTimeAsync(2000);
        expect(claim).toHaveBeenCalledTimes(3);
        expect(sweep).toHaveBeenCalledTimes(2);
        await store.close();
        await jest.advanceTimersByTimeAsync(5000);
        expect(claim).toHaveBeenCalledTimes(3);
        expect(jest.getTimerCount()).toBe(0);
        expect(records.closed).toBe(true);
        expect(destroy).toHaveBeenCalled();
      } finally {
        jest.useRealTimers();
      }
    });
  });
});
