import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';

/** Picks a free TCP port on loopback by binding port 0 and releasing it. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServerOptions {
  port?: number;
  appendonly?: boolean;
}

/**
 * A private redis-server on loopback, with its own data directory, that a test can stop, kill and
 * start again on the same port (fault tests). Never touches the machine's shared Redis.
 */
export class TestRedisServer {
  readonly port: number;
  readonly url: string;
  private proc?: ChildProcess;
  private readonly dir: string;

  private constructor(port: number, private readonly appendonly: boolean) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.dir = mkdtempSync(join(tmpdir(), 'fictures-redis-'));
  }

  static async start(opts: RedisServerOptions = {}): Promise<TestRedisServer> {
    const server = new TestRedisServer(opts.port ?? (await freePort()), opts.appendonly ?? false);
    await server.startProcess();
    return server;
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async startProcess(): Promise<void> {
    if (spawnSync('redis-server', ['--version']).error) {
      throw new Error('redis-server is not installed (apt-get install redis-server), or set REDIS_URL');
    }
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '',
      '--appendonly', this.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec',
      '--maxmemory-policy', 'noeviction', '--protected-mode', 'yes', '--logfile', '',
    ];
    this.proc = spawn('redis-server', args, { stdio: 'ignore' });
    await this.waitReady();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
      client.on('error', () => undefined); // refused until the server is up
      try {
        await client.connect();
        if ((await client.ping()) === 'PONG') return;
      } catch {
        // not up yet
      } finally {
        // After a refused connect the client has already ended; disconnect() would then arm ioredis's
        // 2 s socket-destroy timer on a closed stream, holding the process open for nothing.
        if (client.status !== 'end') client.disconnect();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on port ${this.port} did not start`);
  }

  /** Graceful stop (SIGTERM: Redis saves and fsyncs the AOF). */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** Crash (SIGKILL). */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    const proc = this.proc;
    if (!proc || !this.running) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(sig);
    });
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
