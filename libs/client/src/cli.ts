import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { createClient, type CreateJobRequest, type FicturesClient, type JobProgress, type JobResource } from './client';
import { FicturesError } from './errors';

/** Exit codes that tell failure kinds apart (also in the README). */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  jobFailed: 5,
  canceled: 6,
  unavailable: 7,
  interrupted: 130,
} as const;

const FORMATS = ['png', 'jpeg', 'webp'] as const;
const ASPECTS = ['1:1', '16:9', '9:16', '4:3', '3:4', '3:2', '2:3'];
const EXTENSION: Record<string, string> = { png: 'png', jpeg: 'jpg', webp: 'webp' };
const FORMAT_OF_EXTENSION: Record<string, (typeof FORMATS)[number]> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/** The exit code of an error: usage/validation, auth, not found, job failed, canceled, unavailable. */
export function exitCodeOf(e: unknown): number {
  if (!(e instanceof FicturesError)) return EXIT.error;
  if (e.job) return e.job.status === 'canceled' ? EXIT.canceled : EXIT.jobFailed;
  if (e.code === 'canceled') return EXIT.canceled;
  if (e.code === 'aborted') return EXIT.interrupted;
  if (e.code === 'usage') return EXIT.usage;
  if (e.status === 401 || e.status === 403) return EXIT.auth;
  if (e.status === 404 || e.status === 410) return EXIT.notFound;
  if (e.status === 429 || e.status >= 500 || e.code === 'network_error' || e.code === 'timeout') return EXIT.unavailable;
  if (e.status >= 400) return EXIT.usage;
  return EXIT.error;
}

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: Record<string, string | undefined>;
  /** SIGINT source (the process by default). */
  onInterrupt: (handler: () => void) => () => void;
}

const processIo = (): CliIo => ({
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onInterrupt: (h) => {
    // The first Ctrl-C cancels the job and exits 130; a second one does not wait for that.
    let count = 0;
    const listener = () => (++count > 1 ? process.exit(EXIT.interrupted) : h());
    process.on('SIGINT', listener);
    return () => process.off('SIGINT', listener);
  },
});

const usage = (message: string) => new FicturesError('usage', message, 0);

