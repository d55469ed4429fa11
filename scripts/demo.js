'use strict';
// `npm run demo`: everything on one machine with the ComfyUI simulator: Redis (yours, or a private
// one), the simulator, the API and the worker. Prints the docs and playground URLs, a curl that works and the keys
// command for the Redis and prefix it uses. The simulator may die (a GPU box losing ComfyUI): the
// API and worker keep running and the demo restarts it, so the recovery can be watched.
const P = require('./lib/processes');

const SIM_RESTART_DELAY_MS = 5000;
// A simulator that dies this soon after starting, this many times in a row, is not restarted again.
const SIM_CRASH_LOOP_MS = 10_000;
const SIM_CRASH_LOOP_TIMES = 3;

function fail(message) {
  process.stderr.write(`demo: ${message}\n`);
  process.exit(1);
}

function portFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) fail(`${name}=${raw} is not a port (1-65535)`);
  return n;
}

/** A value as the shell reads it back unchanged, so the printed keys line can be pasted. */
function shellWord(v) {
  return /^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

async function chooseRedis() {
  const wanted = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  if (await P.redisPing(wanted, { timeoutMs: 1000, authOk: true })) {
    console.log(`Using Redis at ${wanted}`);
    return wanted;
  }
  if (!P.hasRedisServer()) {
    fail(`no Redis answers at ${wanted}, and redis-server is not installed: install it (Debian/Ubuntu: sudo apt-get install -y redis-server; macOS: brew install redis), or set REDIS_URL`);
  }
  const server = await P.RedisServer.start();
  console.log(`Started a private redis-server at ${server.url} (stopped with the demo)`);
  return server.url;
}

/** The simulator under watch: its death is said in one line and it comes back after a delay. */
function superviseSim(env, url) {
  let quickDeaths = 0;
  let child;
  const start = () => {
    const startedAt = Date.now();
    child = P.runForeground('sim', env, {
      onExit: (code, signal) => {
        quickDeaths = Date.now() - startedAt < SIM_CRASH_LOOP_MS ? quickDeaths + 1 : 0;
        if (quickDeaths >= SIM_CRASH_LOOP_TIMES) {
          console.error(`[demo]   the ComfyUI simulator exited (${signal ?? code}) ${quickDeaths} times in a row right after starting; not restarting it. The API and worker keep running; Ctrl-C stops the demo.`);
          return;
        }
        console.error(
          `[demo]   the ComfyUI simulator (pid ${child.pid}) exited (${signal ?? code}); the API and worker keep running, /health/ready answers 503 — restarting it in ${SIM_RESTART_DELAY_MS / 1000} s`,
        );
        setTimeout(() => {
          if (P.isStopping()) return;
          start();
          P.waitHttp(`${url}/system_stats`, 20_000).then((ok) => {
            if (P.isStopping()) return;
            console.log(ok ? `[demo]   the ComfyUI simulator is back (pid ${child.pid}); readiness recovers within seconds` : '[demo]   the restarted simulator does not answer yet');
          });
        }, SIM_RESTART_DELAY_MS);
      },
    });
  };
  start();
  return { pid: () => child.pid };
}

async function main() {
  P.installExitHandlers({ graceMs: 35_000, signalExitCode: 0 });
  P.requireBuildOrExit(['api', 'worker', 'sim', 'keys']);
  const host = process.env.HOST || '127.0.0.1';
  const apiPort = portFromEnv('PORT', 8000);
  const simPort = portFromEnv('SIM_PORT', undefined) ?? (await P.freePort());
  // Before anything starts: otherwise another server on the port answers our readiness wait and
  // the demo announces itself, then the API dies.
  if (await P.portInUse(apiPort, host)) fail(`port ${apiPort} is already in use on ${host} (the API's PORT): stop what holds it, or set PORT to a free port`);
  if (await P.portInUse(simPort, P.HOST)) fail(`port ${simPort} is already in use on ${P.HOST} (the simulator's SIM_PORT): stop what holds it, or set SIM_PORT to a free port`);

  const redis = await chooseRedis();
  const prefix = process.env.QUEUE_PREFIX || 'fictures-demo';
  const comfy = `http://${P.HOST}:${simPort}`;
  const common = { REDIS_URL: redis, COMFYUI_URLS: comfy, QUEUE_PREFIX: prefix };
  const sim = superviseSim({ PORT: String(simPort), HOST: P.HOST, SIM_STEP_MS: process.env.SIM_STEP_MS || '250' }, comfy);
  if (!(await P.waitHttp(`${comfy}/system_stats`, 20_000))) {
    console.error('demo: the simulator did not start');
    return P.stopAllAndExit(1);
  }
  const worker = P.runForeground('worker', common);
  const api = P.runForeground('api', { ...common, PORT: String(apiPort), HOST: host });
  const base = `http://127.0.0.1:${apiPort}`;
  const up = await P.waitHttp(`${base}/health/live`, 30_000, (r) => r.status === 200);
  if (P.isStopping()) return;
  if (!up) {
    console.error('demo: the API did not start');
    return P.stopAllAndExit(1);
  }
  const keys = `REDIS_URL=${shellWord(redis)} QUEUE_PREFIX=${shellWord(prefix)} npm run keys -- create --name demo`;
  console.log(`
Fictures AI Server is running (ComfyUI simulator at ${comfy}).
  Redis:      ${redis}, queue prefix ${prefix}
  API docs:   ${base}/docs
  Playground: ${base}/playground (in a browser)
  Try it:     curl -s -X POST ${base}/api/v1/images/generate -H 'Content-Type: application/json' \\
                -d '{"prompt": "a lighthouse at dusk", "width": 512, "height": 512}' | head -c 300; echo
  Async job:  curl -s -X POST ${base}/api/v1/images/jobs -H 'Content-Type: application/json' -d '{"prompt": "a fox"}'
  API keys:   ${keys}
              (the API is open until the first key exists; then send it as "Authorization: Bearer <key>")
  Processes:  simulator pid ${sim.pid()}, API pid ${api.pid}, worker pid ${worker.pid}
              (kill the simulator to watch ${base}/health/ready go 503; the demo restarts it after ${SIM_RESTART_DELAY_MS / 1000} s)
Ctrl-C stops everything.
`);
}

main().catch((e) => {
  console.error(`demo: ${e.message}`);
  P.stopAllAndExit(1);
});
