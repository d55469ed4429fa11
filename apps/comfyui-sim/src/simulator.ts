/**
 * ComfyUI simulator: a stand-in for ComfyUI 0.3.64 that speaks its HTTP + WebSocket protocol
 * (see shared/reference/comfyui-protocol.md of the project brief) without a GPU, with fault switches for tests.
 *
 *   const sim = await startSimulator({ stepMs: 10 });
 *   // ... point a client at sim.url ...
 *   await sim.close();
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import { Duplex } from 'node:stream';
import { freemem, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { WebSocketServer } from 'ws';
import { ComfyProcess } from './comfy-process';
import { COMFY_ROUTES } from './comfy-routes';
import { CONTROL_ROUTES } from './control-routes';
import { FaultConfig, FaultController, FaultState } from './faults';
import { BodyTooLarge, SERVER_HEADER, sendEmpty, sendInternalError, sendText } from './http-util';
import { NodeDef, buildRegistry, normalizeModels } from './node-registry';
import { SimDirs } from './output-files';
import { JsonObject, orderedObject } from './py-json';
import { Renderer, fontsAvailable } from './renderer';
import { Route, RouteContext } from './route-context';
import { SimStats, StatsCounters, emptyCounters } from './sim-stats';
import { WsHub } from './ws-hub';

export type { FaultConfig, FaultController } from './faults';
export type { SimStats } from './sim-stats';

export interface SimulatorOptions {
  /** 0 = random free port (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Delay per sampling step, default 250 ms. */
  stepMs?: number;
  /** Load time of each model file on first use after start/restart/free, default 0. */
  loadMs?: number;
  /** Model files per folder (`diffusion_models`/`unet`, `text_encoders`/`clip`, `vae`, `loras`, ...). */
  models?: Record<string, string[]>;
  /** Faults switched on from the start. */
  faults?: Partial<FaultConfig>;
  /** Output folder (default: a private temp dir removed by close()). */
  outputDir?: string;
  /** Reported VRAM (MiB); default 80995 (an H100 80GB). */
  vramTotalMb?: number;
  /** Reported free VRAM (MiB); default: total minus what the loaded models would use. */
  vramFreeMb?: number;
  /** `--preview-method`: `none` (default, as ComfyUI) or `auto`/`latent2rgb`/`taesd` for JPEG previews. */
  previewMethod?: 'none' | 'auto' | 'latent2rgb' | 'taesd';
  /** `--enable-cors-header ORIGIN`: add CORS headers and disable the Host/Origin check. */
  corsOrigin?: string;
  /** Draw the prompt text on images (default: when fontconfig has fonts). */
  captions?: boolean;
}

export interface SimulatorHandle {
  /** http://HOST:PORT */
  url: string;
  port: number;
  /** Where SaveImage writes. */
  outputDir: string;
  faults: FaultController;
  stats(): SimStats;
  /** Like a process restart: queue, history, counter, caches and sockets are gone; same port. */
  restart(opts?: { downMs?: number; wipeInput?: boolean }): Promise<void>;
  /** Close the listener and every socket: ComfyUI is down (its in-memory state is lost). */
  stop(): Promise<void>;
  /** Listen again on the same port after stop(). */
  start(): Promise<void>;
  /** stop() and remove the temp folders. */
  close(): Promise<void>;
}

const MIB = 1024 * 1024;
const DEFAULT_VRAM_TOTAL_MB = 80995;
/** Rough VRAM per loaded file, by model folder (MiB). */
const VRAM_BY_FOLDER: Record<string, number> = { diffusion_models: 20430, text_encoders: 9390, vae: 243, loras: 810 };

function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const p = pattern.split('/');
  const s = path.split('/');
  if (p.length !== s.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    const seg = p[i];
    if (seg.startsWith('{') && seg.endsWith('}')) {
      if (!s[i]) return undefined;
      try {
        params[seg.slice(1, -1)] = decodeURIComponent(s[i]);
      } catch {
        return undefined;
      }
    } else if (seg !== s[i]) {
      return undefined;
    }
  }
  return params;
}

function splitHostPort(hostport: string): { hostname: string; port: string | null } {
  const at = hostport.lastIndexOf('@');
  const hp = at >= 0 ? hostport.slice(at + 1) : hostport;
  const v6 = /^\[([^\]]*)\](?::(\d*))?$/.exec(hp);
  if (v6) return { hostname: v6[1].toLowerCase(), port: v6[2] ? v6[2] : null };
  const i = hp.lastIndexOf(':');
  if (i >= 0) return { hostname: hp.slice(0, i).toLowerCase(), port: hp.slice(i + 1) || null };
  return { hostname: hp.toLowerCase(), port: null };
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** ComfyUI's origin_only_middleware: 403 when a loopback Host and the Origin disagree. */
function originBlocked(req: IncomingMessage): boolean {
  const host = req.headers.host;
  const origin = req.headers.origin;
  if (!host || origin === undefined) return false;
  let hostDomain = host.toLowerCase();
  const netloc = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(origin)?.[1] ?? '';
  let originDomain = netloc.toLowerCase();
  const h = splitHostPort(hostDomain);
  const o = splitHostPort(originDomain);
  if (!isLoopback(h.hostname)) return false;
  if (h.port === null || o.port === null) {
    hostDomain = h.hostname;
    originDomain = o.hostname;
  }
  return hostDomain.length > 0 && originDomain.length > 0 && hostDomain !== originDomain;
}

