/** What the HTTP handlers see of the simulator. */
import { IncomingMessage, ServerResponse } from 'node:http';
import { ComfyProcess } from './comfy-process';
import { FaultState } from './faults';
import { NodeDef } from './node-registry';
import { SimDirs } from './output-files';
import { JsonObject } from './py-json';
import { Renderer } from './renderer';
import { SimStats, StatsCounters } from './sim-stats';

export interface RouteContext {
  /** The current ComfyUI "process" (replaced on restart). */
  readonly proc: ComfyProcess;
  readonly registry: Map<string, NodeDef>;
  readonly models: Map<string, string[]>;
  readonly faults: FaultState;
  readonly counters: StatsCounters;
  readonly dirs: SimDirs;
  readonly renderer: Renderer;
  systemStats(): JsonObject;
  serverFeatures(): JsonObject;
  stats(): SimStats;
  restart(downMs: number): Promise<void>;
}

export interface RouteRequest {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
}

export type RouteHandler = (ctx: RouteContext, r: RouteRequest) => Promise<void> | void;

export interface Route {
  method: 'GET' | 'POST';
  /** Path with `{name}` parameters, without the `/api` prefix. */
  path: string;
  handler: RouteHandler;
}
