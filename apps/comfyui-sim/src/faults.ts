/**
 * Fault switches of the simulator: set at start-up (options, env, CLI) and at run time through
 * the handle or `POST /sim/faults`.
 */
import { EventEmitter } from 'node:events';

export interface FaultConfig {
  /** Fraction (0..1) of POST /prompt answered HTTP 500 like an aiohttp handler crash. */
  promptFailRate: number;
  /** The next N POST /prompt are answered HTTP 503 (decrements). */
  promptFailCount: number;
  /** Accept prompts but never run them nor send events ("hung GPU"); a running prompt freezes. */
  hang: boolean;
  /** Terminate every WebSocket once it has been sent N messages (each clientId once per setting). */
  dropSocketAfter: number | null;
  /** Make prompts fail at KSampler (or their first output node) with this exception message. */
  executionError: string | null;
  /** `exception_type` of that failure. */
  executionErrorType: string;
  /** Fail only the next N prompts (null = every prompt while executionError is set). */
  executionErrorCount: number | null;
  /** Fraction (0..1) of prompts that fail that way even when executionError is null. */
  executionErrorRate: number;
  /** Delay before GET /view answers. */
  viewDelayMs: number;
  /** GET /view sends the headers and half of the bytes, then destroys the socket. */
  viewTruncate: boolean;
  /** Overrides the free VRAM reported by /system_stats (MiB). */
  vramFreeMb: number | null;
  /** /system_stats reports a CPU device only. */
  noGpu: boolean;
  /** Emulate ComfyUI issue #16010: an old socket closing unregisters the new one with the same clientId. */
  reconnectBug: boolean;
}

export const DEFAULT_OOM_MESSAGE =
  'CUDA out of memory. Tried to allocate 1.27 GiB. GPU 0 has a total capacity of 79.19 GiB of which 612.56 MiB is free. '
  + 'Including non-PyTorch memory, this process has 78.58 GiB memory in use. Of the allocated memory 75.91 GiB is allocated by '
  + 'PyTorch, and 2.02 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting '
  + 'PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  '
  + '(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)';

export function defaultFaults(): FaultConfig {
  return {
    promptFailRate: 0,
    promptFailCount: 0,
    hang: false,
    dropSocketAfter: null,
    executionError: null,
    executionErrorType: 'torch.OutOfMemoryError',
    executionErrorCount: null,
    executionErrorRate: 0,
    viewDelayMs: 0,
    viewTruncate: false,
    vramFreeMb: null,
    noGpu: false,
    reconnectBug: false,
  };
}

type Kind = 'rate' | 'count' | 'bool' | 'nullableCount' | 'nullableString' | 'string' | 'ms' | 'nullableNumber';
const KINDS: Record<keyof FaultConfig, Kind> = {
  promptFailRate: 'rate',
  promptFailCount: 'count',
  hang: 'bool',
  dropSocketAfter: 'nullableCount',
  executionError: 'nullableString',
  executionErrorType: 'string',
  executionErrorCount: 'nullableCount',
  executionErrorRate: 'rate',
  viewDelayMs: 'ms',
  viewTruncate: 'bool',
  vramFreeMb: 'nullableNumber',
  noGpu: 'bool',
  reconnectBug: 'bool',
};

/** Checks a JSON patch for /sim/faults; returns the typed patch or an error text. */
export function parseFaultPatch(input: unknown): { patch: Partial<FaultConfig> } | { error: string } {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { error: 'body must be a JSON object' };
  const patch: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    const kind = (KINDS as Record<string, Kind | undefined>)[key];
    if (!kind) return { error: `unknown fault "${key}"; known: ${Object.keys(KINDS).join(', ')}` };
    const isNum = typeof value === 'number' && Number.isFinite(value);
    const ok =
      kind === 'rate' ? isNum && value >= 0 && value <= 1
        : kind === 'count' ? isNum && Number.isInteger(value) && value >= 0
          : kind === 'ms' ? isNum && value >= 0
            : kind === 'bool' ? typeof value === 'boolean'
              : kind === 'nullableCount' ? value === null || (isNum && Number.isInteger(value) && value >= 0)
                : kind === 'nullableNumber' ? value === null || (isNum && value >= 0)
                  : kind === 'nullableString' ? value === null || typeof value === 'string'
                    : typeof value === 'string' && value.length > 0;
    if (!ok) return { error: `bad value for "${key}": ${JSON.stringify(value)} (${kind})` };
    patch[key] = value;
  }
  return { patch: patch as Partial<FaultConfig> };
}

export interface FaultController {
  get(): FaultConfig;
  /** Merges into the current switches; returns the result. */
  set(patch: Partial<FaultConfig>): FaultConfig;
  /** All faults off (start-up switches included). */
  reset(): FaultConfig;
}

/** Holds the switches; emits 'change' (with the keys that were set) after every update. */
export class FaultState extends EventEmitter implements FaultController {
  private cfg: FaultConfig;

  constructor(initial?: Partial<FaultConfig>) {
    super();
    this.cfg = { ...defaultFaults(), ...(initial ?? {}) };
  }

  get(): FaultConfig {
    return { ...this.cfg };
  }

  set(patch: Partial<FaultConfig>): FaultConfig {
    const checked = parseFaultPatch(patch);
    if ('error' in checked) throw new Error(checked.error);
    this.cfg = { ...this.cfg, ...checked.patch };
    this.emit('change', Object.keys(checked.patch));
    return this.get();
  }

  reset(): FaultConfig {
    this.cfg = defaultFaults();
    this.emit('change', Object.keys(this.cfg));
    return this.get();
  }

  /** Consumes one "next N POST /prompt → 503". */
  takePromptFailCount(): boolean {
    if (this.cfg.promptFailCount <= 0) return false;
    this.cfg.promptFailCount -= 1;
    return true;
  }

  /** Decides whether the prompt about to run fails; consumes executionErrorCount. */
  takeExecutionError(random: number): { type: string; message: string } | undefined {
    const c = this.cfg;
    if (c.executionError !== null && (c.executionErrorCount === null || c.executionErrorCount > 0)) {
      const message = c.executionError || DEFAULT_OOM_MESSAGE;
      if (c.executionErrorCount !== null) {
        c.executionErrorCount -= 1;
        if (c.executionErrorCount === 0) {
          c.executionError = null;
          c.executionErrorCount = null;
        }
      }
      return { type: c.executionErrorType, message };
    }
    if (c.executionErrorRate > 0 && random < c.executionErrorRate) {
      return { type: c.executionErrorType, message: c.executionError || DEFAULT_OOM_MESSAGE };
    }
    return undefined;
  }
}
