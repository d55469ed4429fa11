import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { baseEnv } from '../scripts/lib/processes';

/**
 * The short chaos soak (bench/soak.js --short) as a child process: its own Redis, two simulators,
 * the API and two workers from dist/ (npm test builds before jest), worker kills, a simulator
 * restart, a Redis restart, socket drops, a hang and cancels. Passes only when the run reports
 * lost 0 and unexpected 0 and exits 0.
 */
describe('chaos soak (short)', () => {
  let child: ChildProcess | undefined;

  afterAll(async () => {
    const c = child;
    if (!c?.pid || c.exitCode !== null || c.signalCode !== null) return;
    // On a jest timeout the soak is still running: SIGTERM makes it stop everything it started, and
    // waiting for its exit keeps its pipes from holding jest open. SIGKILL only if it cannot stop.
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const force = setTimeout(() => c.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(force);
  }, 30_000);

  it('loses no job and shows nothing unexpected under worker kills, ComfyUI and Redis restarts', async () => {
    const root = join(__dirname, '..');
    const env = baseEnv();
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const c = spawn(process.execPath, [join(root, 'bench', 'soak.js'), '--short'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      let buf = '';
      c.stdout?.on('data', (d: Buffer) => (buf += d.toString()));
      c.stderr?.on('data', (d: Buffer) => (buf += d.toString()));
      c.on('error', reject);
      c.on('exit', (exitCode) => resolve({ code: exitCode, out: buf }));
    });
    const line = out.split('\n').find((l) => l.startsWith('SOAK RESULT:'));
    if (code !== 0 || !line) process.stdout.write(out.slice(-8000));
    expect(line).toBeDefined();
    expect(line).toMatch(/\blost 0,/);
    expect(line).toMatch(/\bunexpected 0,/);
    expect(line).toMatch(/acknowledged [1-9]\d*/);
    expect(code).toBe(0);
  }, 180_000);
});
