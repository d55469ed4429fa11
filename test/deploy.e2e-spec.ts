import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import request from 'supertest';
import { WorkerMetricsServer } from '../apps/worker/src/metrics/worker-metrics-server';
import { exportedNames, grafanaQueryMetricNames, metricNames } from './support/promql';
import { Stack, waitFor } from './support/stack';

const ROOT = join(__dirname, '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };
const isObj = (v: Json | undefined): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Reference {
  where: string;
  expr: string;
  names: string[];
}

/** Every query of the dashboard: panel targets (rows' nested panels too) and variable queries. */
function dashboardReferences(text: string): Reference[] {
  const dash = JSON.parse(text) as Obj;
  const refs: Reference[] = [];
  const walk = (panels: Json | undefined) => {
    if (!Array.isArray(panels)) return;
    for (const p of panels.filter(isObj)) {
      for (const t of Array.isArray(p.targets) ? p.targets.filter(isObj) : []) {
        if (typeof t.expr === 'string') refs.push({ where: `panel "${String(p.title)}" ${String(t.refId)}`, expr: t.expr, names: metricNames(t.expr) });
      }
      walk(p.panels);
    }
  };
  walk(dash.panels);
  const templating = isObj(dash.templating) && Array.isArray(dash.templating.list) ? dash.templating.list.filter(isObj) : [];
  for (const v of templating.filter((x) => x.type === 'query')) {
    const q = isObj(v.query) ? v.query.query : v.query;
    if (typeof q === 'string') refs.push({ where: `variable ${String(v.name)}`, expr: q, names: grafanaQueryMetricNames(q) });
  }
  return refs;
}

function alertReferences(text: string): Reference[] {
  const doc = load(text) as { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ where: `rule ${r.alert ?? r.record}`, expr: String(r.expr), names: metricNames(String(r.expr)) })));
}

/** The references whose names neither process exports, as "where: name". */
function unexported(refs: Reference[], exported: Set<string>): string[] {
  return refs.flatMap((r) => r.names.filter((n) => !exported.has(n)).map((n) => `${r.where}: ${n}`));
}

