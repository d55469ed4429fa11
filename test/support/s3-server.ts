import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';

/** s3rver's built-in account: what the SDK must sign with for s3rver to accept a request. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** A real S3-protocol server on a free port with one bucket, its data in a temp dir removed on close. */
export class TestS3Server {
  private constructor(
    private readonly server: S3rver,
    private readonly dir: string,
    readonly endpoint: string,
    readonly bucket: string,
  ) {}

  static async start(bucket = 'fictures-test'): Promise<TestS3Server> {
    const dir = mkdtempSync(join(tmpdir(), 'fictures-s3-'));
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
    const { port } = await server.run();
    return new TestS3Server(server, dir, `http://127.0.0.1:${port}`, bucket);
  }

  /** Path-style URL of an object, as a public bucket would serve it. */
  objectUrl(key: string): string {
    return `${this.endpoint}/${this.bucket}/${key}`;
  }

  /** Stops answering at once (an outage): open keep-alive connections are cut too. */
  async stop(): Promise<void> {
    const http = this.server.httpServer;
    if (!http?.listening) return;
    const closed = this.server.close();
    http.closeAllConnections();
    await closed;
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The AWS SDK's standard chain reads credentials from the environment: point it at s3rver's for the
 * spec, and `restore()` (in afterAll) puts back whatever was there before.
 */
export function useS3rverCredentials(): { restore: () => void } {
  const saved = { AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  return {
    restore: () => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    },
  };
}
