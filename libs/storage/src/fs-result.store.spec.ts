import { DomainError, ErrorCode } from '@app/common';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { mkdir, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FS_TEMP_PREFIX, FsResultStore } from './fs-result.store';
import { TOMBSTONE_TTL_FACTOR } from './result-store';

const TTL_S = 60;
const TTL_MS = TTL_S * 1000;

/** Every file under dir, relative, recursively. */
async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const rel = join(prefix, e.name);
    if (e.isDirectory()) out.push(rel + '/', ...(await listTree(join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

describe('FsResultStore', () => {
  let dir: string;
  let clock: number;
  let store: FsResultStore;
  const now = () => clock;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fictures-results-'));
    clock = Date.now();
    store = new FsResultStore(dir, TTL_S, now);
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('input images', () => {
    it('keeps an input with its metadata for the TTL, apart from job ids, and sweeps it after', async () => {
      const bytes = randomBytes(4096);
      const meta = { owner: 'key-1', content_type: 'image/png', width: 8, height: 4, bytes: bytes.length, sha256: 'ab', created_at: clock };
      await store.putInput('upl_1', { bytes, meta });
      expect(await store.getInput('upl_1')).toEqual({ bytes, meta });
      expect(await store.getRecord('upl_1')).toBeUndefined();
      expect(await store.getInput('upl_2')).toBeUndefined();
      clock += TTL_MS + 1;
      expect(await store.getInput('upl_1')).toBeUndefined();
      expect(await store.sweep()).toBe(0);
    });
  });

  describe('round trips', () => {
    it('stores binary images byte for byte with their content type', async () => {
      const bytes = Buffer.concat([Buffer.from([0x00, 0x0a, 0xff, 0xfe, 0xc3, 0x28, 0x0d, 0x0a, 0x00]), randomBytes(64 * 1024)]);
      await store.putImage('job-1', 0, bytes, 'image/png');
      await store.putImage('job-1', 1, Buffer.alloc(0), 'image/webp');

      const got = await store.getImage('job-1', 0);
      expect(got?.contentType).toBe('image/png');
      expect(got?.bytes.equals(bytes)).toBe(true);
      expect(await store.getImage('job-1', 1)).toEqual({ bytes: Buffer.alloc(0), contentType: 'image/webp' });
      expect(await store.getImage('job-1', 2)).toBeUndefined();
      expect(await store.getImage('other', 0)).toBeUndefined();
    });

    it('overwrites records', async () => {
      expect(await store.getRecord('job-1')).toBeUndefined();
      await store.putRecord('job-1', { id: 'job-1', status: 'running', nested: { a: [1, 'ü', null] } });
      expect(await store.getRecord('job-1')).toEqual({ id: 'job-1', status: 'running', nested: { a: [1, 'ü', null] } });
      await store.putRecord('job-1', { id: 'job-1', status: 'succeeded' });
      expect(await store.getRecord('job-1')).toEqual({ id: 'job-1', status: 'succeeded' });
    });

    it('delete forgets record, images and tombstone', async () => {
      await store.putImage('job-1', 0, Buffer.from('x'), 'image/png');
      await store.putRecord('job-1', { id: 'job-1' });
      await store.delete('job-1');
      expect(await store.getRecord('job-1')).toBeUndefined();
      expect(await store.getImage('job-1', 0)).toBeUndefined();
      expect(await store.wasExpired('job-1')).toBe(false);
      expect(await listTree(dir)).toEqual(['.gone/']);
      await expect(store.delete('never-existed')).resolves.toBeUndefined();
    });
  });

  describe('atomic writes', () => {
    it('leaves no temp files behind', async () => {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => store.putImage('job-1', i % 4, randomBytes(4096), 'image/jpeg')),
      );
      await store.putRecord('job-1', { id: 'job-1' });
      const files = await listTree(dir);
      expect(files.filter((f) => f.includes(FS_TEMP_PREFIX))).toEqual([]);
      expect(files.sort()).toEqual(
        ['.gone/', '.gone/job-1.json', 'job-1/', 'job-1/img-0.bin', 'job-1/img-1.bin', 'job-1/img-2.bin', 'job-1/img-3.bin', 'job-1/meta.json', 'job-1/record.json'].sort(),
      );
    });

    it('a reader during rewrites sees the old value or the new one, never a torn one', async () => {
      const size = 2 * 1024 * 1024;
      const versions = [0x11, 0x22, 0x33, 0x44, 0x55].map((b) => Buffer.alloc(size, b));
      const bigRecord = (v: number) => ({ v, pad: String(v).repeat(200_000) });
      await store.putImage('job-1', 0, versions[0], 'image/png');
      await store.putRecord('job-1', bigRecord(0));

      let writing = true;
      const writer = (async () => {
        for (let i = 1; i < versions.length; i++) {
          await store.putImage('job-1', 0, versions[i], i % 2 ? 'image/jpeg' : 'image/png');
          await store.putRecord('job-1', bigRecord(i));
        }
        writing = false;
      })();

      let reads = 0;
      let readsDuringWrites = 0;
      try {
        while (writing || reads < 5) {
          if (writing) readsDuringWrites++;
          const [img, rec] = await Promise.all([store.getImage('job-1', 0), store.getRecord('job-1')]);
          expect(img).toBeDefined();
          expect(img!.bytes.length).toBe(size);
          const first = img!.bytes[0];
          // every byte equals the first: one whole version, not a mix or a prefix
          expect(img!.bytes.equals(Buffer.alloc(size, first))).toBe(true);
          expect(versions.some((v) => v[0] === first)).toBe(true);
          expect(rec).toBeDefined();
          expect(rec!.pad).toBe(String(rec!.v).repeat(200_000));
          reads++;
        }
      } finally {
        await writer; // never leave a writer running into the next test
      }
      expect(reads).toBeGreaterThanOrEqual(5);
      expect(readsDuringWrites).toBeGreaterThan(0);
      expect((await store.getImage('job-1', 0))!.bytes.equals(versions[versions.length - 1])).toBe(true);
      expect((await listTree(dir)).filter((f) => f.includes(FS_TEMP_PREFIX))).toEqual([]);
    });
  });

  describe('expiry', () => {
    it('answers until the TTL runs out, then undefined, and removes the folder lazily', async () => {
      await store.putImage('job-1', 0, Buffer.from('img'), 'image/png');
      await store.putRecord('job-1', { id: 'job-1' });

      clock += TTL_MS - 1;
      expect(await store.getRecord('job-1')).toEqual({ id: 'job-1' });
      expect(await store.getImage('job-1', 0)).toBeDefined();

      clock += 1;
      expect(await store.getRecord('job-1')).toBeUndefined();
      expect(await exists(join(dir, 'job-1'))).toBe(false);
      expect(await store.getImage('job-1', 0)).toBeUndefined();
    });

    it('an expired image is not served either', async () => {
      await store.putImage('job-1', 0, Buffer.from('img'), 'image/png');
      clock += TTL_MS;
      expect(await store.getImage('job-1', 0)).toBeUndefined();
      expect(await exists(join(dir, 'job-1'))).toBe(false);
    });

    it('putRecord refreshes the TTL of the whole job', async () => {
      await store.putImage('job-1', 0, Buffer.from('img'), 'image/png');
      await store.putRecord('job-1', { v: 1 });
      clock += TTL_MS - 1000;
      await store.putRecord('job-1', { v: 2 });
      clock += TTL_MS - 1000;
      expect(await store.getRecord('job-1')).toEqual({ v: 2 });
      expect(await store.getImage('job-1', 0)).toBeDefined();
    });

    it('wasExpired: false while live and for unknown jobs, true after expiry until the tombstone runs out', async () => {
      expect(await store.wasExpired('job-1')).toBe(false);
      await store.putImage('job-1', 0, Buffer.from('img'), 'image/png');
      expect(await store.wasExpired('job-1')).toBe(false); // in progress: no record, no tombstone yet
      await store.putRecord('job-1', { id: 'job-1' });
      expect(await store.wasExpired('job-1')).toBe(false);

      clock += TTL_MS;
      expect(await store.wasExpired('job-1')).toBe(true);
      expect(await store.getRecord('job-1')).toBeUndefined();
      expect(await store.wasExpired('job-1')).toBe(true);

      clock += TTL_MS * (TOMBSTONE_TTL_FACTOR - 1) - 1;
      expect(await store.wasExpired('job-1')).toBe(true);
      clock += 1;
      expect(await store.wasExpired('job-1')).toBe(false);
      expect(await store.wasExpired('never-existed')).toBe(false);
    });
  });

  describe('sweep', () => {
    it('removes expired job folders and tombstones, keeps live ones', async () => {
      await store.putRecord('old', { id: 'old' });
      await store.putImage('old', 0, Buffer.from('img'), 'image/png');
      clock += TTL_MS / 2;
      await store.putRecord('young', { id: 'young' });

      clock += TTL_MS / 2; // "old" just expired, "young" has half its TTL left
      expect(await store.sweep()).toBe(1);
      expect(await exists(join(dir, 'old'))).toBe(false);
      expect(await store.getRecord('young')).toEqual({ id: 'young' });
      expect(await store.wasExpired('old')).toBe(true); // tombstone survives the sweep

      clock += TTL_MS * TOMBSTONE_TTL_FACTOR;
      expect(await store.sweep()).toBe(1);
      expect(await listTree(dir)).toEqual(['.gone/']);
      expect(await store.wasExpired('old')).toBe(false);
    });

    it('removes debris of crashed writes once it is old, and ignores foreign entries', async () => {
      await store.putRecord('live', { id: 'live' });
      await writeFile(join(dir, 'live', `${FS_TEMP_PREFIX}fresh`), 'partial');
      await writeFile(join(dir, 'live', `${FS_TEMP_PREFIX}stale`), 'partial');
      await mkdir(join(dir, 'orphan')); // crashed between mkdir and meta.json
      await writeFile(join(dir, 'README.txt'), 'not a job');
      const past = new Date(clock - 24 * 3600_000);
      await utimes(join(dir, 'live', `${FS_TEMP_PREFIX}stale`), past, past);
      await utimes(join(dir, 'orphan'), past, past);

      expect(await store.sweep()).toBe(1);
      const files = await listTree(dir);
      expect(files).toContain(`live/${FS_TEMP_PREFIX}fresh`);
      expect(files).not.toContain(`live/${FS_TEMP_PREFIX}stale`);
      expect(files).not.toContain('orphan/');
      expect(files).toContain('README.txt');
      expect(await store.getRecord('live')).toEqual({ id: 'live' });
    });

    it('copes with a results dir that does not exist yet, and overlapping sweeps', async () => {
      const fresh = new FsResultStore(join(dir, 'not-yet'), TTL_S, now);
      expect(await fresh.sweep()).toBe(0);
      await store.putRecord('a', {});
      clock += TTL_MS;
      const counts = await Promise.all([store.sweep(), store.sweep(), store.sweep()]);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(1);
    });

    it('startSweeper sweeps right away; close() stops the timer', async () => {
      await store.putRecord('a', {});
      clock += TTL_MS;
      const spy = jest.spyOn(store, 'sweep');
      store.startSweeper(60_000);
      expect(spy).toHaveBeenCalledTimes(1);
      await store.close(); // waits for the in-flight sweep
      expect(await exists(join(dir, 'a'))).toBe(false);
    });

    it('the sweeper timer does not keep the process alive and is cleared on close', async () => {
      jest.useFakeTimers();
      try {
        const s = new FsResultStore(dir, TTL_S, now);
        const spy = jest.spyOn(s, 'sweep').mockResolvedValue(0);
        s.startSweeper(1000);
        jest.advanceTimersByTime(3000);
        expect(spy).toHaveBeenCalledTimes(4);
        await s.close();
        jest.advanceTimersByTime(5000);
        expect(spy).toHaveBeenCalledTimes(4);
        expect(jest.getTimerCount()).toBe(0);
      } finally {
        jest.useRealTimers();
      }
    });
  });

  describe('validation', () => {
    const bad = ['', '..', '../etc', 'a/b', 'a\\b', '/abs', '.gone', 'job 1', 'a.b', 'ü', 'a'.repeat(129), 'x\0y'];

    it.each(bad)('rejects job id %j everywhere without touching the disk', async (id) => {
      const expectInvalid = async (p: Promise<unknown>) => {
        const err = await p.then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(DomainError);
        expect((err as DomainError).code).toBe(ErrorCode.ValidationFailed);
      };
      await expectInvalid(store.putImage(id, 0, Buffer.from('x'), 'image/png'));
      await expectInvalid(store.getImage(id, 0));
      await expectInvalid(store.putRecord(id, {}));
      await expectInvalid(store.getRecord(id));
      await expectInvalid(store.wasExpired(id));
      await expectInvalid(store.delete(id));
      expect(await listTree(dir)).toEqual([]);
    });

    it('accepts the full job id alphabet up to 128 characters', async () => {
      const id = 'Az09_-'.repeat(21) + 'xy';
      expect(id).toHaveLength(128);
      await store.putRecord(id, { ok: true });
      expect(await store.getRecord(id)).toEqual({ ok: true });
    });

    it.each([-1, 1.5, NaN, Infinity])('rejects image index %p', async (index) => {
      await expect(store.putImage('job-1', index, Buffer.from('x'), 'image/png')).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
      await expect(store.getImage('job-1', index)).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
    });

    it.each(['', 'png', 'image/png\r\nX-Evil: 1', 'image/png\n', 'a'.repeat(300) + '/png'])('rejects content type %j', async (ct) => {
      await expect(store.putImage('job-1', 0, Buffer.from('x'), ct)).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
    });

    it('keeps content type parameters', async () => {
      await store.putImage('job-1', 0, Buffer.from('x'), 'image/png; q=1');
      expect((await store.getImage('job-1', 0))?.contentType).toBe('image/png; q=1');
    });

    it('rejects records that are not JSON objects', async () => {
      for (const rec of [null, [], 'x', 1]) {
        await expect(store.putRecord('job-1', rec as never)).rejects.toMatchObject({ code: ErrorCode.ValidationFailed });
      }
    });
  });
});
