import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { PassThrough } from 'node:stream';
import { createClient, type FicturesClient } from '../libs/client/src';
import { main } from '../libs/client/src/cli';
import { TestKeys } from './support/security';
import { Stack, waitFor } from './support/stack';

const BIN = join(__dirname, '..', 'libs', 'client', 'bin', 'fictures.js');
const BUILT = join(__dirname, '..', 'libs', 'client', 'dist', 'cli.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The built CLI as a child process, its output collected; `onStderr` sees stderr as it comes. */
function start(args: string[], env: Record<string, string>, cwd: string, onStderr?: (all: string, child: ChildProcess) => void): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    onStderr?.(stderr, child);
  });
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

describe('the fictures CLI (built, as a child process) against the running stack', () => {
  let stack: Stack;
  let keys: TestKeys;
  let key: string;
  let env: Record<string, string>;
  let dir: string;
  let api: FicturesClient;
  const run = (args: string[], extraEnv: Record<string, string> = {}) => start(args, { ...env, ...extraEnv }, dir).done;

  beforeAll(async () => {
    if (!existsSync(BUILT)) throw new Error('The client is not built: run `npm run build` before this spec');
    stack = await Stack.start({ comfyui: 1, sim: { stepMs: 150 } });
    keys = TestKeys.of(stack);
    key = (await keys.create('cli')).key;
    env = { FICTURES_API_URL: stack.url, FICTURES_API_KEY: key };
    dir = mkdtempSync(join(tmpdir(), 'fictures-cli-'));
    api = createClient({ baseUrl: stack.url, apiKey: key });
  });
  afterAll(async () => {
    await keys?.close();
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('generate -n 3 -o out.png --format webp writes out-1.webp … out-3.webp, real images of the asked size', async () => {
    const r = await run(['generate', 'three lighthouses', '-m', 'smoke-test', '--size', '320x256', '-n', '3', '-o', 'out.png', '--format', 'webp']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/^job [0-9a-f-]{36} (queued|running|succeeded)\n$/) });
    const written = readdirSync(dir).filter((f) => f.startsWith('out')).sort();
    expect(written).toEqual(['out-1.webp', 'out-2.webp', 'out-3.webp']);
    for (const f of written) {
      const meta = await sharp(join(dir, f)).metadata();
      expect({ f, format: meta.format, width: meta.width, height: meta.height }).toEqual({ f, format: 'webp', width: 320, height: 256 });
    }
    // Not a terminal: no progress line (no carriage returns), one line per file on stdout.
    expect(r.stdout + r.stderr).not.toContain('\r');
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('--json: generate, jobs list, jobs show and models print JSON that parses', async () => {
    const gen = await run(['--json', 'generate', 'a json lighthouse', '-m', 'smoke-test', '--aspect', '16:9', '-o', 'wide.jpg', '--quality', '70']);
    expect(gen.code).toBe(0);
    expect(gen.stderr).toBe('');
    const out = JSON.parse(gen.stdout) as { job: { id: string; status: string; params: { output_format: string } }; files: Array<{ path: string; width: number; height: number; content_type: string }> };
    expect(out.job.status).toBe('succeeded');
    expect(out.job.params.output_format).toBe('jpeg');
    expect(out.files).toHaveLength(1);
    expect(out.files[0]).toMatchObject({ path: 'wide.jpg', content_type: 'image/jpeg' });
    const meta = await sharp(join(dir, 'wide.jpg')).metadata();
    expect({ format: meta.format, width: meta.width, height: meta.height }).toEqual({ format: 'jpeg', width: out.files[0].width, height: out.files[0].height });
    expect(out.files[0].width).toBeGreaterThan(out.files[0].height);

    const list = await run(['--json', 'jobs', 'list', '--limit', '5']);
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { data: Array<{ id: string }> }).data[0].id).toBe(out.job.id);
    const show = await run(['--json', 'jobs', 'show', out.job.id]);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: out.job.id, status: 'succeeded' });
    const models = await run(['--json', 'models']);
    expect(models.code).toBe(0);
    expect((JSON.parse(models.stdout) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toContain('smoke-test');
  });

  it('--image uploads a local file for img2img; the result keeps its size', async () => {
    const input = join(dir, 'sketch.png');
    writeFileSync(input, await sharp({ create: { width: 288, height: 352, channels: 3, background: { r: 200, g: 60, b: 60 } } }).png().toBuffer());
    const r = await run(['generate', 'the sketch, painted', '-m', 'smoke-test', '--image', input, '--strength', '0.4', '-o', 'painted.png']);
    expect(r.code).toBe(0);
    const meta = await sharp(join(dir, 'painted.png')).metadata();
    expect({ width: meta.width, height: meta.height }).toEqual({ width: 288, height: 352 });
  });

  it('exit codes: 2 for a bad size or bad usage, 3 for a bad key, 4 for an unknown job, 7 for a server that is not there', async () => {
    const badSize = await run(['generate', 'x', '-m', 'smoke-test', '--size', '100x100', '-o', 'never.png']);
    expect(badSize.code).toBe(2);
    expect(badSize.stderr).toContain('validation_failed');
    expect(existsSync(join(dir, 'never.png'))).toBe(false);
    expect((await run(['generate', 'x', '--size', 'huge'])).code).toBe(2);
    expect((await run(['generate'])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);

    const badKey = await run(['models'], { FICTURES_API_KEY: 'fk_wrong' });
    expect(badKey.code).toBe(3);
    expect(badKey.stderr).toContain('unauthorized');
    // The flag wins over the environment.
    expect((await run(['--api-key', 'fk_wrong', 'jobs', 'list'])).code).toBe(3);

    const ghost = '00000000-0000-4000-8000-000000000000';
    const unknown = await run(['jobs', 'show', ghost]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('job_not_found');
    expect((await run(['jobs', 'cancel', ghost])).code).toBe(4);

    expect((await run(['models'], { FICTURES_API_URL: 'http://127.0.0.1:9' })).code).toBe(7);
  });

  it('exit 5 when the job fails, 6 when it is canceled elsewhere', async () => {
    // An error that persists: every attempt fails, then the job.
    stack.sims[0].faults.set({ executionError: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
    const failed = await run(['generate', 'doomed', '-m', 'smoke-test', '-o', 'failed.png']);
    stack.sims[0].faults.set({ executionError: null, executionErrorCount: null });
    expect(failed.code).toBe(5);
    expect(failed.stderr).toContain('comfyui_execution_error');
    expect(existsSync(join(dir, 'failed.png'))).toBe(false);

    let canceledElsewhere = false;
    const { done } = start(['generate', 'canceled by someone else', '--size', '256x256', '--steps', '16', '-o', 'c.png'], env, dir, (err) => {
      const id = /job ([0-9a-f-]{36})/.exec(err)?.[1];
      if (!id || canceledElsewhere) return;
      canceledElsewhere = true;
      void waitFor(async () => ((await api.getJob(id)).status === 'running' ? true : undefined), 20_000).then(() => api.cancel(id));
    });
    const r = await done;
    expect(canceledElsewhere).toBe(true);
    expect(r.code).toBe(6);
  });

  it('SIGINT cancels the job it started and exits 130', async () => {
    let jobId: string | undefined;
    let signalled = false;
    const { done } = start(['generate', 'interrupted', '--size', '256x256', '--steps', '16', '-o', 'int.png'], env, dir, (err, child) => {
      jobId ??= /job ([0-9a-f-]{36})/.exec(err)?.[1];
      if (!jobId || signalled) return;
      signalled = true;
      const id = jobId;
      void waitFor(async () => ((await api.getJob(id)).status === 'running' ? true : undefined), 20_000).then(() => child.kill('SIGINT'));
    });
    const r = await done;
    expect(r.code).toBe(130);
    expect(jobId).toBeDefined();
    const job = await waitFor(async () => {
      const j = await api.getJob(jobId as string);
      return ['succeeded', 'failed', 'canceled'].includes(j.status) ? j : undefined;
    }, 20_000, 'the interrupted job to end');
    expect(job.status).toBe('canceled');
    expect(existsSync(join(dir, 'int.png'))).toBe(false);
  });

  it('on a TTY, one live line (queued #k while it waits) → step i/N → downloading, cleared at the end (main() in-process with a TTY stderr)', async () => {
    const stderr = Object.assign(new PassThrough(), { isTTY: true, columns: 80 });
    const stdout = new PassThrough();
    let err = '';
    stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    let out = '';
    stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const io = { stdout, stderr, env, onInterrupt: () => () => undefined };
    const code = await main(['node', 'fictures', 'generate', 'a watched lighthouse', '--size', '256x256', '--steps', '6', '-o', join(dir, 'tty.png')], io);
    expect(code).toBe(0);
    const frames = err.split('\r\x1b[2K').filter(Boolean);
    expect(frames.some((f) => /^step \d\/6 \[[#-]{20}\]$/.test(f))).toBe(true);
    expect(frames).toContain('downloading 1/1');
    const steps = frames.filter((f) => f.startsWith('step ')).map((f) => Number(/^step (\d)/.exec(f)?.[1]));
    expect(steps).toEqual([...steps].sort((x, y) => x - y));
    expect(err.endsWith('\r\x1b[2K')).toBe(true);
    expect(out).toContain('tty.png  256x256  image/png');
  });
});
