'use strict';
// `npm run demo`: everything on one machine with the ComfyUI simulator: Redis (yours, or a private
// one), the simulator, the API and the worker. Prints the docs URL and a curl that works.
const { spawn, spawnSync } = require('node:child_process');
const { mkdtempSync, rmSync } = require('node:fs');
const net = require('node:net');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { run, requireBuild, onStop, stopAll } = require('./processes');

function ping(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    let u;
    try {
      u = new URL(url);
    } catch {
      return resolve(false);
    }
    const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => done(/PONG|NOAUTH/.test(String(d))));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHttp(url, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return true;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

async function redisUrl() {
  const wanted = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  if (await ping(wanted)) {
    console.log(`Using Redis at ${wanted}`);
    return wanted;
  }
  if (spawnSync('redis-server', ['--version']).error) {
    console.error(`No Redis answers at ${wanted}, and redis-server is not installed.`);
    console.error('Install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis), or set REDIS_URL.');
    process.exit(1);
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fictures-demo-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  onStop(() => {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !(await ping(url)); i++) await new Promise((r) => setTimeout(r, 100));
  console.log(`Started a private redis-server at ${url} (stopped with the demo)`);
  return url;
}

async function main() {
  requireBuild(['api', 'worker', 'sim']);
  const redis = await redisUrl();
  const apiPort = Number(process.env.PORT || 8000);
  const simPort = Number(process.env.SIM_PORT || (await freePort()));
  const comfy = `http://127.0.0.1:${simPort}`;
  const common = { REDIS_URL: redis, COMFYUI_URLS: comfy, QUEUE_PREFIX: process.env.QUEUE_PREFIX || 'fictures-demo' };
  run('sim', { PORT: String(simPort), HOST: '127.0.0.1', SIM_STEP_MS: process.env.SIM_STEP_MS || '250' });
  if (!(await waitHttp(`${comfy}/system_stats`))) {
    console.error('the simulator did not start');
    return stopAll(1);
  }
  run('worker', common);
  run('api', { ...common, PORT: String(apiPort), HOST: process.env.HOST || '127.0.0.1' });
  const base = `http://127.0.0.1:${apiPort}`;
  if (!(await waitHttp(`${base}/health/live`))) {
    console.error('the API did not start');
    return stopAll(1);
  }
  console.log(`
Fictures AI Server is running (ComfyUI simulator at ${comfy}).
  API docs:   ${base}/docs
  Try it:     curl -s -X POST ${base}/api/v1/images/generate -H 'Content-Type: application/json' \\
                -d '{"prompt": "a lighthouse at dusk", "width": 512, "height": 512}' | head -c 300; echo
  Async job:  curl -s -X POST ${base}/api/v1/images/jobs -H 'Content-Type: application/json' -d '{"prompt": "a fox"}'
Ctrl-C stops everything.
`);
}

main().catch((e) => {
  console.error(e);
  stopAll(1);
});
