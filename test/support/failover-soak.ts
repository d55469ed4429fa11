import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { SentinelGroup } from './redis-server';
import { Stack, waitFor } from './stack';

// The Sentinel failover soak: submissions keep coming while the Redis primary is SIGKILLed again
// and again; afterwards every acknowledged (202) job is looked up. Counted in the words of
// shared reliability notes (Jepsen's total-queue): attempted, acknowledged, lost.

export interface FailoverReport {
  minReplicasAck: number;
  kills: number;
  replicaLagMs: number;
  attempted: number;
  acknowledged: number;
  /** Acknowledged, then unknown (404) or never terminal after the drain. */
  lost: string[];
  /** Acknowledged by an idempotent replay (a retry after a 5xx answered the job of the first try). */
  replayed: string[];
  succeeded: number;
  failed: number;
  /** 503 replication_unconfirmed answers (each retried with the same Idempotency-Key). */
  unconfirmed: number;
  /** Submissions given up after their retry answered 404: the key pointed at a job never created. */
  abandoned: number;
  /** Other 5xx or refused requests during the outages (retried too). */
  unavailable: number;
  /** Per kill: from SIGKILL to the sentinels agreeing on the new primary. */
  failoverMs: number[];
  /** Per kill: from SIGKILL to the first 202 of a request sent after it. */
  recoveryMs: number[];
  /** Per kill: readiness answered 503 at some point after the kill, then 200 again. */
  readinessDipped: boolean[];
  /** Submit latency while healthy (202s before the first kill), ms. */
  submitP50: number;
  submitP95: number;
}

type Answer = { status: number; replayed?: boolean; body: { id?: string; status?: string; error?: { code?: string } } };

/** One request on a fresh connection (no keep-alive: an API instance never holds a socket of ours across an outage). */
function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(url, { method, agent: false, headers: { ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: Answer['body'] = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Answer['body'];
        } catch {
          // not JSON: status is enough
        }
        resolve({ status: res.statusCode ?? 0, replayed: res.headers['idempotent-replayed'] === 'true', body: parsed });
      });
      res.on('error', () => resolve({ status: 0, body: {} }));
    });
    req.setTimeout(15_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: {} }));
    if (data) req.write(data);
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const percentile = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/**
 * `replicaLagMs`: before each kill the replica falls behind for that long (frozen), so the kill
 * lands while the primary holds writes no replica has: what REDIS_MIN_REPLICAS_ACK is for.
 */
