import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import request from 'supertest';
import { DomainError, ErrorCode } from '@app/common';
import { RedisKeys } from '@app/queue';
import { RedisResultStore, s3ClientConfig, S3ResultStore } from '@app/storage';
import { S3RVER_CREDENTIALS, TestS3Server, useS3rverCredentials } from './support/s3-server';
import { Stack, waitFor } from './support/stack';

const PREFIX = 'results';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface JobBody {
  id: string;
  status: string;
  attempts: number;
  error: { code: string } | null;
  images: { url: string; sha256: string; content_type: string }[];
}

/** Reads a whole response body as bytes (fetch, for URLs outside the API: the bucket, a CDN). */
async function fetchBytes(url: string): Promise<{ status: number; headers: Headers; bytes: Buffer }> {
  const res = await fetch(url);
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DomainError);
  return (err as DomainError).code;
}

describe('S3 result store (images in a real S3-protocol server, records in Redis)', () => {
  let awsEnv: { restore: () => void } | undefined;
  let s3: TestS3Server;
  let stack: Stack; // API + worker + simulator; downloads stream from the bucket
  let cdn: Stack; // a second API on the same Redis and bucket, with RESULT_PUBLIC_BASE_URL
  let signed: Stack; // a third one handing out presigned links
  let bucket: S3Client; // the test's own view of the bucket
  let job: JobBody;

  beforeAll(async () => {
    // The SDK's standard chain reads these itself; the service never does.
    awsEnv = useS3rverCredentials();
    s3 = await TestS3Server.start();
    const env = {
      RESULT_STORE: 's3',
      RESULT_S3_BUCKET: s3.bucket,
      RESULT_S3_PREFIX: PREFIX,
      RESULT_S3_ENDPOINT: s3.endpoint,
      RESULT_S3_FORCE_PATH_STYLE: 'true',
      RESULT_S3_TIMEOUT_MS: '2000',
      JOB_ATTEMPTS: '3',
    };
    stack = await Stack.start({ env });
    const apiOnly = { comfyui: 0, worker: false };
    cdn = await Stack.start({ ...apiOnly, env: { ...env, QUEUE_PREFIX: stack.env.QUEUE_PREFIX, RESULT_PUBLIC_BASE_URL: `${s3.endpoint}/${s3.bucket}/` } });
    signed = await Stack.start({ ...apiOnly, env: { ...env, QUEUE_PREFIX: stack.env.QUEUE_PREFIX, RESULT_S3_SIGNED_URL_TTL_SECONDS: '3' } });
    bucket = new S3Client({ ...s3ClientConfig({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, timeoutMs: 2000 }), credentials: S3RVER_CREDENTIALS });

    const created = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'a lighthouse at dusk', width: 256, height: 256, num_inference_steps: 4 }).expect(202);
    job = (await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}?wait=30`).expect(200)).body as JobBody;
  });

  afterAll(async () => {
    bucket?.destroy();
    await signed?.close();
    await cdn?.close();
    await stack?.close();
    await s3?.close();
    awsEnv?.restore();
  });

  it('the worker puts the image in the bucket with its type, cache headers and expiry; the record stays in Redis', async () => {
    expect(job).toMatchObject({ status: 'succeeded', error: null });
    const obj = await bucket.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${PREFIX}/${job.id}/0` }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    expect(sha256(bytes)).toBe(job.images[0].sha256);
    expect(obj.ContentType).toBe('image/png');
    expect(obj.CacheControl).toBe(`private, max-age=${stack.env.RESULT_TTL_SECONDS}, immutable`);
    const expiresAt = Date.parse(obj.Metadata?.['expires-at'] ?? '');
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + stack.env.RESULT_TTL_SECONDS * 1000);
    expect(obj.Expires?.getTime()).toBe(Math.floor(expiresAt / 1000) * 1000); // the HTTP date has whole seconds

    const keys = new RedisKeys(stack.env.QUEUE_PREFIX);
    expect(await stack.redis.exists(keys.jobRecord(job.id))).toBe(1);
    expect(await stack.redis.exists(keys.image(job.id, 0))).toBe(0);
  });

  it('the API streams the download from the bucket: same bytes, Content-Type, ETag, 304', async () => {
    const path = `/api/v1/images/jobs/${job.id}/images/0`;
    expect(job.images[0].url).toBe(`${stack.url}${path}`);
    const res = await request(stack.url).get(path).buffer(true).expect(200);
    expect(res.headers['content-type']).toBe('image/png');
    expect(sha256(res.body as Buffer)).toBe(job.images[0].sha256);
    expect(res.headers['content-length']).toBe(String((res.body as Buffer).length));
    expect(res.headers.etag).toBe(`"${job.images[0].sha256}"`);
    expect(res.headers['cache-control']).toBe(`private, max-age=${stack.env.RESULT_TTL_SECONDS}, immutable`);
    await request(stack.url).get(path).set('If-None-Match', res.headers.etag).expect(304);
    await request(stack.url).get(`/api/v1/images/jobs/${job.id}/images/1`).expect(404);
    // the synchronous answer reads the same object
    const sync = await request(stack.url).post('/api/v1/images/generate').send({ prompt: 'p', width: 256, height: 256, num_inference_steps: 2 }).expect(200);
    expect(sync.body.image_url).toMatch(/^data:image\/png;base64,/);
  });

  it('with RESULT_PUBLIC_BASE_URL the API redirects to the public object; the job still links to the API', async () => {
    const path = `/api/v1/images/jobs/${job.id}/images/0`;
    const resource = (await request(cdn.url).get(`/api/v1/images/jobs/${job.id}`).expect(200)).body as JobBody;
    expect(resource.images[0].url).toBe(`${cdn.url}${path}`);
    const res = await request(cdn.url).get(path).redirects(0).expect(302);
    expect(res.headers.location).toBe(s3.objectUrl(`${PREFIX}/${job.id}/0`));
    expect(res.headers.etag).toBe(`"${job.images[0].sha256}"`);
    const got = await fetchBytes(res.headers.location);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-type')).toBe('image/png');
    expect(sha256(got.bytes)).toBe(job.images[0].sha256);
  });

  it('signed links work, are never cached, and are refused once expired', async () => {
    const res = await request(signed.url).get(`/api/v1/images/jobs/${job.id}/images/0`).redirects(0).expect(302);
    expect(res.headers['cache-control']).toBe('private, no-store');
    const link = res.headers.location as string;
    expect(new URL(link).searchParams.get('X-Amz-Expires')).toBe('3');
    const got = await fetchBytes(link);
    expect(got.status).toBe(200);
    expect(sha256(got.bytes)).toBe(job.images[0].sha256);
    // Wait for the link's own expiry (3 s), as a client would meet it.
    const refused = await waitFor(async () => {
      const r = await fetchBytes(link);
      return r.status === 200 ? undefined : r;
    }, 20_000, 'the signed link to expire');
    expect(refused.status).toBe(403);
    expect(refused.bytes.toString()).toContain('Request has expired');
  });

  const records = () => new RedisResultStore(stack.redis, new RedisKeys(`${stack.env.QUEUE_PREFIX}-adapter`), 60);

  it('retention against the real server: past the TTL an object is refused, then swept; delete removes a job', async () => {
    let clock = Date.now();
    const client = new S3Client({ ...s3ClientConfig({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, timeoutMs: 2000 }), credentials: S3RVER_CREDENTIALS });
    // A prefix of its own: the sweep must not reach the job the other tests read.
    const store = new S3ResultStore(client, records(), { bucket: s3.bucket, prefix: 'sweep-test', ttlSeconds: 60, timeoutMs: 2000, now: () => clock });
    try {
      await store.putImage('old-job', 0, Buffer.from('old'), 'image/png');
      await store.putImage('old-job', 1, Buffer.from('old too'), 'image/png');
      await store.putImage('kept-job', 0, Buffer.from('kept'), 'image/webp');
      await store.putImage('deleted-job', 0, Buffer.from('bye'), 'image/png');
      await store.delete('deleted-job');
      expect(await store.getImage('deleted-job', 0)).toBeUndefined();

      clock += 61_000;
      expect(await store.getImage('old-job', 0)).toBeUndefined(); // past its expiry: refused before any sweep
      expect(await store.sweep()).toBe(3); // old-job ×2 and kept-job: all uploaded before now - TTL
      const listed = await bucket.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'sweep-test/' }));
      expect(listed.Contents ?? []).toEqual([]);
      expect(await bucket.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${PREFIX}/${job.id}/0` }))).toMatchObject({ ContentType: 'image/png' });
    } finally {
      await store.close();
    }
  });

  describe('failures', () => {

    it('a bucket that refuses our credentials: storage_unavailable on every call', async () => {
      const client = new S3Client({
        ...s3ClientConfig({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, timeoutMs: 2000 }),
        credentials: { accessKeyId: 'NOT-S3RVER', secretAccessKey: 'wrong' },
      });
      const store = new S3ResultStore(client, records(), { bucket: s3.bucket, prefix: PREFIX, ttlSeconds: 60, timeoutMs: 2000 });
      try {
        await expect(codeOf(store.putImage('job-1', 0, Buffer.from('x'), 'image/png'))).resolves.toBe(ErrorCode.StorageUnavailable);
        await expect(codeOf(store.openImage(job.id, 0))).resolves.toBe(ErrorCode.StorageUnavailable);
        const err = await store.getImage(job.id, 0).catch((e: unknown) => e);
        expect((err as DomainError).cause).toMatchObject({ name: 'InvalidAccessKeyId' });
      } finally {
        await store.close();
      }
    });

    it('a bucket that accepts connections and never answers: storage_unavailable at the deadline, no hang', async () => {
      const sockets = new Set<Socket>();
      const hung: Server = createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
      const { port } = hung.address() as { port: number };
      const client = new S3Client({
        ...s3ClientConfig({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, timeoutMs: 300 }),
        credentials: S3RVER_CREDENTIALS,
      });
      const store = new S3ResultStore(client, records(), { bucket: s3.bucket, prefix: PREFIX, ttlSeconds: 60, timeoutMs: 300 });
      try {
        await expect(codeOf(store.putImage('job-1', 0, Buffer.from('x'), 'image/png'))).resolves.toBe(ErrorCode.StorageUnavailable);
        await expect(codeOf(store.openImage('job-1', 0))).resolves.toBe(ErrorCode.StorageUnavailable);
        expect(sockets.size).toBeGreaterThan(0); // the calls did reach the server
      } finally {
        await store.close();
        for (const s of sockets) s.destroy();
        await new Promise((r) => hung.close(r));
      }
    });

    // Last: it stops the bucket for good.
    it('a bucket outage: downloads answer 503, a job retries and fails with storage_unavailable', async () => {
      await s3.stop();
      const dl = await request(stack.url).get(`/api/v1/images/jobs/${job.id}/images/0`).expect(503);
      expect(dl.body.error.code).toBe(ErrorCode.StorageUnavailable);
      expect(JSON.stringify(dl.body)).not.toContain('127.0.0.1');
      // A client that has the image is still answered from the record.
      await request(stack.url).get(`/api/v1/images/jobs/${job.id}/images/0`).set('If-None-Match', `"${job.images[0].sha256}"`).expect(304);

      const created = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'p', width: 256, height: 256, num_inference_steps: 2 }).expect(202);
      const failed = await waitFor(async () => {
        const r = (await request(stack.url).get(`/api/v1/images/jobs/${created.body.id}?wait=10`).expect(200)).body as JobBody;
        return r.status === 'failed' ? r : undefined;
      }, 60_000, 'the job to fail');
      expect(failed.error?.code).toBe(ErrorCode.StorageUnavailable);
      expect(failed.attempts).toBe(3);
      expect(failed.images).toEqual([]);
    });
  });
});