class Simulator implements RouteContext {
  readonly registry: Map<string, NodeDef>;
  readonly models: Map<string, string[]>;
  readonly faults: FaultState;
  readonly counters: StatsCounters = emptyCounters();
  readonly dirs: SimDirs;
  readonly renderer: Renderer;
  readonly hub: WsHub;
  proc: ComfyProcess;
  port: number;
  private readonly host: string;
  private readonly root: string;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly routes: Route[] = [...COMFY_ROUTES, ...CONTROL_ROUTES];
  private listening = false;
  private executing = 0;
  private closed = false;

  constructor(private readonly opts: SimulatorOptions) {
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? 0;
    this.models = normalizeModels(opts.models);
    this.registry = buildRegistry(this.models);
    this.faults = new FaultState(opts.faults);
    this.root = mkdtempSync(join(tmpdir(), 'comfyui-sim-'));
    this.dirs = {
      output: resolve(opts.outputDir ?? join(this.root, 'output')),
      input: join(this.root, 'input'),
      temp: join(this.root, 'temp'),
    };
    for (const d of Object.values(this.dirs)) mkdirSync(d, { recursive: true });
    this.renderer = new Renderer(opts.captions ?? fontsAvailable());
    this.renderer.warmUp();
    this.hub = new WsHub(this.faults, {
      queueInfo: () => this.proc.queueInfo(),
      resendNodeFor: (sid) => this.proc.executor.resendNodeFor(sid),
      serverFeatures: () => this.serverFeatures(),
      onDrop: () => {
        this.counters.socketsDropped += 1;
      },
    });
    this.proc = this.newProcess();
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 100 * MIB });
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.server.on('clientError', (_e, socket) => socket.destroy());
  }

  get url(): string {
    const h = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${h}:${this.port}`;
  }

  private newProcess(): ComfyProcess {
    rmSync(this.dirs.temp, { recursive: true, force: true });
    mkdirSync(this.dirs.temp, { recursive: true });
    return new ComfyProcess(this.hub, {
      registry: this.registry,
      renderer: this.renderer,
      faults: this.faults,
      dirs: this.dirs,
      stats: this.counters,
      stepMs: this.opts.stepMs ?? 250,
      loadMs: this.opts.loadMs ?? 0,
      previewMethod: this.opts.previewMethod ?? 'none',
      onConcurrency: (delta) => {
        this.executing += delta;
        this.counters.maxConcurrent = Math.max(this.counters.maxConcurrent, this.executing);
      },
    });
  }

  /** Kills the in-memory state and starts a fresh "process". */
  private replaceProcess(): void {
    this.proc.kill();
    this.hub.terminateAll();
    this.proc = this.newProcess();
  }

  async listen(): Promise<void> {
    if (this.listening) return;
    await new Promise<void>((resolveListen, reject) => {
      const onError = (e: Error): void => reject(e);
      this.server.once('error', onError);
      this.server.listen(this.port, this.host, () => {
        this.server.off('error', onError);
        const addr = this.server.address();
        if (addr && typeof addr === 'object') this.port = addr.port;
        resolveListen();
      });
    });
    this.listening = true;
  }

  private async closeListener(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.hub.terminateAll();
    this.server.closeAllConnections();
    await closed;
  }

  async restart(downMs: number, wipeInput = false): Promise<void> {
    this.counters.restarts += 1;
    // A container whose input folder is not on a volume comes back without the uploads.
    if (wipeInput) {
      rmSync(this.dirs.input, { recursive: true, force: true });
      mkdirSync(this.dirs.input, { recursive: true });
    }
    this.replaceProcess();
    this.server.closeIdleConnections();
    if (downMs > 0 && this.listening) {
      await this.closeListener();
      await delay(downMs);
      if (!this.closed) await this.listen();
    }
  }

  async stop(): Promise<void> {
    this.replaceProcess();
    await this.closeListener();
  }

  async start(): Promise<void> {
    if (this.closed) throw new Error('simulator closed');
    await this.listen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.proc.kill();
    await this.closeListener();
    this.wss.close();
    rmSync(this.root, { recursive: true, force: true });
  }

  serverFeatures(): JsonObject {
    return orderedObject([['supports_preview_metadata', true], ['max_upload_size', 100 * MIB]]);
  }

  systemStats(): JsonObject {
    const f = this.faults.get();
    const ramTotal = totalmem();
    const ramFree = freemem();
    const system = orderedObject([
      ['os', 'posix'],
      ['ram_total', ramTotal],
      ['ram_free', ramFree],
      ['comfyui_version', '0.3.64'],
      ['required_frontend_version', '1.27.10'],
      ['installed_templates_version', '0.1.95'],
      ['required_templates_version', '0.1.95'],
      ['python_version', '3.12.3 (main, Aug 14 2025, 17:47:21) [GCC 13.3.0]'],
      ['pytorch_version', '2.8.0+cu128'],
      ['embedded_python', false],
      ['argv', ['main.py', '--listen', this.host, '--port', String(this.port)]],
    ]);
    if (f.noGpu) {
      return orderedObject([['system', system], ['devices', [orderedObject([
        ['name', 'cpu'], ['type', 'cpu'], ['index', null], ['vram_total', ramTotal], ['vram_free', ramFree],
        ['torch_vram_total', ramTotal], ['torch_vram_free', ramFree],
      ])]]]);
    }
    const totalMb = this.opts.vramTotalMb ?? DEFAULT_VRAM_TOTAL_MB;
    let usedMb = 0;
    for (const [folder, files] of this.models) {
      for (const file of files) if (this.proc.executor.isLoaded(file)) usedMb += VRAM_BY_FOLDER[folder] ?? 1024;
    }
    const torchReservedMb = usedMb > 0 ? usedMb + 512 : 0;
    const freeMb = f.vramFreeMb ?? this.opts.vramFreeMb ?? Math.max(0, totalMb - 480 - usedMb);
    return orderedObject([['system', system], ['devices', [orderedObject([
      ['name', 'cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync'],
      ['type', 'cuda'],
      ['index', 0],
      ['vram_total', Math.round(totalMb * MIB)],
      ['vram_free', Math.round(freeMb * MIB)],
      ['torch_vram_total', Math.round(torchReservedMb * MIB)],
      ['torch_vram_free', torchReservedMb > 0 ? 512 * MIB : 0],
    ])]]]);
  }

  stats(): SimStats {
    const c = this.counters;
    return {
      ...c,
      executedPromptIds: [...c.executedPromptIds],
      injected: { ...c.injected },
      running: this.proc.executor.runningPromptId,
      pending: this.proc.queue.size,
      wsConnections: this.hub.connections,
    };
  }

  private corsHeaders(res: ServerResponse): void {
    const origin = this.opts.corsOrigin;
    if (!origin) return;
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Access-Control-Allow-Methods', 'POST, GET, DELETE, PUT, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', 'Content-Type, Authorization');
    res.setHeader('Access-Control-Allow-Credentials', 'true');
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('Server', SERVER_HEADER);
    this.corsHeaders(res);
    try {
      if (!this.opts.corsOrigin && originBlocked(req)) return sendEmpty(res, 403);
      if (req.method === 'OPTIONS') return sendEmpty(res, 200);
      const url = new URL(req.url ?? '/', 'http://sim.invalid');
      const path = url.pathname.startsWith('/api/') ? url.pathname.slice(4) : url.pathname;
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      if (path === '/ws' && method === 'GET') {
        return sendText(res, 400, 'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".');
      }
      let pathMatched = false;
      for (const route of this.routes) {
        const params = matchPath(route.path, path);
        if (!params) continue;
        pathMatched = true;
        if (route.method !== method) continue;
        await route.handler(this, { req, res, url, params });
        return;
      }
      if (pathMatched) {
        const allowed = this.routes.filter((r) => matchPath(r.path, path)).map((r) => r.method);
        res.setHeader('Allow', [...new Set(allowed.flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])))].join(','));
        return sendText(res, 405, '405: Method Not Allowed');
      }
      sendText(res, 404, '404: Not Found');
    } catch (e) {
      if (e instanceof BodyTooLarge) return sendText(res, 413, e.message);
      if (!res.headersSent) sendInternalError(res);
      else res.destroy();
    }
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const path = url.pathname.startsWith('/api/') ? url.pathname.slice(4) : url.pathname;
    if (path !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: close\r\n\r\n404: Not Found');
      return;
    }
    if (!this.opts.corsOrigin && originBlocked(req)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.hub.attach(ws, url.searchParams.get('clientId')));
  }
}

/** Starts a simulator listening on `opts.port` (0 = random) and returns its handle. */
export async function startSimulator(opts: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const sim = new Simulator(opts);
  try {
    await sim.listen();
  } catch (e) {
    await sim.close();
    throw e;
  }
  return {
    get url() {
      return sim.url;
    },
    get port() {
      return sim.port;
    },
    outputDir: sim.dirs.output,
    faults: sim.faults,
    stats: () => sim.stats(),
    restart: (o) => sim.restart(o?.downMs ?? 0, o?.wipeInput ?? false),
    stop: () => sim.stop(),
    start: () => sim.start(),
    close: () => sim.close(),
  };
}
