import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import request from 'supertest';
import { freePort, TestRedisServer } from './support/redis-server';

// bench/edge.js reads the API against these floors: each must do the work it claims, or the comparison is void.
const FLOOR = join(__dirname, '..', 'bench', 'lib', 'edge-floor.js');

describe('bench/lib/edge-floor.js: the floors bench/edge.js measures the API against', () => {
  let server: TestRedisServer;
  let redis: Redis;
  let dir: string;
  const children: ChildProcess[] = [];
  const answer = { id: '0b9c6a3e-1f0e-4c61-9a0f-1d1e2c3b4a5f', status: 'succeeded', images: [{ index: 0 }] };

  async function start(kind: string): Promise<string> {
    const port = await freePort();
    const file = join(dir, `${kind}.json`);
    writeFileSync(file, JSON.stringify(answer));
    const child = spawn(process.execPath, [FLOOR, kind, String(port), server.url, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`${kind} floor exited with ${code}`)));
    });
    return `http://127.0.0.1:${port}`;
  }

  beforeAll(async () => {
    server = await TestRedisServer.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    dir = mkdtempSync(join(tmpdir(), 'edge-floor-'));
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    await redis?.quit();
    await server?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('bare answers the given bytes as JSON, without Redis', async () => {
    const url = await start('bare');
    const res = await request(url).get('/anything').expect(200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.body).toEqual(answer);
  });

  it.each(['get', 'nest', 'nest-fastify'])('%s makes the job GET\'s Redis round trips (the rate counter moves) and answers the record', async (kind) => {
    await redis.del('edge-floor:rate');
    const url = await start(kind);
    const res = await request(url).get(`/api/v1/images/jobs/${answer.id}`).expect(200);
    expect(res.body).toEqual(answer);
    await request(url).get(`/api/v1/images/jobs/${answer.id}`).expect(200);
    expect(await redis.get('edge-floor:rate')).toBe('2');
    expect(await redis.pttl('edge-floor:rate')).toBeGreaterThan(0);
  });

  it('submit adds a BullMQ job per request and answers 202 with its id', async () => {
    const url = await start('submit');
    const res = await request(url).post('/api/v1/images/jobs').send({ prompt: 'p', width: 256 }).expect(202);
    expect(res.body).toMatchObject({ status: 'queued', params: { prompt: 'p', width: 256 } });
    expect(await redis.hget(`bull:edge-floor:${res.body.id}`, 'name')).toBe('generate');
  });

  it('refuses a bad command line with its usage (exit 2)', () => {
    const r = spawnSync(process.execPath, [FLOOR, 'nope', '1', server.url, 'x'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^usage: node bench\/lib\/edge-floor\.js <bare\|get\|submit\|nest\|nest-fastify>/);
  });
});
