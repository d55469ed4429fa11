// Types of processes.js (the process toolkit) for the TypeScript test support.
import type { ChildProcess, StdioOptions } from 'node:child_process';
import type { Readable } from 'node:stream';

export type AppName = 'api' | 'worker' | 'sim' | 'keys';
export type ProcessToolkitErrorCode =
  | 'unknown_app'
  | 'not_built'
  | 'stopping'
  | 'redis_not_installed'
  | 'redis_start_failed'
  | 'redis_stop_failed';

export const ROOT: string;
export const HOST: '127.0.0.1';
export const ENTRY: Readonly<Record<AppName, string>>;

export class ProcessToolkitError extends Error {
  readonly code: ProcessToolkitErrorCode;
  constructor(code: ProcessToolkitErrorCode, message: string);
}

export function entryPath(name: AppName): string;
export function requireBuild(names: AppName[]): void;
export function requireBuildOrExit(names: AppName[]): void;

export function freePort(host?: string): Promise<number>;
export function portInUse(port: number, host?: string): Promise<boolean>;
export function httpGet(url: string, timeoutMs?: number): Promise<{ status: number }>;
export function waitHttp(url: string, timeoutMs?: number, ok?: (r: { status: number }) => boolean): Promise<boolean>;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}
export interface SpawnAppOptions {
  inheritEnv?: boolean;
  args?: string[];
  /** node flags before the script (--cpu-prof …). */
  nodeArgs?: string[];
  stdio?: StdioOptions;
}
export function baseEnv(): Record<string, string>;
export function spawnApp(name: AppName, env?: Record<string, string>, opts?: SpawnAppOptions): ChildProcess;
export function runForeground(name: AppName, env?: Record<string, string>, opts?: { onExit?: (code: number | null, signal: NodeJS.Signals | null) => void; args?: string[] }): ChildProcess;
export function track(child: ChildProcess, opts?: { infrastructure?: boolean }): ChildProcess;
export function waitExit(child: ChildProcess): Promise<ExitInfo>;
export function stopChild(child: ChildProcess | undefined, sig?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
export function eachLine(stream: Readable, onLine: (line: string) => void): void;
export function prefixOutput(child: ChildProcess, name: string): void;
export function onStop(fn: () => void): void;
export function isStopping(): boolean;
export function stopAll(graceMs?: number): Promise<void>;
export function stopAllAndExit(code: number, graceMs?: number): void;
export function killAllSync(): void;
export function installExitHandlers(opts?: { graceMs?: number; signalExitCode?: number }): void;

export function redisPing(target: string | number, opts?: { timeoutMs?: number; authOk?: boolean }): Promise<boolean>;
export function hasRedisServer(): boolean;

export interface RedisServerOptions {
  port?: number;
  dir?: string;
  appendonly?: boolean;
  maxmemory?: string;
  logPath?: string;
  /** More redis-server arguments (--replicaof, --cluster-enabled…). */
  args?: string[];
}
export class RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** More redis-server arguments, read at each start (change them before a restart). */
  args: string[];
  child: ChildProcess | undefined;
  private constructor();
  static start(opts?: RedisServerOptions): Promise<RedisServer>;
  get running(): boolean;
  startProcess(readyTimeoutMs?: number): Promise<void>;
  stop(sig?: NodeJS.Signals): Promise<void>;
  kill(): Promise<void>;
  destroy(): Promise<void>;
}
