export interface RedisMemory {
  used_bytes: number;
  /** 0 when Redis has no `maxmemory` (it may grow until the machine runs out). */
  max_bytes: number;
  policy: string;
}

/** The fields of `INFO memory` the API and workers use; undefined when the reply lacks `used_memory`. */
export function parseRedisMemoryInfo(info: string): RedisMemory | undefined {
  const fields = new Map<string, string>();
  for (const line of info.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  const used = Number(fields.get('used_memory'));
  if (!fields.has('used_memory') || !Number.isFinite(used)) return undefined;
  const max = Number(fields.get('maxmemory') ?? 0);
  return { used_bytes: used, max_bytes: Number.isFinite(max) ? max : 0, policy: fields.get('maxmemory_policy') ?? 'unknown' };
}
