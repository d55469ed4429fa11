/** Counters the tests and benchmarks read (GET /sim/stats, handle.stats()). They survive restarts. */
export interface SimStats {
  /** POST /prompt answered 200 (queued). */
  submitted: number;
  /** POST /prompt answered anything else (validation 400, bad JSON 500, injected 500/503). */
  rejected: number;
  /** Prompts that started executing (execution_start); re-executions count again. */
  executed: number;
  completed: number;
  interrupted: number;
  errored: number;
  /** Of the completed ones: served entirely from cache. */
  cachedRuns: number;
  /** Most prompts ever executing at the same time (ComfyUI: always 1). */
  maxConcurrent: number;
  /** Prompt ids in the order they started executing. */
  executedPromptIds: string[];
  /** Prompt id executing now (or held by the hang fault). */
  running: string | null;
  pending: number;
  restarts: number;
  /** Model files loaded (each costs loadMs). */
  modelLoads: number;
  wsConnections: number;
  socketsDropped: number;
  injected: {
    prompt500: number;
    prompt503: number;
    executionErrors: number;
    viewDelayed: number;
    viewTruncated: number;
  };
}

export type StatsCounters = Omit<SimStats, 'running' | 'pending' | 'wsConnections'>;

export function emptyCounters(): StatsCounters {
  return {
    submitted: 0,
    rejected: 0,
    executed: 0,
    completed: 0,
    interrupted: 0,
    errored: 0,
    cachedRuns: 0,
    maxConcurrent: 0,
    executedPromptIds: [],
    restarts: 0,
    modelLoads: 0,
    socketsDropped: 0,
    injected: { prompt500: 0, prompt503: 0, executionErrors: 0, viewDelayed: 0, viewTruncated: 0 },
  };
}