describe('deploy: every metric the Grafana dashboard and the Prometheus alerts use is exported', () => {
  let stack: Stack;
  let exported: Set<string>;
  let apiText: string;

  beforeAll(async () => {
    stack = await Stack.start({ comfyui: 1, env: { WORKER_METRICS_PORT: '0', WORKER_HEARTBEAT_INTERVAL_MS: '300' } });
    const { body } = await request(stack.url).post('/api/v1/images/jobs').send({ prompt: 'a dashboard', width: 256, height: 256 }).expect(202);
    const done = await waitFor(async () => {
      const r = await request(stack.url).get(`/api/v1/images/jobs/${body.id as string}`).expect(200);
      return ['succeeded', 'failed', 'canceled'].includes(r.body.status) ? (r.body.status as string) : undefined;
    }, 15_000, 'the job to end');
    expect(done).toBe('succeeded');
    apiText = (await request(stack.url).get('/metrics').expect(200)).text;
    const port = stack.worker!.get(WorkerMetricsServer).server.port;
    const workerText = (await request(`http://127.0.0.1:${port}`).get('/metrics').expect(200)).text;
    exported = new Set([...exportedNames(apiText), ...exportedNames(workerText)]);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('reads names from PromQL: metrics only, never functions, labels, ranges, strings or variables', () => {
    expect(
      metricNames('histogram_quantile(0.95, sum by (le, model) (rate(fictures_job_total_seconds_bucket{model=~"$model",x="a}b"}[$__rate_interval] offset 5m)))'),
    ).toEqual(['fictures_job_total_seconds_bucket']);
    expect(metricNames('(max(sum by (instance) (a_metric{s=~"idle|busy"})) or on() vector(0)) == 0 and b_metric > 2 * 1024 ^ 3 unless c:recorded')).toEqual([
      'a_metric',
      'b_metric',
      'c:recorded',
    ]);
    expect(grafanaQueryMetricNames('label_values(fictures_jobs_total{status="failed"}, model)')).toEqual(['fictures_jobs_total']);
  });

  it('the dashboard covers what operators asked for, and each of its queries names a metric the API or the worker exports', () => {
    const refs = dashboardReferences(read('deploy/grafana/fictures-dashboard.json'));
    for (const r of refs) expect({ where: r.where, names: r.names.length > 0 }).toEqual({ where: r.where, names: true });
    const used = new Set(refs.flatMap((r) => r.names));
    for (const needed of [
      'fictures_queue_jobs', // queue depth
      'fictures_job_queue_wait_seconds_bucket', // queue wait
      'fictures_gpu_busy_ratio',
      'fictures_gpu_vram_free_bytes',
      'fictures_jobs_total', // by status and model
      'fictures_job_total_seconds_bucket', // p50/p95
      'fictures_webhook_deliveries_total',
      'fictures_redis_memory_used_bytes',
    ]) {
      expect(used).toContain(needed);
    }
    expect(unexported(refs, exported)).toEqual([]);
  });

  it('each alert rule names only exported metrics', () => {
    const refs = alertReferences(read('deploy/prometheus/alerts.yml'));
    expect(refs.map((r) => r.where)).toEqual(
      expect.arrayContaining(['rule FicturesNoReadyWorker', 'rule FicturesQueueWaitHigh', 'rule FicturesJobErrorRatio', 'rule FicturesRedisMemoryHigh', 'rule FicturesWebhookFailures']),
    );
    for (const r of refs) expect({ where: r.where, names: r.names.length > 0 }).toEqual({ where: r.where, names: true });
    expect(unexported(refs, exported)).toEqual([]);
  });

  it('a misspelled name in either file is caught', () => {
    const alerts = read('deploy/prometheus/alerts.yml').replace('fictures_webhook_deliveries_total', 'fictures_webhook_delivery_total');
    expect(unexported(alertReferences(alerts), exported)).toEqual(['rule FicturesWebhookFailures: fictures_webhook_delivery_total']);
    const dashboard = read('deploy/grafana/fictures-dashboard.json').replace('fictures_gpu_busy_ratio{', 'fictures_gpu_busy_ration{');
    expect(unexported(dashboardReferences(dashboard), exported)).toEqual([expect.stringMatching(/: fictures_gpu_busy_ration$/)]);
  });

  it('Redis memory comes from INFO memory of the real Redis', () => {
    const sample = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(apiText)?.[1]);
    expect(sample('fictures_redis_memory_used_bytes')).toBeGreaterThan(0);
    expect(sample('fictures_redis_memory_max_bytes')).toBeGreaterThanOrEqual(0);
    expect(apiText).toMatch(/^fictures_redis_maxmemory_policy\{policy="[a-z-]+"\} 1$/m);
  });
});

type Service = Obj & { image?: string; build?: Json; profiles?: string[]; healthcheck?: Obj; environment?: Obj; depends_on?: Obj; restart?: string };

/** YAML merge keys (`<<: *anchor`), as Compose resolves them; js-yaml's default schema leaves them as keys. */
function resolveMerges(v: Json): Json {
  if (Array.isArray(v)) return v.map(resolveMerges);
  if (!isObj(v)) return v;
  const out: Obj = {};
  const merged = v['<<'];
  for (const src of Array.isArray(merged) ? merged : merged === undefined ? [] : [merged]) Object.assign(out, resolveMerges(src));
  for (const [k, val] of Object.entries(v)) if (k !== '<<') out[k] = resolveMerges(val);
  return out;
}

describe('deploy: docker-compose.yml', () => {
  const compose = resolveMerges(load(read('docker-compose.yml')) as Json) as { services: Record<string, Service>; volumes: Obj };
  const services = compose.services;
  const healthTest = (s: Service) => (Array.isArray(s.healthcheck?.test) ? s.healthcheck.test.join(' ') : String(s.healthcheck?.test));

  it('builds one image once and runs the API, the worker and the simulator from it', () => {
    const app = ['api', 'worker', 'comfyui-sim'].map((n) => services[n]);
    expect(new Set(app.map((s) => s.image)).size).toBe(1);
    expect(app[0].image).toMatch(/^fictures-ai-server:/);
    const builders = Object.entries(services).filter(([, s]) => s.image === app[0].image && s.build !== undefined);
    expect(builders.map(([n]) => n)).toEqual(['api']);
    for (const s of app.slice(1)) expect(s.pull_policy).toBe('never');
    expect(app.map((s) => (s.command as string[]).join(' '))).toEqual(['node scripts/run.js api', 'node scripts/run.js worker', 'node scripts/run.js sim']);
  });

  it('has a health check for every long-running service: the worker on WORKER_METRICS_PORT, the simulator on /system_stats', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.restart === 'no') continue; // one-shot jobs (the bucket maker) exit instead
      const test = s.healthcheck?.test;
      expect({ name, checked: Array.isArray(test) && test[0] === 'CMD' && test.length > 1 }).toEqual({ name, checked: true });
    }
    expect(healthTest(services.worker)).toContain(`127.0.0.1:${String(services.worker.environment?.WORKER_METRICS_PORT)}/metrics`);
    expect(healthTest(services['comfyui-sim'])).toContain('/system_stats');
    expect(healthTest(services.comfyui)).toContain('/system_stats');
    expect(healthTest(services.api)).toContain('/health/live');
  });

  it('a gpu profile with ComfyUI on an NVIDIA device and the models volume; a sim profile with the simulator', () => {
    const gpu = services.comfyui;
    expect(gpu.profiles).toEqual(['gpu']);
    const deploy = gpu.deploy as { resources: { reservations: { devices: Array<{ driver: string; capabilities: string[] }> } } };
    expect(deploy.resources.reservations.devices).toEqual([expect.objectContaining({ driver: 'nvidia', capabilities: ['gpu'] })]);
    const models = (gpu.volumes as string[]).find((v) => v.endsWith(':/opt/ComfyUI/models'));
    expect(models).toBeDefined();
    expect(Object.keys(compose.volumes)).toContain('comfyui-models');
    expect(services['comfyui-sim'].profiles).toEqual(['sim']);
    expect(services.worker.profiles).toEqual(expect.arrayContaining(['sim', 'gpu']));
    expect(readFileSync(join(ROOT, String(gpu.build), 'Dockerfile'), 'utf8')).toContain('main.py');
  });

  it('an s3 profile with MinIO, and the API and worker configured for RESULT_STORE=s3 through RESULT_S3_* and AWS credentials', () => {
    expect(services.minio.profiles).toEqual(['s3']);
    for (const name of ['api', 'worker']) {
      const env = Object.keys(services[name].environment ?? {});
      expect(env).toEqual(
        expect.arrayContaining([
          'RESULT_STORE', 'RESULT_S3_BUCKET', 'RESULT_S3_PREFIX', 'RESULT_S3_ENDPOINT', 'RESULT_S3_REGION', 'RESULT_S3_FORCE_PATH_STYLE', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY',
        ]),
      );
    }
    expect(String(services.api.environment?.RESULT_S3_ENDPOINT)).toContain('minio:9000');
  });

  it('depends only on services it defines, and Prometheus scrapes the ports the API and the worker serve metrics on', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) expect({ name, dep, defined: dep in services }).toEqual({ name, dep, defined: true });
    }
    const prom = load(read('deploy/prometheus/prometheus.yml')) as { rule_files: string[]; scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
    const targets = prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((x) => x.targets));
    expect(targets).toEqual(expect.arrayContaining([`api:${String(services.api.environment?.METRICS_PORT)}`, `worker:${String(services.worker.environment?.WORKER_METRICS_PORT)}`]));
    expect(prom.rule_files).toEqual(['alerts.yml']);
  });
});
