import type { ChildProcess } from 'node:child_process';
import { type AppName, type ExitInfo, requireBuild, spawnApp, stopChild, waitExit } from '../../scripts/lib/processes';

export const WORKER_ENTRY: AppName = 'worker';
export const API_ENTRY: AppName = 'api';

export interface AppProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<ExitInfo>;
}

/** Starts a built app as a real process (tests that kill or signal it). `npm test` builds first. */
export function startApp(app: AppName, env: Record<string, string>): AppProcess {
  requireBuild([app]);
  const child = spawnApp(app, env);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  return { child, output: () => out, exited: waitExit(child) };
}

export async function stopApp(p: AppProcess | undefined): Promise<void> {
  if (p) await stopChild(p.child, 'SIGKILL');
}

/** Locks and stall checks short enough that a killed worker's jobs are recovered within seconds. */
export const FAST_STALL_ENV = { WORKER_LOCK_DURATION_MS: '2000', WORKER_STALLED_INTERVAL_MS: '1000', WORKER_MAX_STALLED_COUNT: '2' };

/** Worker processes on a stack's environment; `stopAll()` (in afterEach) kills whatever is left. */
export function workerProcesses(env: () => Record<string, string>): { start: (extra?: Record<string, string>) => AppProcess; stopAll: () => Promise<void> } {
  const started: AppProcess[] = [];
  return {
    start: (extra = {}) => {
      const w = startApp(WORKER_ENTRY, { ...env(), LOG_LEVEL: 'warn', ...extra });
      started.push(w);
      return w;
    },
    stopAll: async () => void (await Promise.all(started.splice(0).map(stopApp))),
  };
}
