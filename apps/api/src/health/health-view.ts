import type { HealthCheckResult, HealthIndicatorResult } from '@nestjs/terminus';
import { type ComfyInstanceStatus, servesJobs, type WorkerHeartbeat } from '@app/health';

type Details = HealthIndicatorResult[string];

const isCountMap = (v: unknown): v is Record<string, number> =>
  !!v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'number');

/**
 * What an anonymous caller may see of one check: its status and its counts. Strings (messages,
 * URLs, versions, worker ids, GPU names) are dropped; a list becomes its length, plus how many of
 * its entries are up when they say so. A rule rather than a list of fields, so a check added
 * later leaks nothing by default.
 */
export function publicCheck(details: Details): Details {
  const out: Details = { status: details.status };
  for (const [key, value] of Object.entries(details)) {
    if (key === 'status') continue;
    if (typeof value === 'number' || typeof value === 'boolean') out[key] = value;
    else if (isCountMap(value)) out[key] = { ...value };
    else if (Array.isArray(value)) {
      out[key] = value.length;
      const ups = value.filter((v): v is { up: boolean } => !!v && typeof v === 'object' && typeof (v as { up?: unknown }).up === 'boolean');
      if (ups.length) out[`${key}_up`] = ups.filter((v) => v.up).length;
    }
  }
  return out;
}

function mapChecks(group: Partial<HealthIndicatorResult> | undefined): HealthIndicatorResult | undefined {
  if (!group) return undefined;
  const out: HealthIndicatorResult = {};
  for (const [k, v] of Object.entries(group)) if (v) out[k] = publicCheck(v);
  return out;
}

/** A terminus answer with every check reduced to its public part (see publicCheck). */
export function publicHealth(result: HealthCheckResult): HealthCheckResult {
  return {
    status: result.status,
    ...(result.info ? { info: mapChecks(result.info) } : {}),
    ...(result.error ? { error: mapChecks(result.error) } : {}),
    details: mapChecks(result.details) ?? {},
  };
}

export type ImageDevice = 'cuda' | 'cpu' | 'unknown';

/** The original service's `models.image`. */
export interface ImageModelStatus {
  name: string;
  type: 'text-to-image';
  framework: 'comfyui';
  device: ImageDevice;
  initialized: boolean;
}

/**
 * The device as ComfyUI's /system_stats reported it, through the workers' heartbeats (any node
 * sees the whole fleet) or, lacking those, this node's own probe: a CUDA device anywhere → cuda;
 * ComfyUI reached but no CUDA device → cpu; nothing reached → unknown.
 */
export function imageDevice(beats: WorkerHeartbeat[], instances: ComfyInstanceStatus[]): ImageDevice {
  const live = beats.filter(servesJobs);
  const reached = instances.filter((i) => i.up);
  if (live.some((b) => b.gpus.length) || reached.some((i) => i.gpus.length)) return 'cuda';
  return live.length || reached.length ? 'cpu' : 'unknown';
}

export function imageModelStatus(defaultModel: string, beats: WorkerHeartbeat[], instances: ComfyInstanceStatus[]): ImageModelStatus {
  return {
    name: defaultModel,
    type: 'text-to-image',
    framework: 'comfyui',
    device: imageDevice(beats, instances),
    initialized: beats.some(servesJobs),
  };
}

/** GET /health: the original service's fields, then terminus's under their own names. */
export interface CompatibleHealth {
  status: 'healthy' | 'unhealthy';
  version: string;
  models: { image: ImageModelStatus };
  info?: HealthCheckResult['info'];
  error?: HealthCheckResult['error'];
  details: HealthIndicatorResult;
}

export function compatibleHealth(ready: { httpStatus: number; body: HealthCheckResult }, version: string, image: ImageModelStatus): CompatibleHealth {
  const { info, error, details } = ready.body;
  return {
    status: ready.httpStatus === 200 ? 'healthy' : 'unhealthy',
    version,
    models: { image },
    ...(info ? { info } : {}),
    ...(error ? { error } : {}),
    details,
  };
}
