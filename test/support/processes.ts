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
