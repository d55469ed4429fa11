import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import request from 'supertest';
import { baseEnv, freePort, redisPing, requireBuild, ROOT, waitExit } from '../scripts/lib/processes';
import { waitFor } from './support/stack';

/**
 * `npm run demo` as a user runs it (scripts/demo.js from dist/, which npm test builds first), on
 * free ports and with nothing listening at its REDIS_URL, so it starts its own redis-server.
 */
interface Demo {
  child: ChildProcess;
  out: () => string;
  err: () => string;
}

function startDemo(env: Record<string, string>): Demo {
  requireBuild(['api', 'worker', 'sim', 'keys']);
  const child = spawn(process.execPath, [join(ROOT, 'scripts', 'demo.js')], {
    cwd: ROOT,
    env: { ...baseEnv(), LOG_LEVEL: 'warn', SIM_STEP_MS: '10', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (err += d));
  return { child, out: () => out, err: () => err };
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** An HTTP server on the port, answering 200 to everything: another dev server a user forgot. */
async function occupy(port: number): Promise<Server> {
  const srv = createServer((_req, res) => res.end('{}'));
  await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
  return srv;
}

describe('npm run demo', () => {
  describe('a running demo', () => {
    let demo: Demo;
    let api: string;
    let pids: { sim: number; api: number; worker: number };
    let redisUrl: string;

    beforeAll(async () => {
      const port = await freePort();
      api = `http://127.0.0.1:${port}`;
      demo = startDemo({ PORT: String(port), REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
      await waitFor(async () => (/Ctrl-C stops everything/.test(demo.out()) ? true : undefined), 60_000, 'the demo banner').catch((e: Error) => {
        throw new Error(`${e.message}\n--- demo output ---\n${demo.out().slice(-4000)}\n${demo.err().slice(-2000)}`);
      });
      const m = /simulator pid (\d+), API pid (\d+), worker pid (\d+)/.exec(demo.out());
      if (!m) throw new Error(`no pids in the banner:\n${demo.out()}`);
      pids = { sim: Number(m[1]), api: Number(m[2]), worker: Number(m[3]) };
      redisUrl = /Redis: +(\S+), queue prefix/.exec(demo.out())?.[1] ?? '';
    }, 90_000);

    afterAll(async () => {
      // Only when a test failed before the Ctrl-C test: the demo stops its children on SIGTERM, and
      // what it left is killed while its pids are surely still ours (before they could be reused).
      if (demo?.child.exitCode === null && demo.child.signalCode === null) {
        demo.child.kill('SIGTERM');
        await waitExit(demo.child);
        for (const pid of Object.values(pids ?? {})) if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
      }
    }, 60_000);

    it('prints the keys command for its own Redis and prefix, and a key created with it closes the API', async () => {
      expect(redisUrl).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
      const line = /API keys: +(.+)$/m.exec(demo.out())?.[1] ?? '';
      expect(line).toContain(`REDIS_URL=${redisUrl}`);
      expect(line).toMatch(/QUEUE_PREFIX=\S+ npm run keys -- create --name /);
      await request(api).get('/api/v1/models').expect(200); // open while no key exists

      // In a shell that knows nothing of the demo (no REDIS_URL, no QUEUE_PREFIX), as a user's second terminal.
      const keys = spawn('sh', ['-c', line], { cwd: ROOT, env: baseEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      keys.stdout?.on('data', (d) => (out += d));
      keys.stderr?.on('data', (d) => (out += d));
      expect((await waitExit(keys)).code).toBe(0);
      const key = /^ {2}(\S{20,})$/m.exec(out)?.[1];
      expect(key).toBeDefined();

      await request(api).get('/api/v1/models').expect(401);
      await request(api).get('/api/v1/models').set('Authorization', `Bearer ${key}`).expect(200);
    }, 60_000);

    it('names the playground, which the built API serves from dist/ (the page and every module it imports)', async () => {
      expect(demo.out()).toContain(`Playground: ${api}/playground`);
      const page = await request(api).get('/playground').expect(200).expect('Content-Type', /text\/html/);
      const refs = [...page.text.matchAll(/\b(?:src|href)="(\/playground\/assets\/[^"]+)"/g)].map((m) => m[1]);
      expect(refs.length).toBeGreaterThanOrEqual(2);
      for (const ref of refs) await request(api).get(ref).expect(200);
      await request(api).get('/playground/assets/api.js').expect(200).expect('Content-Type', /javascript/);
    });

    it('reports the simulator dying in one line, keeps the API and worker, and recovers readiness when it is back', async () => {
      await waitFor(async () => ((await request(api).get('/health/ready')).status === 200 ? true : undefined), 30_000, 'readiness 200');
      process.kill(pids.sim, 'SIGKILL');
      await waitFor(async () => ((await request(api).get('/health/ready')).status === 503 ? true : undefined), 15_000, 'readiness 503');
      await request(api).get('/health/live').expect(200);
      const deaths = demo.err().split('\n').filter((l) => /simulator .*exited/.test(l));
      expect(deaths).toHaveLength(1);
      expect(deaths[0]).toMatch(/SIGKILL.*API and worker keep running/);
      await waitFor(async () => ((await request(api).get('/health/ready')).status === 200 ? true : undefined), 45_000, 'readiness back to 200');
      expect(pidAlive(pids.api)).toBe(true);
      expect(pidAlive(pids.worker)).toBe(true);
      expect(demo.child.exitCode).toBeNull();
    }, 90_000);

    it('Ctrl-C stops every process it started, its redis-server included', async () => {
      const sims = [...demo.out().matchAll(/simulator is back \(pid (\d+)\)/g)].map((m) => Number(m[1]));
      demo.child.kill('SIGINT');
      expect((await waitExit(demo.child)).code).toBe(0);
      for (const pid of [pids.api, pids.worker, ...sims]) expect(pidAlive(pid)).toBe(false);
      expect(await redisPing(redisUrl)).toBe(false);
    }, 60_000);
  });

  describe('a taken port', () => {
    let holder: Server | undefined;
    let demo: Demo | undefined;

    afterEach(async () => {
      if (demo && demo.child.exitCode === null && demo.child.signalCode === null) {
        demo.child.kill('SIGTERM');
        await waitExit(demo.child);
      }
      await new Promise((r) => (holder ? holder.close(r) : r(undefined)));
      holder = undefined;
    }, 60_000);

    it.each([
      ['the API port', 'PORT'],
      ['the simulator port', 'SIM_PORT'],
    ])('fails on %s before any banner, with one line and a non-zero exit', async (_what, variable) => {
      const taken = await freePort();
      holder = await occupy(taken);
      const env: Record<string, string> = { PORT: String(await freePort()), REDIS_URL: `redis://127.0.0.1:${await freePort()}` };
      env[variable] = String(taken);
      demo = startDemo(env);
      const { code } = await waitExit(demo.child);
      expect(code).not.toBe(0);
      expect(demo.out()).not.toMatch(/running|redis-server|\[(api|worker|sim)\]/);
      const lines = demo.err().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`port ${taken} is already in use`);
      expect(lines[0]).toContain(variable);
    }, 60_000);
  });
});
