import OpenAI from 'openai';
import sharp from 'sharp';
import { startReceiver, type LocalReceiver } from '@app/webhooks/testing/local-receiver';
import { TestS3Server, useS3rverCredentials } from './support/s3-server';
import { Stack, waitFor } from './support/stack';

const SECRET = 'signed-links-spec-shared-secret-0123456789';
/** Webhooks on; the link key then still comes from SIGNED_URL_SECRET, which the worker shares. */
const WEBHOOK_SECRET = `whsec_${Buffer.from('signed-links-spec-webhook-key-32b').toString('base64')}`;

interface JobBody {
  id: string;
  status: string;
  cached: boolean;
  images: Array<{ url: string; signed_url: string; sha256: string }>;
}

/** Signed links across a fleet and over an object store that signs its own links (RESULT_STORE=s3). */
describe('signed image links: fleet, S3 presigning, cached jobs', () => {
  let awsEnv: { restore: () => void } | undefined;
  let s3: TestS3Server;
  let stack: Stack; // API + worker + simulator; downloads stream from the bucket
  let presigning: Stack; // another API of the fleet, which answers downloads with presigned bucket links
  let stranger: Stack; // an API with another secret
  let cdn: Stack; // an API of the fleet whose downloads go to a public origin (RESULT_PUBLIC_BASE_URL)
  let client: OpenAI;
  let receiver: LocalReceiver;

  beforeAll(async () => {
    receiver = await startReceiver();
    // The SDK's standard chain reads these itself; the service never does.
    awsEnv = useS3rverCredentials();
    s3 = await TestS3Server.start();
    const env = {
      RESULT_STORE: 's3',
      RESULT_S3_BUCKET: s3.bucket,
      RESULT_S3_ENDPOINT: s3.endpoint,
      RESULT_S3_FORCE_PATH_STYLE: 'true',
      RESULT_S3_TIMEOUT_MS: '2000',
      SIGNED_URL_SECRET: SECRET,
      WEBHOOK_SECRET,
      WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
      WEBHOOK_HTTPS_ONLY: 'false',
    };
    stack = await Stack.start({ env });
    const apiOnly = { comfyui: 0, worker: false };
    presigning = await Stack.start({ ...apiOnly, env: { ...env, QUEUE_PREFIX: stack.env.QUEUE_PREFIX, RESULT_S3_SIGNED_URL_TTL_SECONDS: '60' } });
    stranger = await Stack.start({ ...apiOnly, env: { ...env, QUEUE_PREFIX: stack.env.QUEUE_PREFIX, SIGNED_URL_SECRET: `${SECRET}-other` } });
    cdn = await Stack.start({ ...apiOnly, env: { ...env, QUEUE_PREFIX: stack.env.QUEUE_PREFIX, RESULT_PUBLIC_BASE_URL: `${s3.endpoint}/${s3.bucket}/` } });
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused-while-the-server-is-open', maxRetries: 0 });
  });

  afterAll(async () => {
    await cdn?.close();
    await stranger?.close();
    await presigning?.close();
    await stack?.close();
    await s3?.close();
    await receiver?.close();
    awsEnv?.restore();
  });

  it('a url result streams from the bucket; other instances with the same secret redirect to a presigned link or the public origin; another secret is 403', async () => {
    const res = await client.images.generate({ prompt: 'a lighthouse in the bucket', model: 'smoke-test', size: '256x256', response_format: 'url' });
    const link = new URL(res.data![0].url!);
    const direct = await fetch(link);
    expect(direct.status).toBe(200);
    const bytes = Buffer.from(await direct.arrayBuffer());
    expect((await sharp(bytes).metadata()).width).toBe(256);

    const viaFleet = new URL(`${link.pathname}${link.search}`, presigning.url);
    const redirect = await fetch(viaFleet, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const location = redirect.headers.get('location')!;
    expect(location.startsWith(`${s3.endpoint}/${s3.bucket}/`)).toBe(true);
    expect(location).toContain('X-Amz-Signature=');
    expect(redirect.headers.get('cache-control')).toBe('private, no-store');
    const followed = await fetch(viaFleet);
    expect(followed.status).toBe(200);
    expect(Buffer.from(await followed.arrayBuffer()).equals(bytes)).toBe(true);

    // With a public origin configured, the signed link leads there, cacheable while the link lives.
    const public302 = await fetch(new URL(`${link.pathname}${link.search}`, cdn.url), { redirect: 'manual' });
    expect(public302.status).toBe(302);
    expect(public302.headers.get('location')!.startsWith(`${s3.endpoint}/${s3.bucket}/`)).toBe(true);
    expect(public302.headers.get('location')).not.toContain('X-Amz-Signature');
    expect(public302.headers.get('cache-control')).toMatch(/^private, max-age=\d+, immutable$/);
    expect(Buffer.from(await (await fetch(new URL(`${link.pathname}${link.search}`, cdn.url))).arrayBuffer()).equals(bytes)).toBe(true);

    const refused = await fetch(new URL(`${link.pathname}${link.search}`, stranger.url));
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('signed_url_invalid');
  });

  it('a job answered from the result cache has signed links to the images it shares', async () => {
    const submit = async () => {
      const created = await fetch(`${stack.url}/api/v1/images/jobs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Prefer: 'wait=30' },
        body: JSON.stringify({ prompt: 'cached lighthouse', model: 'smoke-test', width: 256, height: 256, seed: 7 }),
      });
      expect(created.status).toBe(202);
      return (await created.json()) as JobBody;
    };
    const first = await submit();
    const second = await submit();
    expect([first.status, second.status, second.cached]).toEqual(['succeeded', 'succeeded', true]);
    expect(second.images[0].signed_url).toContain(`/api/v1/images/signed/${second.id}/0?`);
    const a = Buffer.from(await (await fetch(first.images[0].signed_url)).arrayBuffer());
    const got = await fetch(second.images[0].signed_url);
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe(`"${second.images[0].sha256}"`);
    expect(Buffer.from(await got.arrayBuffer()).equals(a)).toBe(true);
    // A link names one job: another job id with the same signature is refused.
    const swapped = second.images[0].signed_url.replace(second.id, first.id);
    expect((await fetch(swapped)).status).toBe(403);
  });

  it('webhook payloads (rendered by the worker) carry signed links the API honours', async () => {
    const created = await fetch(`${stack.url}/api/v1/images/jobs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'a lighthouse by webhook', model: 'smoke-test', width: 256, height: 256, webhook_url: receiver.url('/hook') }),
    });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const delivery = await waitFor(async () => receiver.requests.find((r) => JSON.parse(r.body.toString()).data?.id === id && JSON.parse(r.body.toString()).type === 'image.job.succeeded'), 20_000, 'the succeeded webhook');
    const payload = JSON.parse(delivery.body.toString()) as { data: JobBody };
    const link = payload.data.images[0].signed_url;
    expect(link).toContain(`/api/v1/images/signed/${id}/0?`);
    const got = await fetch(link);
    expect(got.status).toBe(200);
    expect((await sharp(Buffer.from(await got.arrayBuffer())).metadata()).width).toBe(256);
  });
});
