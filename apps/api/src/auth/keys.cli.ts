import { Env, EnvValidationError, loadEnv } from '@app/config';
import { ApiKeyInputError, type ApiKeyLimits, type ApiKeyRecord, ApiKeyStore } from './api-key.store';
import { describeRedis, redisClient, RedisKeys } from '@app/queue';

const USAGE = `Usage: npm run keys -- <command>

  create --name <name> [--rpm N] [--max-jobs N] [--priority N] [--json]
        Creates a key and prints it ONCE (only its SHA-256 is stored).
        --rpm       submissions per minute (default RATE_LIMIT_SUBMIT_PER_MINUTE)
        --max-jobs  jobs queued or running at once (default QUOTA_MAX_JOBS_PER_KEY)
        --priority  1 (first) .. 2097151 (last); default 100
  list [--json]      Lists keys: id, name, display prefix, limits, created, revoked.
  revoke <id>        Revokes a key at once, on every API instance.

Redis and key prefix come from REDIS_URL and QUEUE_PREFIX, as for the API.`;

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags.set(a.slice(2), argv[++i]);
    else flags.set(a.slice(2), true);
  }
  return { positional, flags };
}

function intFlag(flags: Map<string, string | true>, name: string): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  if (v === true || !/^\d+$/.test(v)) throw new ApiKeyInputError(`--${name} needs a whole number`);
  return Number(v);
}

function describeLimits(r: ApiKeyLimits): string {
  return [
    r.rpm !== undefined ? `${r.rpm} submissions/min` : 'default submissions/min',
    r.max_jobs !== undefined ? `${r.max_jobs} jobs at once` : 'default jobs at once',
    `priority ${r.priority ?? 'default'}`,
  ].join(', ');
}

function table(rows: ApiKeyRecord[]): string[] {
  const head = ['ID', 'NAME', 'PREFIX', 'RPM', 'MAX_JOBS', 'PRIORITY', 'CREATED', 'REVOKED'];
  const cells = rows.map((r) => [r.id, r.name, `${r.prefix}…`, String(r.rpm ?? '-'), String(r.max_jobs ?? '-'), String(r.priority ?? '-'), r.created_at, r.revoked_at ?? '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [head, ...cells].map((c) => c.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd());
}

/** The keys command against a store; returns the exit code. Separate from main() so tests can drive it. */
export async function runKeysCommand(argv: string[], store: ApiKeyStore, io: CliIo): Promise<number> {
  const { positional, flags } = parseArgs(argv);
  const [command, ...rest] = positional;
  const json = flags.get('json') === true;
  try {
    switch (command) {
      case 'create': {
        const name = flags.get('name');
        if (typeof name !== 'string') throw new ApiKeyInputError('create needs --name <name>');
        const known = new Set(['name', 'rpm', 'max-jobs', 'priority', 'json']);
        const unknown = [...flags.keys()].filter((f) => !known.has(f));
        if (unknown.length) throw new ApiKeyInputError(`unknown option --${unknown[0]}`);
        const { record, key } = await store.create({ name, rpm: intFlag(flags, 'rpm'), max_jobs: intFlag(flags, 'max-jobs'), priority: intFlag(flags, 'priority') });
        if (json) {
          io.out(JSON.stringify({ ...record, key }));
        } else {
          io.out(`Created API key ${record.id} "${record.name}" (${describeLimits(record)})`);
          io.out('');
          io.out(`  ${key}`);
          io.out('');
          io.out('This is the only time the key is shown: store it now. Only its SHA-256 is kept.');
          io.out(`Use it as "Authorization: Bearer <key>" or "X-API-Key: <key>". Revoke: npm run keys -- revoke ${record.id}`);
        }
        return 0;
      }
      case 'list': {
        const keys = await store.list();
        if (json) io.out(JSON.stringify(keys));
        else if (!keys.length) io.out('No API keys: the API runs open (see docs/security.md).');
        else table(keys).forEach((l) => io.out(l));
        return 0;
      }
      case 'revoke': {
        const id = rest[0];
        if (!id) throw new ApiKeyInputError('revoke needs a key id (see npm run keys -- list)');
        const record = await store.revoke(id);
        if (!record) {
          io.err(`No API key ${id}`);
          return 1;
        }
        if (json) io.out(JSON.stringify(record));
        else io.out(`Revoked ${record.id} "${record.name}" at ${record.revoked_at}`);
        return 0;
      }
      case undefined:
      case 'help':
        io.out(USAGE);
        return command ? 0 : 2;
      default:
        io.err(`Unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof ApiKeyInputError) {
      io.err(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}

/** `npm run keys -- …` (scripts/keys.js runs this from dist/). */
export async function main(argv: string[]): Promise<number> {
  const io: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };
  let env: Env;
  try {
    env = loadEnv();
  } catch (e) {
    if (e instanceof EnvValidationError) {
      io.err(e.message);
      return 2;
    }
    throw e;
  }
  const where = describeRedis(env);
  const redis = redisClient(env, 'cli');
  let lastError: Error | undefined;
  redis.on('error', (e: Error) => (lastError = e));
  try {
    await redis.connect();
  } catch (e) {
    io.err(`Cannot reach Redis at ${where}: ${(lastError ?? (e as Error)).message}`);
    redis.disconnect();
    return 1;
  }
  try {
    return await runKeysCommand(argv, new ApiKeyStore(redis, new RedisKeys(env.QUEUE_PREFIX)), io);
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`keys: ${e.message}\n`);
      process.exit(1);
    },
  );
}
