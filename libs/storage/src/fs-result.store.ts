import { Logger } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type InputImageMeta, JobRecord, ResultStore, StoredImage, type StoredInput, TOMBSTONE_TTL_FACTOR } from './result-store';
import {
  assertContentType, assertImageBytes, assertImageIndex, assertJobId, assertJobRecord, isJobRecord,
  JOB_ID_PATTERN,
} from './storage-validation';

const META_FILE = 'meta.json';
const RECORD_FILE = 'record.json';
/** Tombstones live outside the job folders (which are removed on expiry). A dot keeps it out of the job id alphabet. */
const TOMBSTONE_DIR = '.gone';
export const FS_TEMP_PREFIX = '.tmp-';
/** A temp file older than this is debris of a crashed write, not a write in progress. */
const TEMP_GRACE_MS = 10 * 60_000;

interface JobMeta {
  expires_at: number;
}
interface Tombstone {
  until: number;
}

// Structural check: errors from node:fs are not always `instanceof Error` of the caller's realm (e.g. under Jest).
function isErrno(err: unknown, ...codes: string[]): boolean {
  const code = typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && codes.includes(code);
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}

async function readJson(path: string): Promise<unknown> {
  const buf = await readOptional(path);
  return buf === undefined ? undefined : JSON.parse(buf.toString('utf8'));
}

function expiryOf(value: unknown, field: 'expires_at' | 'until'): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const n = (value as Record<string, unknown>)[field];
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

/** Makes a rename in `dir` durable; some platforms cannot fsync a directory, which only costs durability. */
async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    if (!isErrno(err, 'EISDIR', 'EINVAL', 'EPERM', 'EBADF')) throw err;
  } finally {
    await handle?.close();
  }
}

/**
 * Temp file in the target's own folder (so rename stays on one filesystem and is atomic), fsync, then
 * rename over the target: a reader sees the old file or the new one, never a partial write.
 */
