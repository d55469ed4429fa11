/**
 * Command-line entry of the ComfyUI simulator.
 *
 *   PORT=8188 HOST=127.0.0.1 SIM_STEP_MS=250 npm run start:sim
 *   SIM_MODEL_FILES=vae/qwen_image_vae.safetensors,loras/x.safetensors npm run start:sim   (or `none`; default: the shipped manifests' files)
 *   node scripts/run.js sim --port 8199 --fail-rate 0.2 --drop-ws-after 10
 *
 * Every env variable has a flag of the same meaning; flags win. Faults can be changed at run time
 * with POST /sim/faults.
 */
import { FaultConfig } from './faults';
import { SimulatorOptions, startSimulator } from './simulator';

interface Setting {
  env: string;
  flag: string;
  /** Boolean flags take no value (`--hang`). */
  bool?: boolean;
  apply(value: string, opts: SimulatorOptions, faults: Partial<FaultConfig>): void;
}

function num(name: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new Error(`${name}: expected a number >= 0, got "${v}"`);
  return n;
}

const truthy = (v: string): boolean => ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());

/** `folder/file,folder/file` (or `none`): the model files this simulated ComfyUI has. */
export function parseModelFiles(v: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (v.trim().toLowerCase() === 'none') return out;
  for (const entry of v.split(',').map((e) => e.trim()).filter(Boolean)) {
    const slash = entry.indexOf('/');
    if (slash <= 0 || slash === entry.length - 1) throw new Error(`SIM_MODEL_FILES: expected folder/file, got "${entry}"`);
    (out[entry.slice(0, slash)] ??= []).push(entry.slice(slash + 1));
  }
  return out;
}

const SETTINGS: Setting[] = [
  { env: 'PORT', flag: '--port', apply: (v, o) => { o.port = num('PORT', v); } },
  { env: 'HOST', flag: '--host', apply: (v, o) => { o.host = v; } },
  { env: 'SIM_STEP_MS', flag: '--step-ms', apply: (v, o) => { o.stepMs = num('SIM_STEP_MS', v); } },
  { env: 'SIM_LOAD_MS', flag: '--load-ms', apply: (v, o) => { o.loadMs = num('SIM_LOAD_MS', v); } },
  { env: 'SIM_VRAM_TOTAL_MB', flag: '--vram-total-mb', apply: (v, o) => { o.vramTotalMb = num('SIM_VRAM_TOTAL_MB', v); } },
  { env: 'SIM_VRAM_FREE_MB', flag: '--vram-free-mb', apply: (v, o) => { o.vramFreeMb = num('SIM_VRAM_FREE_MB', v); } },
  { env: 'SIM_MODEL_FILES', flag: '--model-files', apply: (v, o) => { o.models = parseModelFiles(v); } },
  { env: 'SIM_OUTPUT_DIR', flag: '--output-dir', apply: (v, o) => { o.outputDir = v; } },
  {
    env: 'SIM_PREVIEW_METHOD', flag: '--preview-method',
    apply: (v, o) => {
      if (!['none', 'auto', 'latent2rgb', 'taesd'].includes(v)) throw new Error(`SIM_PREVIEW_METHOD: unknown "${v}"`);
      o.previewMethod = v as SimulatorOptions['previewMethod'];
    },
  },
  { env: 'SIM_CORS_ORIGIN', flag: '--enable-cors-header', apply: (v, o) => { o.corsOrigin = v || '*'; } },
  {
    env: 'SIM_FAIL_RATE', flag: '--fail-rate',
    apply: (v, _o, f) => {
      const n = num('SIM_FAIL_RATE', v);
      if (n > 1) throw new Error('SIM_FAIL_RATE must be within 0..1');
      f.promptFailRate = n;
    },
  },
  { env: 'SIM_FAIL_COUNT', flag: '--fail-count', apply: (v, _o, f) => { f.promptFailCount = Math.floor(num('SIM_FAIL_COUNT', v)); } },
  { env: 'SIM_HANG', flag: '--hang', bool: true, apply: (v, _o, f) => { f.hang = truthy(v); } },
  { env: 'SIM_DROP_WS_AFTER', flag: '--drop-ws-after', apply: (v, _o, f) => { f.dropSocketAfter = Math.floor(num('SIM_DROP_WS_AFTER', v)); } },
  {
    env: 'SIM_EXECUTION_ERROR', flag: '--execution-error',
    // A number in (0, 1] is a failure rate; anything else is the exception message.
    apply: (v, _o, f) => {
      const n = Number(v);
      if (v.trim() !== '' && Number.isFinite(n) && n > 0 && n <= 1) f.executionErrorRate = n;
      else f.executionError = v;
    },
  },
  { env: 'SIM_EXECUTION_ERROR_TYPE', flag: '--execution-error-type', apply: (v, _o, f) => { f.executionErrorType = v; } },
  { env: 'SIM_VIEW_DELAY_MS', flag: '--view-delay-ms', apply: (v, _o, f) => { f.viewDelayMs = num('SIM_VIEW_DELAY_MS', v); } },
  { env: 'SIM_VIEW_TRUNCATE', flag: '--view-truncate', bool: true, apply: (v, _o, f) => { f.viewTruncate = truthy(v); } },
  { env: 'SIM_NO_GPU', flag: '--no-gpu', bool: true, apply: (v, _o, f) => { f.noGpu = truthy(v); } },
  { env: 'SIM_RECONNECT_BUG', flag: '--reconnect-bug', bool: true, apply: (v, _o, f) => { f.reconnectBug = truthy(v); } },
];

function usage(): string {
  return 'Usage: comfyui-sim ' + SETTINGS.map((s) => `[${s.flag}${s.bool ? '' : ' VALUE'}]`).join(' ')
    + '\nEach flag has an env variable: ' + SETTINGS.map((s) => s.env).join(', ');
}

export function parseConfig(env: NodeJS.ProcessEnv, argv: string[]): SimulatorOptions {
  const opts: SimulatorOptions = { port: 8188, host: '127.0.0.1' };
  const faults: Partial<FaultConfig> = {};
  for (const s of SETTINGS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') s.apply(v, opts, faults);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      console.log(usage());
      process.exit(0);
    }
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const s = SETTINGS.find((x) => x.flag === name) ?? (name === '--listen' ? SETTINGS[1] : undefined);
    if (!s) throw new Error(`unknown argument "${arg}"\n${usage()}`);
    let value = inline;
    if (value === undefined) {
      if (s.bool) value = '1';
      else if (s.flag === '--enable-cors-header' && (argv[i + 1] === undefined || argv[i + 1].startsWith('--'))) value = '*';
      else {
        value = argv[++i];
        if (value === undefined) throw new Error(`${s.flag} needs a value`);
      }
    }
    s.apply(value, opts, faults);
  }
  opts.faults = faults;
  return opts;
}

async function main(): Promise<void> {
  const opts = parseConfig(process.env, process.argv.slice(2));
  const sim = await startSimulator(opts);
  console.log(`[comfyui-sim] ComfyUI 0.3.64 simulator listening on ${sim.url} (output: ${sim.outputDir})`);
  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    sim.close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`[comfyui-sim] error while stopping on ${signal}`, e);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(`[comfyui-sim] ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
