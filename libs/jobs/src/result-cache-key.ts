import { createHash } from 'node:crypto';
import type { GenerationParams } from '@app/queue';

/** Who may share a cached result: one API key's jobs, or everyone's. */
export type ResultCacheScope = { kind: 'owner'; owner: string | undefined } | { kind: 'global' };

/** JSON with object keys sorted, so the same request always hashes the same. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * The result-cache key of a resolved request. Every resolved parameter goes in (whatever a later
 * parameter adds to GenerationParams is covered without touching this), with the defaults of
 * fields older jobs lack filled in, plus the model's workflow fingerprint: the same parameters on
 * an edited graph make other pixels. aspect_ratio is left out: it only names a width and height,
 * which are in.
 */
export function resultCacheKey(params: GenerationParams, workflowFingerprint: string, scope: ResultCacheScope): string {
  const { aspect_ratio: _ratio, ...pixels } = params;
  const normalized = { ...pixels, num_images: params.num_images ?? 1, output_format: params.output_format ?? 'png' };
  const who = scope.kind === 'global' ? '*' : `owner:${scope.owner ?? ''}`;
  return createHash('sha256').update(canonical({ v: 1, who, workflow: workflowFingerprint, params: normalized })).digest('hex');
}