export async function runFailoverSoak(opts: { minReplicasAck: number; kills: number; replicaLagMs?: number; submitters?: number; gapMs?: number }): Promise<FailoverReport> {
  const group = await SentinelGroup.start();
  let stack: Stack | undefined;
  let stop = false;
  const loops: Promise<void>[] = [];
  try {
    stack = await Stack.start({
      comfyui: 2,
      sim: { stepMs: 5 },
      env: {
        ...group.env,
        REDIS_MIN_REPLICAS_ACK: String(opts.minReplicasAck),
        REDIS_REPLICA_ACK_TIMEOUT_MS: '500',
        // Attempts a failover may cost (a result write refused while Redis switches) must not end a job.
        JOB_ATTEMPTS: '20',
        JOB_BACKOFF_MS: '300',
        HEALTH_CACHE_MS: '0',
        HEALTH_READY_CHECKS: 'redis,workers',
      },
    });
    const url = stack.url;
    const report: FailoverReport = {
      minReplicasAck: opts.minReplicasAck, kills: opts.kills, replicaLagMs: opts.replicaLagMs ?? 0, attempted: 0, acknowledged: 0, lost: [], replayed: [], succeeded: 0, failed: 0,
      unconfirmed: 0, abandoned: 0, unavailable: 0, failoverMs: [], recoveryMs: [], readinessDipped: [], submitP50: NaN, submitP95: NaN,
    };
    const acked = new Map<string, number>(); // job id → when the request that got its 202 was sent
    const healthyLatency: number[] = [];
    const answers = new Map<string, number>();
    const debug = (m: string) => process.env.SOAK_DEBUG && process.stdout.write(`[soak ${new Date().toISOString()}] ${m} answers=${JSON.stringify([...answers])}\n`);
    let killedAt = 0;
    let faulted = false;

    // Submitters: each logical submission carries its own Idempotency-Key and is retried until a 202.
    const submitter = async () => {
      while (!stop) {
        const key = randomUUID();
        report.attempted++;
        for (let tries = 0; !stop && tries < 400; tries++) {
          const started = Date.now();
          const r = await call('POST', `${url}/api/v1/images/jobs`, { prompt: 'a lighthouse through a failover', width: 256, height: 256, num_inference_steps: 1 }, { 'idempotency-key': key });
          if (r.status === 202 && r.body.id) {
            if (!faulted) healthyLatency.push(Date.now() - started);
            // When the attempt that got the 202 was sent: an answer that was merely slow (its write
            // done before a kill) must not count as the service being back after the kill.
            if (!acked.has(r.body.id)) acked.set(r.body.id, started);
            if (r.replayed) report.replayed.push(r.body.id);
            break;
          }
          if (r.status === 404) {
            // The key names a job that never made it (its add failed with Redis, and so did freeing
            // the key): this submission was never acknowledged; the client starts afresh.
            report.abandoned++;
            break;
          }
          if (r.status === 503 && r.body.error?.code === 'replication_unconfirmed') report.unconfirmed++;
          else report.unavailable++;
          if (process.env.SOAK_DEBUG) answers.set(`${r.status} ${r.body.error?.code ?? ''}`, (answers.get(`${r.status} ${r.body.error?.code ?? ''}`) ?? 0) + 1);
          await sleep(100);
        }
        await sleep(opts.gapMs ?? 150);
      }
    };
    for (let i = 0; i < (opts.submitters ?? 3); i++) loops.push(submitter());

    // Readiness, sampled all along.
    const readiness: { at: number; status: number }[] = [];
    loops.push((async () => {
      while (!stop) {
        // Stamped when the answer arrives: a probe sent just before a kill that answers 503 during
        // the outage is a dip after the kill (stamped at sending, it could hide the only 503).
        const { status } = await call('GET', `${url}/health/ready`);
        readiness.push({ at: Date.now(), status });
        await sleep(100);
      }
    })());

    const ackedSince = (t: number) => [...acked.values()].filter((at) => at > t).length;
    for (let k = 0; k < opts.kills; k++) {
      const since = Date.now();
      await waitFor(async () => (ackedSince(since) >= 10 ? true : undefined), 60_000, `acknowledged jobs before kill ${k + 1}`);
      faulted = true;
      const victim = await group.killPrimary({ replicaLagMs: opts.replicaLagMs });
      killedAt = Date.now();
      debug(`kill ${k + 1}: port ${victim.port}`);
      await group.waitForFailover(victim.port, 30_000);
      report.failoverMs.push(Date.now() - killedAt);
      debug(`failover done`);
      // The crashed server comes back as a replica of the new primary (its own data is discarded).
      await group.rejoin(victim, 30_000);
      debug(`rejoined`);
      const firstAck = await waitFor(async () => {
        const after = [...acked.values()].filter((at) => at > killedAt);
        return after.length ? Math.min(...after) : undefined;
      }, 60_000, `a 202 after kill ${k + 1}`);
      report.recoveryMs.push(firstAck - killedAt);
      const kill = killedAt;
      await waitFor(async () => (readiness.some((r) => r.at > kill && r.status === 200 && readiness.some((d) => d.at > kill && d.at < r.at && d.status === 503)) ? true : undefined), 30_000, 'readiness 200 after the outage')
        .then(() => report.readinessDipped.push(true), () => report.readinessDipped.push(false));
    }
    stop = true;
    await Promise.all(loops);
    report.acknowledged = acked.size;
    report.submitP50 = percentile(healthyLatency, 50);
    report.submitP95 = percentile(healthyLatency, 95);

    // Drain: every acknowledged job ends, or is found missing.
    const pending = new Set(acked.keys());
    const missing = new Map<string, number>();
    const deadline = Date.now() + 90_000;
    while (pending.size && Date.now() < deadline) {
      for (const id of [...pending]) {
        const r = await call('GET', `${url}/api/v1/images/jobs/${id}`);
        if (r.status === 404) {
          // Unknown on the current primary: a few looks apart, so a read during a blink is not a loss.
          missing.set(id, (missing.get(id) ?? 0) + 1);
          if ((missing.get(id) ?? 0) >= 3) pending.delete(id);
          continue;
        }
        if (r.body.status === 'succeeded') report.succeeded++;
        else if (r.body.status === 'failed' || r.body.status === 'canceled') report.failed++;
        else continue;
        pending.delete(id);
      }
      if (pending.size) await sleep(500);
    }
    report.lost = [...acked.keys()].filter((id) => (missing.get(id) ?? 0) >= 3 || pending.has(id));
    return report;
  } finally {
    stop = true;
    await Promise.all(loops).catch(() => undefined);
    await stack?.close();
    await group.destroy();
  }
}

export function printReport(r: FailoverReport): void {
  const ms = (xs: number[]) => `p50 ${percentile(xs, 50)} ms, max ${Math.max(...xs)} ms`;
  process.stdout.write(
    `failover soak (REDIS_MIN_REPLICAS_ACK=${r.minReplicasAck}): ${r.kills} primary SIGKILLs (replica ${r.replicaLagMs} ms behind at each); attempted ${r.attempted}, acknowledged ${r.acknowledged}, ` +
      `lost ${r.lost.length} (${r.lost.filter((id) => r.replayed.includes(id)).length} of them acknowledged by a replay, of ${r.replayed.length} replays), succeeded ${r.succeeded}, failed ${r.failed}; retried answers: ${r.unconfirmed} replication_unconfirmed, ${r.unavailable} other 5xx/refused; ${r.abandoned} abandoned (retry answered 404); ` +
      `failover ${ms(r.failoverMs)}; first 202 to a request sent after the kill ${ms(r.recoveryMs)}; readiness dipped and recovered ${r.readinessDipped.filter(Boolean).length}/${r.kills}; ` +
      `healthy submit latency p50 ${r.submitP50} ms, p95 ${r.submitP95} ms\n`,
  );
}
