// The private redis-server of the e2e tests is the process toolkit's (also used by the demo and the
// soak): its own port and directory, stop/kill and start again on the same port for fault tests.
// Below it, the replicated and sharded set-ups of the high-availability specs: a Sentinel group
// (primary, replica, three sentinels) and a three-master Cluster, all real servers on free ports.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis, { Cluster } from 'ioredis';
import { freePort, HOST, RedisServer, redisPing, stopChild, track } from '../../scripts/lib/processes';
import { waitFor } from './wait-for';

export { freePort, RedisServer as TestRedisServer, type RedisServerOptions } from '../../scripts/lib/processes';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One command on a short-lived connection that never retries (the server may be down on purpose). */
async function ask(port: number, ...args: (string | number)[]): Promise<unknown> {
  const c = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return await c.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    c.disconnect();
  }
}

/** INFO replication as a map. */
async function replicationInfo(port: number): Promise<Record<string, string>> {
  const text = String(await ask(port, 'INFO', 'replication'));
  return Object.fromEntries(text.split(/\r?\n/).filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
}

/** Full syncs start at once (Redis waits 5 s for more replicas by default). */
const REPL_ARGS = ['--repl-diskless-sync-delay', '0'];

/** A sentinel: `redis-server <conf> --sentinel` (Debian ships no redis-sentinel binary), its conf in a directory of its own. */
export class TestSentinel {
  private child?: ChildProcess;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(name: string, primaryPort: number, quorum: number, timing: { downAfterMs: number; failoverTimeoutMs: number }): Promise<TestSentinel> {
    const s = new TestSentinel(await freePort(), mkdtempSync(join(tmpdir(), 'fictures-sentinel-')));
    // Sentinel rewrites its config file as it learns the group: a file of its own, writable.
    writeFileSync(join(s.dir, 'sentinel.conf'), [
      `port ${s.port}`, `bind ${HOST}`, `dir ${s.dir}`, 'logfile ""',
      `sentinel monitor ${name} ${HOST} ${primaryPort} ${quorum}`,
      `sentinel down-after-milliseconds ${name} ${timing.downAfterMs}`,
      `sentinel failover-timeout ${name} ${timing.failoverTimeoutMs}`,
      `sentinel parallel-syncs ${name} 1`,
      '',
    ].join('\n'));
    s.child = track(spawn('redis-server', [join(s.dir, 'sentinel.conf'), '--sentinel'], { stdio: 'ignore' }), { infrastructure: true });
    await waitFor(async () => ((await redisPing(s.port)) ? true : undefined), 15_000, `sentinel on port ${s.port}`);
    return s;
  }

  /** The port of the primary this sentinel believes in now. */
  async primaryPort(name: string): Promise<number> {
    const addr = (await ask(this.port, 'SENTINEL', 'get-master-addr-by-name', name)) as [string, string] | null;
    if (!addr) throw new Error(`sentinel ${this.port} does not know ${name}`);
    return Number(addr[1]);
  }

  async destroy(): Promise<void> {
    await stopChild(this.child, 'SIGKILL', 5_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A primary, a replica and three sentinels watching them, as production runs Redis with Sentinel.
 * killPrimary() crashes whichever server is primary now; rejoin() restarts it as a replica of the
 * new one, so the next failover again has a replica to promote.
 */
export class SentinelGroup {
  readonly name = 'fictures';

  private constructor(
    readonly servers: RedisServer[],
    readonly sentinels: TestSentinel[],
  ) {}

  static async start(opts: { downAfterMs?: number; failoverTimeoutMs?: number } = {}): Promise<SentinelGroup> {
    const primary = await RedisServer.start({ args: [...REPL_ARGS] });
    const replica = await RedisServer.start({ args: [...REPL_ARGS, '--replicaof', HOST, String(primary.port)] });
    const group = new SentinelGroup([primary, replica], []);
    try {
      await group.settledPrimaryWithoutSentinels(primary, replica);
      const timing = { downAfterMs: opts.downAfterMs ?? 1_000, failoverTimeoutMs: opts.failoverTimeoutMs ?? 4_000 };
      for (let i = 0; i < 3; i++) group.sentinels.push(await TestSentinel.start(group.name, primary.port, 2, timing));
      // Every sentinel has found the replica (and so can fail over to it) before a test kills anything.
      await waitFor(async () => {
        for (const s of group.sentinels) {
          const replicas = (await ask(s.port, 'SENTINEL', 'replicas', group.name)) as unknown[];
          if (!replicas.length) return undefined;
        }
        return true;
      }, 20_000, 'sentinels to discover the replica');
    } catch (e) {
      await group.destroy();
      throw e;
    }
    return group;
  }

  /** Before the sentinels exist: the replica's link to the primary is up. */
  private async settledPrimaryWithoutSentinels(primary: RedisServer, replica: RedisServer): Promise<void> {
    await waitFor(async () => ((await replicationInfo(replica.port)).master_link_status === 'up' && (await replicationInfo(primary.port)).role === 'master' ? true : undefined), 15_000, 'the replica to sync');
  }

  /** The environment that points the service at this group. */
  get env(): Record<string, string> {
    return { REDIS_SENTINELS: this.sentinels.map((s) => `${HOST}:${s.port}`).join(','), REDIS_SENTINEL_NAME: this.name };
  }

  /** The server the sentinels (a majority of them) call primary now. */
  async primary(): Promise<RedisServer> {
    const ports = await Promise.all(this.sentinels.map((s) => s.primaryPort(this.name).catch(() => -1)));
    const port = ports.sort((a, b) => ports.filter((p) => p === b).length - ports.filter((p) => p === a).length)[0];
    const server = this.servers.find((s) => s.port === port);
    if (!server) throw new Error(`the sentinels name an unknown primary (port ${port})`);
    return server;
  }

  /**
   * SIGKILL the primary (a crash: nothing flushed, no goodbye). Returns the server killed. With
   * `replicaLagMs`, the replica is frozen (SIGSTOP) and cut off that long first, and thawed after the
   * kill: the primary's writes of that stretch never reach it — the window asynchronous replication has.
   */
  async killPrimary(opts: { replicaLagMs?: number } = {}): Promise<RedisServer> {
    const victim = await this.primary();
    const replica = this.servers.find((s) => s !== victim && s.running);
    const pid = replica?.child?.pid;
    if (opts.replicaLagMs && pid) {
      process.kill(pid, 'SIGSTOP');
      try {
        // Cut the replication link too: a frozen replica's kernel would still buffer what the primary
        // sends and hand it over after the thaw; a frozen one cannot reconnect before the kill.
        await ask(victim.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
        await sleep(opts.replicaLagMs);
        await victim.kill();
      } finally {
        process.kill(pid, 'SIGCONT');
      }
    } else {
      await victim.kill();
    }
    return victim;
  }

  /** Resolves the new primary once every sentinel has switched away from `oldPort` and it answers as master. */
  async waitForFailover(oldPort: number, timeoutMs = 30_000): Promise<RedisServer> {
    return waitFor(async () => {
      const ports = await Promise.all(this.sentinels.map((s) => s.primaryPort(this.name)));
      if (ports.some((p) => p === oldPort) || new Set(ports).size !== 1) return undefined;
      const info = await replicationInfo(ports[0]);
      return info.role === 'master' ? this.servers.find((s) => s.port === ports[0]) : undefined;
    }, timeoutMs, `failover away from port ${oldPort}`);
  }

  /** Starts a killed server again as a replica of the current primary, and waits until the group has settled. */
  async rejoin(server: RedisServer, timeoutMs = 30_000): Promise<void> {
    const primary = await this.settledPrimary(timeoutMs, [server]);
    server.args = [...REPL_ARGS, '--replicaof', HOST, String(primary.port)];
    await server.startProcess();
    await this.settledPrimary(timeoutMs);
  }

  /**
   * Waits until the group is whole again: every sentinel names the same primary, that server says it
   * is a master, and every other running server replicates from it with its link up. `absent`:
   * servers not expected to run. A sentinel may still be reshuffling right after a failover.
   */
  async settledPrimary(timeoutMs: number, absent: RedisServer[] = []): Promise<RedisServer> {
    let seen = '';
    return waitFor(async () => {
      const ports = await Promise.all(this.sentinels.map((s) => s.primaryPort(this.name)));
      seen = `sentinels say ${ports.join(',')}`;
      if (new Set(ports).size !== 1) return undefined;
      const primary = this.servers.find((s) => s.port === ports[0]);
      if (!primary?.running) return undefined;
      const own = await replicationInfo(primary.port);
      seen += `; ${primary.port} role=${own.role}`;
      if (own.role !== 'master') return undefined;
      for (const other of this.servers.filter((s) => s !== primary && !absent.includes(s))) {
        const info = await replicationInfo(other.port);
        seen += `; ${other.port} role=${info.role} master_port=${info.master_port} link=${info.master_link_status}`;
        if (info.role !== 'slave' || Number(info.master_port) !== primary.port || info.master_link_status !== 'up') return undefined;
      }
      return primary;
    }, timeoutMs, 'the Sentinel group to settle').catch((e: Error) => {
      throw new Error(`${e.message} (last seen: ${seen})`);
    });
  }

  async destroy(): Promise<void> {
    await Promise.all(this.sentinels.map((s) => s.destroy().catch(() => undefined)));
    await Promise.all(this.servers.map((s) => s.destroy().catch(() => undefined)));
  }
}

/** Three masters (no replicas), every slot assigned: a Redis Cluster of the smallest useful shape. */
export class TestCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(masters = 3): Promise<TestCluster> {
    const nodes: RedisServer[] = [];
    const cluster = new TestCluster(nodes);
    try {
      for (let i = 0; i < masters; i++) {
        // nodes.conf lives in each server's own --dir.
        nodes.push(await RedisServer.start({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] }));
      }
      const made = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
      if (made.status !== 0) throw new Error(`redis-cli --cluster create failed: ${made.stderr || made.stdout}`);
      await waitFor(async () => {
        for (const n of nodes) if (!/cluster_state:ok/.test(String(await ask(n.port, 'CLUSTER', 'INFO')))) return undefined;
        return true;
      }, 30_000, 'cluster_state:ok on every node');
    } catch (e) {
      await cluster.destroy();
      throw e;
    }
    return cluster;
  }

  get env(): Record<string, string> {
    return { REDIS_CLUSTER_NODES: this.nodes.map((n) => `${HOST}:${n.port}`).join(',') };
  }

  /** Keys on each master (DBSIZE), by port. */
  async keysPerNode(): Promise<Record<number, number>> {
    const out: Record<number, number> = {};
    for (const n of this.nodes) out[n.port] = Number(await ask(n.port, 'DBSIZE'));
    return out;
  }

  client(): Cluster {
    return new Cluster(this.nodes.map((n) => ({ host: HOST, port: n.port })), { redisOptions: { maxRetriesPerRequest: 1 } });
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.destroy().catch(() => undefined)));
  }
}