const int = (name: string, min: number, max: number) => (v: string): number => {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  return Number(v);
};
const num = (name: string, min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}`);
  return n;
};
const size = (v: string): { width: number; height: number } => {
  const m = /^(\d{1,5})[xX×](\d{1,5})$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('size must be WIDTHxHEIGHT, e.g. 1328x1328');
  return { width: Number(m[1]), height: Number(m[2]) };
};

/** out.png + 3 images → out-1.png, out-2.png, out-3.png; the extension follows the format. */
export function outputPaths(out: string, count: number, format: string): string[] {
  const ext = extname(out);
  const stem = ext ? out.slice(0, -ext.length) : out;
  const wanted = `.${EXTENSION[format] ?? format}`;
  const keep = ext && FORMAT_OF_EXTENSION[ext.toLowerCase()] === format ? ext : wanted;
  if (count === 1) return [`${stem}${keep}`];
  return Array.from({ length: count }, (_, i) => `${stem}-${i + 1}${keep}`);
}

/** One line on a TTY, rewritten in place: queued #k → step i/N with a bar → downloading. */
class ProgressLine {
  private last = '';
  constructor(private readonly out: CliIo['stderr'], private readonly enabled: boolean) {}

  show(p: JobProgress): void {
    if (!this.enabled) return;
    let text: string;
    if (p.stage === 'queued') text = p.position === null ? 'queued' : `queued #${p.position + 1}`;
    else if (p.stage === 'running' && !p.total_steps) text = 'running';
    else if (p.stage === 'running') {
      const width = 20;
      const filled = Math.round((p.total_steps ? p.step / p.total_steps : 0) * width);
      text = `step ${p.step}/${p.total_steps} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
    } else text = `downloading ${p.index + 1}/${p.count}`;
    if (text === this.last) return;
    this.last = text;
    this.out.write(`\r\x1b[2K${text}`);
  }

  done(): void {
    if (this.enabled && this.last) this.out.write('\r\x1b[2K');
    this.last = '';
  }
}

/** Where an --image/--mask comes from: a local file is uploaded; an upload id, data: or https URL is passed on. */
async function inputImage(client: FicturesClient, value: string): Promise<string> {
  if (/^(data:|https?:\/\/|upl_)/.test(value)) return value;
  if (!existsSync(value)) throw usage(`${value}: no such file (give a file, an upload id upl_…, a data: URL or an https URL)`);
  return (await client.upload(readFileSync(value))).id;
}

interface GlobalOptions {
  apiUrl?: string;
  apiKey?: string;
  json?: boolean;
}

interface GenerateOptions {
  output?: string;
  model?: string;
  aspect?: string;
  size?: { width: number; height: number };
  n?: number;
  seed?: number;
  format?: (typeof FORMATS)[number];
  quality?: number;
  image?: string;
  mask?: string;
  strength?: number;
  steps?: number;
  negative?: string;
  cache?: boolean;
  timeout?: number;
}

/** Runs the CLI; resolves with its exit code (never calls process.exit). */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  let code: number = EXIT.ok;
  const print = (s: string) => io.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const fail = (e: unknown): number => {
    const c = exitCodeOf(e);
    if (e instanceof FicturesError) {
      const where = e.status ? ` (HTTP ${e.status}${e.requestId ? `, request ${e.requestId}` : ''})` : '';
      io.stderr.write(`fictures: ${e.code}: ${e.message}${where}\n`);
    } else io.stderr.write(`fictures: ${(e as Error)?.message ?? e}\n`);
    return c;
  };

  const program = new Command('fictures')
    .description('Generate images with a Fictures AI Server')
    .option('--api-url <url>', 'server origin (env FICTURES_API_URL, default http://127.0.0.1:8000)')
    .option('--api-key <key>', 'API key fk_… (env FICTURES_API_KEY)')
    .option('--json', 'machine-readable JSON on stdout, no progress')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const clientOf = (): FicturesClient => {
    const g = program.opts<GlobalOptions>();
    const baseUrl = g.apiUrl ?? io.env.FICTURES_API_URL ?? 'http://127.0.0.1:8000';
    if (!/^https?:\/\//.test(baseUrl)) throw usage(`--api-url must be an http(s) URL, not ${baseUrl}`);
    return createClient({ baseUrl, apiKey: g.apiKey ?? io.env.FICTURES_API_KEY, retries: 2 });
  };
  const json = () => program.opts<GlobalOptions>().json === true;
  const run = <A extends unknown[]>(fn: (...a: A) => Promise<number>) => async (...args: A) => {
    try {
      code = await fn(...args);
    } catch (e) {
      code = fail(e);
    }
  };

  program
    .command('generate')
    .description('generate images from a prompt and write them to files')
    .argument('<prompt>', 'what to draw')
    .option('-o, --output <file>', 'where to write (several images: out-1.png, out-2.png…; the extension follows --format)')
    .option('-m, --model <id>', 'model id (fictures models)')
    .addOption(new Option('-a, --aspect <ratio>', 'aspect ratio').choices(ASPECTS))
    .option('-s, --size <WxH>', 'width x height, e.g. 1664x928', size)
    .option('-n, --n <count>', 'how many images (one GPU run)', int('n', 1, 8))
    .option('--seed <seed>', 'seed (same seed + parameters → same image, maybe from the cache)', int('seed', 0, Number.MAX_SAFE_INTEGER))
    .addOption(new Option('-f, --format <format>', 'output format (default: from -o, else png)').choices(FORMATS))
    .option('-q, --quality <1-100>', 'jpeg/webp quality', int('quality', 1, 100))
    .option('--image <file|id|url>', 'img2img: start from this image (a file is uploaded first)')
    .option('--mask <file|id|url>', 'inpainting: white = repaint (needs --image)')
    .option('--strength <0-1>', 'how much of the image changes', num('strength', 0, 1))
    .option('--steps <n>', 'sampling steps', int('steps', 1, 150))
    .option('--negative <text>', 'negative prompt')
    .option('--no-cache', 'always render, even when an identical seeded job could answer')
    .option('--timeout <seconds>', 'give up waiting after this long (exit 7; the job keeps running)', int('timeout', 1, 86_400))
    .action(run(async (prompt: string, o: GenerateOptions) => generate(clientOf(), prompt, o)));

  const jobs = program.command('jobs').description('your jobs');
  jobs
    .command('list')
    .description('your jobs, newest first')
    .option('-l, --limit <n>', 'how many', int('limit', 1, 100), 20)
    .action(run(async (o: { limit: number }) => {
      const page = await clientOf().listJobs({ limit: o.limit });
      if (json()) print(JSON.stringify(page));
      else if (!page.data.length) print('no jobs');
      else for (const j of page.data) print([j.id, j.status.padEnd(9), j.model, j.created_at, `${j.images.length} image(s)`].join('  '));
      return EXIT.ok;
    }));
  jobs
    .command('show')
    .description('one job')
    .argument('<id>', 'job id')
    .action(run(async (id: string) => {
      const job = await clientOf().getJob(checkJobId(id));
      print(json() ? JSON.stringify(job) : describeJob(job));
      return EXIT.ok;
    }));
  jobs
    .command('cancel')
    .description('cancel a queued or running job')
    .argument('<id>', 'job id')
    .action(run(async (id: string) => {
      const job = await clientOf().cancel(checkJobId(id));
      print(json() ? JSON.stringify(job) : `${job.id} ${job.status}`);
      return EXIT.ok;
    }));

  program
    .command('models')
    .description('the models, their sizes and limits')
    .action(run(async () => {
      const models = await clientOf().models();
      if (json()) print(JSON.stringify({ data: models }));
      else for (const m of models) {
        print(`${m.id}${m.default ? ' (default)' : ''}  ${m.display_name}  modes: ${m.modes.join(', ')}  ${m.defaults.width}x${m.defaults.height}, ${m.defaults.num_inference_steps} steps, up to ${m.limits.num_images.max} images`);
        print(`  aspect ratios: ${Object.entries(m.aspect_ratios).map(([r, s]) => `${r} ${s.width}x${s.height}`).join(', ')}`);
      }
      return EXIT.ok;
    }));

  async function generate(client: FicturesClient, prompt: string, o: GenerateOptions): Promise<number> {
    if (o.aspect && o.size) throw usage('--aspect and --size cannot be given together');
    if (o.mask && !o.image) throw usage('--mask needs --image');
    const outExt = o.output ? extname(o.output).toLowerCase() : '';
    const format = o.format ?? FORMAT_OF_EXTENSION[outExt] ?? 'png';
    const request: CreateJobRequest = {
      prompt,
      ...(o.model ? { model: o.model } : {}),
      ...(o.aspect ? { aspect_ratio: o.aspect as CreateJobRequest['aspect_ratio'] } : {}),
      ...(o.size ? o.size : {}),
      ...(o.n ? { num_images: o.n } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(format !== 'png' ? { output_format: format } : {}),
      ...(o.quality !== undefined ? { output_quality: o.quality } : {}),
      ...(o.strength !== undefined ? { strength: o.strength } : {}),
      ...(o.steps !== undefined ? { num_inference_steps: o.steps } : {}),
      ...(o.negative !== undefined ? { negative_prompt: o.negative } : {}),
      ...(o.cache === false ? { cache: false } : {}),
    };
    if (o.image) request.image = await inputImage(client, o.image);
    if (o.mask) request.mask = await inputImage(client, o.mask);

    const progress = new ProgressLine(io.stderr, !json() && io.stderr.isTTY === true);
    const controller = new AbortController();
    let job: JobResource | undefined;
    let interrupted = false;
    const stopListening = io.onInterrupt(() => {
      interrupted = true;
      controller.abort();
    });
    try {
      try {
        job = await client.submit(request);
        if (!json()) io.stderr.write(`job ${job.id} ${job.status}\n`);
        if (interrupted) throw new FicturesError('aborted', 'interrupted', 0);
        const ended = ['succeeded', 'failed', 'canceled'].includes(job.status)
          ? job
          : await client.wait(job, { signal: controller.signal, onProgress: (p) => progress.show(p), ...(o.timeout ? { timeoutMs: o.timeout * 1000 } : {}) });
        job = ended;
        if (ended.status !== 'succeeded') {
          progress.done();
          if (json()) print(JSON.stringify({ job: ended, files: [] }));
          const e = ended.status === 'canceled' ? new FicturesError('canceled', `Job ${ended.id} was canceled`, 0, { job: ended }) : new FicturesError(ended.error?.code ?? 'job_failed', ended.error?.message ?? 'The job failed', 0, { job: ended });
          return fail(e);
        }
        const paths = outputPaths(o.output ?? `fictures-${ended.id.slice(0, 8)}`, ended.images.length, format);
        const files: Array<{ path: string; width: number; height: number; bytes: number; content_type: string; sha256: string }> = [];
        for (const [i, link] of ended.images.entries()) {
          progress.show({ stage: 'downloading', index: i, count: ended.images.length });
          const img = await client.download(ended, link.index, { signal: controller.signal });
          writeFileSync(paths[i], img.bytes);
          files.push({ path: paths[i], width: link.width, height: link.height, bytes: img.bytes.length, content_type: img.contentType, sha256: link.sha256 });
        }
        progress.done();
        if (json()) print(JSON.stringify({ job: ended, files }));
        else for (const f of files) print(`${f.path}  ${f.width}x${f.height}  ${f.content_type}  ${f.bytes} bytes${ended.cached ? '  (cached)' : ''}`);
        return EXIT.ok;
      } catch (e) {
        progress.done();
        if (!interrupted) throw e;
        // Ctrl-C: the job this command started is canceled, not left to run on a GPU for nobody.
        if (job && !['succeeded', 'failed', 'canceled'].includes(job.status)) {
          const canceled = await client.cancel(job.id).catch((err: unknown) => {
            io.stderr.write(`fictures: could not cancel job ${job?.id}: ${(err as Error).message}\n`);
            return undefined;
          });
          if (canceled) io.stderr.write(`job ${canceled.id} ${canceled.status}\n`);
        }
        return EXIT.interrupted;
      }
    } finally {
      stopListening();
    }
  }

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version are successes; anything else commander refused is a usage error.
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? EXIT.ok : EXIT.usage;
    }
    return fail(e);
  }
  return code;
}

function checkJobId(id: string): string {
  if (!/^[0-9a-f-]{36}$/i.test(id)) throw new FicturesError('job_not_found', `${id} is not a job id`, 404);
  return id;
}

function describeJob(j: JobResource): string {
  const lines = [
    `id         ${j.id}`,
    `status     ${j.status}${j.cached ? ' (cached)' : ''}`,
    `model      ${j.model}`,
    `prompt     ${j.params.prompt}`,
    `size       ${j.params.width}x${j.params.height}, seed ${j.params.seed}, ${j.params.num_inference_steps} steps`,
    `created    ${j.created_at}`,
  ];
  if (j.status === 'queued' && j.queue_position !== null) lines.push(`queue      #${j.queue_position + 1}`);
  if (j.progress) lines.push(`progress   step ${j.progress.step}/${j.progress.total_steps}`);
  if (j.finished_at) lines.push(`finished   ${j.finished_at}`);
  if (j.error) lines.push(`error      ${j.error.code}: ${j.error.message}`);
  for (const img of j.images) lines.push(`image ${img.index}    ${img.url}  ${img.width}x${img.height} ${img.content_type}`);
  return lines.join('\n');
}