export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `${FS_TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
  const handle = await open(tmp, 'wx', 0o640);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/**
 * Results on the local filesystem, for a single-host deployment:
 *
 *   <dir>/<jobId>/meta.json        {"expires_at": ms}, refreshed by every put
 *   <dir>/<jobId>/record.json      the job record
 *   <dir>/<jobId>/img-<n>.bin      "<content type>\n" followed by the raw bytes
 *   <dir>/.gone/<jobId>.json       tombstone {"until": ms}, kept TOMBSTONE_TTL_FACTOR × TTL
 *   <dir>/input_<id>/              an input image: meta.json, input.json (its metadata), img-0.bin
 *
 * A job expires as a whole. Reads check expires_at (and remove an expired folder lazily); sweep()
 * removes what nobody reads.
 */
const INPUT_PREFIX = 'input_';
const INPUT_META_FILE = 'input.json';

export class FsResultStore extends ResultStore {
  private readonly logger = new Logger(FsResultStore.name);
  private readonly dir: string;
  private readonly ttlMs: number;
  private sweeper?: NodeJS.Timeout;
  private sweeping?: Promise<number>;

  constructor(dir: string, ttlSeconds: number, private readonly now: () => number = Date.now) {
    super();
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError(`ttlSeconds must be positive, got ${ttlSeconds}`);
    this.dir = resolve(dir);
    this.ttlMs = ttlSeconds * 1000;
  }

  async putImage(jobId: string, index: number, bytes: Buffer, contentType: string): Promise<void> {
    assertJobId(jobId);
    assertImageIndex(index);
    assertImageBytes(bytes);
    assertContentType(contentType);
    await this.touch(jobId);
    const header = Buffer.from(`${contentType}\n`, 'latin1');
    await writeFileAtomic(this.imagePath(jobId, index), Buffer.concat([header, bytes]));
  }

  async getImage(jobId: string, index: number): Promise<StoredImage | undefined> {
    assertJobId(jobId);
    assertImageIndex(index);
    if (!(await this.isLive(jobId))) return undefined;
    const file = await readOptional(this.imagePath(jobId, index));
    if (!file) return undefined;
    const nl = file.indexOf(0x0a);
    if (nl <= 0 || nl > 256) throw new Error(`Image ${index} of job ${jobId} has no content-type header`);
    return { contentType: file.subarray(0, nl).toString('latin1'), bytes: file.subarray(nl + 1) };
  }

  async putInput(id: string, input: StoredInput): Promise<void> {
    assertJobId(id);
    assertImageBytes(input.bytes);
    // An input folder expires and is swept like a job's; the prefix keeps it out of the job ids' way.
    const folder = `${INPUT_PREFIX}${id}`;
    await this.putImage(folder, 0, input.bytes, input.meta.content_type);
    await writeFileAtomic(join(this.jobDir(folder), INPUT_META_FILE), JSON.stringify(input.meta));
  }

  async getInput(id: string): Promise<StoredInput | undefined> {
    assertJobId(id);
    const folder = `${INPUT_PREFIX}${id}`;
    const meta = await readJson(join(this.jobDir(folder), INPUT_META_FILE));
    if (!isJobRecord(meta)) return undefined;
    const image = await this.getImage(folder, 0);
    if (!image) return undefined;
    return { bytes: image.bytes, meta: meta as unknown as InputImageMeta };
  }

  async putRecord(jobId: string, record: JobRecord): Promise<void> {
    assertJobId(jobId);
    assertJobRecord(record);
    const json = JSON.stringify(record);
    await this.touch(jobId);
    await writeFileAtomic(join(this.jobDir(jobId), RECORD_FILE), json);
    await mkdir(join(this.dir, TOMBSTONE_DIR), { recursive: true, mode: 0o750 });
    const tombstone: Tombstone = { until: this.now() + this.ttlMs * TOMBSTONE_TTL_FACTOR };
    await writeFileAtomic(this.tombstonePath(jobId), JSON.stringify(tombstone));
  }

  async getRecord(jobId: string): Promise<JobRecord | undefined> {
    assertJobId(jobId);
    if (!(await this.isLive(jobId))) return undefined;
    const value = await readJson(join(this.jobDir(jobId), RECORD_FILE));
    if (value === undefined) return undefined;
    if (!isJobRecord(value)) throw new Error(`Stored record of job ${jobId} is not a JSON object`);
    return value;
  }

  async wasExpired(jobId: string): Promise<boolean> {
    assertJobId(jobId);
    const until = expiryOf(await readJson(this.tombstonePath(jobId)), 'until');
    if (until === undefined || until <= this.now()) return false;
    return (await this.getRecord(jobId)) === undefined;
  }

  async delete(jobId: string): Promise<void> {
    assertJobId(jobId);
    await rm(this.jobDir(jobId), { recursive: true, force: true });
    await rm(this.tombstonePath(jobId), { force: true });
  }

  /** Removes expired job folders, expired tombstones and debris of crashed writes. Returns how many jobs it removed. */
  async sweep(): Promise<number> {
    // Sweeps run one after another: the timer and a caller may overlap.
    const run = (this.sweeping ?? Promise.resolve(0)).catch(() => 0).then(() => this.sweepOnce());
    this.sweeping = run;
    try {
      return await run;
    } finally {
      if (this.sweeping === run) this.sweeping = undefined;
    }
  }

  /** Sweeps now and then every intervalMs; the timer never keeps the process alive. */
  startSweeper(intervalMs: number): void {
    this.stopSweeper();
    const tick = () => {
      this.sweep().catch((err: unknown) => this.logger.warn(`Result sweep failed: ${err instanceof Error ? err.message : String(err)}`));
    };
    this.sweeper = setInterval(tick, intervalMs);
    this.sweeper.unref();
    tick();
  }

  async close(): Promise<void> {
    this.stopSweeper();
    await this.sweeping?.catch(() => undefined);
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private async sweepOnce(): Promise<number> {
    const now = this.now();
    let removed = 0;
    let entries;
    try {
      entries = await readdir(this.dir, { withFileTypes: true });
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return 0;
      throw err;
    }
    for (const entry of entries) {
      if (!entry.isDirectory() || !JOB_ID_PATTERN.test(entry.name)) continue;
      const jobDir = join(this.dir, entry.name);
      const expiresAt = expiryOf(await readJson(join(jobDir, META_FILE)).catch(() => undefined), 'expires_at');
      if (expiresAt === undefined) {
        // meta.json is written right after mkdir; a folder without (a readable) one is left from a crash.
        const st = await stat(jobDir).catch(() => undefined);
        if (st && now - st.mtimeMs > Math.max(this.ttlMs, TEMP_GRACE_MS)) {
          await rm(jobDir, { recursive: true, force: true });
          removed++;
        }
      } else if (expiresAt <= now) {
        await rm(jobDir, { recursive: true, force: true });
        removed++;
      } else {
        await this.removeStaleTemps(jobDir, now);
      }
    }
    const goneDir = join(this.dir, TOMBSTONE_DIR);
    for (const name of await readdir(goneDir).catch(() => [] as string[])) {
      const path = join(goneDir, name);
      if (name.startsWith(FS_TEMP_PREFIX)) {
        await this.removeIfStale(path, now);
        continue;
      }
      const until = expiryOf(await readJson(path).catch(() => undefined), 'until');
      if (until === undefined || until <= now) await rm(path, { force: true });
    }
    return removed;
  }

  private async removeStaleTemps(dir: string, now: number): Promise<void> {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith(FS_TEMP_PREFIX)) await this.removeIfStale(join(dir, name), now);
    }
  }

  private async removeIfStale(path: string, now: number): Promise<void> {
    const st = await stat(path).catch(() => undefined);
    if (st && now - st.mtimeMs > TEMP_GRACE_MS) await rm(path, { force: true });
  }

  /** Creates the job folder and pushes its expiry to now + TTL (written before the data it covers). */
  private async touch(jobId: string): Promise<void> {
    await mkdir(this.jobDir(jobId), { recursive: true, mode: 0o750 });
    const meta: JobMeta = { expires_at: this.now() + this.ttlMs };
    await writeFileAtomic(join(this.jobDir(jobId), META_FILE), JSON.stringify(meta));
  }

  /** Whether the job's retention still runs; an expired folder is removed on the way. */
  private async isLive(jobId: string): Promise<boolean> {
    const metaPath = join(this.jobDir(jobId), META_FILE);
    const expiresAt = expiryOf(await readJson(metaPath), 'expires_at');
    if (expiresAt === undefined) return false;
    if (expiresAt > this.now()) return true;
    // Re-read right before removing, so a put that just refreshed the job is not thrown away.
    const again = expiryOf(await readJson(metaPath), 'expires_at');
    if (again !== undefined && again <= this.now()) await rm(this.jobDir(jobId), { recursive: true, force: true });
    return again !== undefined && again > this.now();
  }

  private jobDir(jobId: string): string {
    return join(this.dir, jobId);
  }

  private imagePath(jobId: string, index: number): string {
    return join(this.jobDir(jobId), `img-${index}.bin`);
  }

  private tombstonePath(jobId: string): string {
    return join(this.dir, TOMBSTONE_DIR, `${jobId}.json`);
  }
}
