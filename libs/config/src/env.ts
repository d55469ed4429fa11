import { plainToInstance, Transform } from 'class-transformer';
import {
  IsBoolean, IsIn, IsInt, IsNumber, IsOptional, IsString, IsUrl, Matches, Max, Min, MinLength, ValidateIf, validateSync,
} from 'class-validator';

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : /^-?\d+$/.test(String(value).trim()) ? Number(value) : value;
const toBool = ({ value }: { value: unknown }) => {
  if (value === undefined || value === '') return undefined;
  const v = String(value).trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  return value;
};
const toNumber = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : /^\d*\.?\d+$/.test(String(value).trim()) ? Number(value) : value;
/** host:port, host a name, IPv4 or [IPv6]. */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/;
const toList = ({ value }: { value: unknown }) =>
  value === undefined ? undefined : String(value).split(',').map((s) => s.trim()).filter(Boolean);

/**
 * Every environment variable the service reads, with its default. Validated once at start-up:
 * a wrong value stops the process with a line naming the variable.
 */
export class Env {
  // --- HTTP ---
  @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  PORT = 8000;

  @IsString()
  HOST = '0.0.0.0';

  /** Base of absolute links (job Location, image URLs in webhooks). Empty: derived from the request. */
  @IsOptional() @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  PUBLIC_BASE_URL?: string;

  @Transform(toList) @IsString({ each: true })
  CORS_ORIGINS: string[] = [];

  @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  LOG_LEVEL = 'info';

  @Transform(toInt) @IsInt() @Min(1024) @Max(10 * 1024 * 1024)
  BODY_LIMIT_BYTES = 64 * 1024;

  /** How long POST /images/generate waits before answering 504 with the job id. */
  @Transform(toInt) @IsInt() @Min(100) @Max(15 * 60 * 1000)
  SYNC_TIMEOUT_MS = 120_000;

  /** Comment lines sent on idle server-sent event streams so proxies keep them open. */
  @Transform(toInt) @IsInt() @Min(50)
  SSE_HEARTBEAT_MS = 15_000;

  // --- Redis / queue ---
  @Matches(/^rediss?:\/\/.+/, { message: 'REDIS_URL must look like redis://host:port[/db]' })
  REDIS_URL = 'redis://127.0.0.1:6379';

  /** BullMQ key prefix. Wrap it in braces ({fictures}) for Redis Cluster. */
  @Matches(/^[A-Za-z0-9_{}.-]{1,64}$/, { message: 'QUEUE_PREFIX may hold letters, digits and _ { } . - only' })
  QUEUE_PREFIX = 'fictures';

  @Transform(toInt) @IsInt() @Min(1)
  QUEUE_MAX_WAITING = 10_000;

  /**
   * Redis Sentinel instead of REDIS_URL: sentinels as host:port,host:port and the monitored primary's
   * name (REDIS_SENTINEL_NAME, required then). Every client asks them for the primary and follows failovers.
   */
  @Transform(toList) @Matches(HOST_PORT, { each: true, message: 'REDIS_SENTINELS must be comma-separated host:port pairs' })
  REDIS_SENTINELS: string[] = [];

  @ValidateIf((e: Env) => e.REDIS_SENTINELS.length > 0 || e.REDIS_SENTINEL_NAME !== undefined)
  @Matches(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS: the primary\'s name in the sentinels (letters, digits, _ . -)' })
  REDIS_SENTINEL_NAME?: string;

  /** Password of the sentinels themselves (requirepass in their config), when they have one. */
  @IsOptional() @IsString()
  REDIS_SENTINEL_PASSWORD?: string;

  /** Password of the data nodes with REDIS_SENTINELS or REDIS_CLUSTER_NODES (with REDIS_URL it goes in the URL). */
  @IsOptional() @IsString()
  REDIS_PASSWORD?: string;

  /** Redis Cluster instead of REDIS_URL: some of its nodes as host:port,…; QUEUE_PREFIX must then hold a {hash tag}. */
  @Transform(toList) @Matches(HOST_PORT, { each: true, message: 'REDIS_CLUSTER_NODES must be comma-separated host:port pairs' })
  REDIS_CLUSTER_NODES: string[] = [];

  /**
   * A new job is acknowledged (202), and a worker reports a result, only once WAIT confirms this many
   * replicas have the writes. Unset: 1 with REDIS_SENTINELS, else 0 (no wait). See replicasToAck().
   */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(16)
  REDIS_MIN_REPLICAS_ACK?: number;

  /** How long WAIT may take before the write counts as unconfirmed (503 replication_unconfirmed). */
  @Transform(toInt) @IsInt() @Min(1) @Max(60_000)
  REDIS_REPLICA_ACK_TIMEOUT_MS = 500;

  /** true: refuse to start when Redis's maxmemory-policy is not noeviction (BullMQ loses jobs to eviction). */
  @Transform(toBool) @IsBoolean()
  REDIS_REQUIRE_NOEVICTION = false;

  /**
   * Share of Redis's maxmemory past which submissions answer 503 storage_full: the rest is headroom
   * for the images of jobs already accepted, so a full Redis refuses new work, not finished images.
   */
  @Transform(toNumber) @IsNumber({}, { message: 'REDIS_MEMORY_HIGH_WATERMARK must be a number between 0.1 and 1' }) @Min(0.1) @Max(1)
  REDIS_MEMORY_HIGH_WATERMARK = 0.9;

  @Transform(toInt) @IsInt() @Min(1) @Max(100)
  JOB_ATTEMPTS = 3;

  @Transform(toInt) @IsInt() @Min(0)
  JOB_BACKOFF_MS = 5_000;

  // --- ComfyUI / worker ---
  @Transform(toList) @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] }, { each: true })
  COMFYUI_URLS: string[] = ['http://127.0.0.1:8188'];

  /** No progress from ComfyUI for this long (no WS event, history empty) = hung: interrupt and retry. */
  @Transform(toInt) @IsInt() @Min(100)
  COMFYUI_IDLE_TIMEOUT_MS = 120_000;

  /** Safety-net poll of /queue + /history while a prompt is in flight (the socket is the fast path). */
  @Transform(toInt) @IsInt() @Min(50)
  COMFYUI_POLL_INTERVAL_MS = 5_000;

  @Transform(toInt) @IsInt() @Min(100)
  COMFYUI_REQUEST_TIMEOUT_MS = 10_000;

  @Transform(toInt) @IsInt() @Min(500)
  WORKER_LOCK_DURATION_MS = 30_000;

  @Transform(toInt) @IsInt() @Min(100)
  WORKER_STALLED_INTERVAL_MS = 30_000;

  @Transform(toInt) @IsInt() @Min(0) @Max(100)
  WORKER_MAX_STALLED_COUNT = 2;

  @Transform(toInt) @IsInt() @Min(0)
  WORKER_SHUTDOWN_GRACE_MS = 30_000;

  /** true: while a prompt runs, the next job of that GPU is already submitted to ComfyUI's queue (at most one waits there). */
  @Transform(toBool) @IsBoolean()
  WORKER_PIPELINE = true;

  // --- results ---
  @IsIn(['redis', 'fs', 's3'])
  RESULT_STORE: 'redis' | 'fs' | 's3' = 'redis';

  @IsString()
  RESULT_DIR = 'data/results';

  @Transform(toInt) @IsInt() @Min(1)
  RESULT_TTL_SECONDS = 86_400;

  /**
   * ComfyUI writes its whole graph (node ids, model files, output prefix) into PNG text chunks;
   * false strips tEXt/iTXt/zTXt before an image is stored, true keeps them for operators who want them.
   */
  @Transform(toBool) @IsBoolean()
  KEEP_IMAGE_METADATA = false;

  /**
   * A seeded request equal to an earlier succeeded job's is answered from its stored images without
   * a GPU run: only among one API key's jobs (owner), among everyone's (global), or never (off).
   */
  @IsIn(['owner', 'global', 'off'])
  RESULT_CACHE: 'owner' | 'global' | 'off' = 'owner';

  /** Bucket of RESULT_STORE=s3 (required then). Credentials come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID…). */
  @ValidateIf((e: Env) => e.RESULT_STORE === 's3' || e.RESULT_S3_BUCKET !== undefined)
  @Matches(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { message: 'RESULT_S3_BUCKET must be set for RESULT_STORE=s3: 3-63 lowercase letters, digits, . and -' })
  RESULT_S3_BUCKET?: string;

  /** Key prefix inside the bucket, e.g. results/ (a trailing / is added). */
  @Matches(/^(?!\/)[A-Za-z0-9!_.*'()\/-]{0,200}$/, { message: 'RESULT_S3_PREFIX may hold letters, digits and !_.*\'()/- only, and must not start with /' })
  RESULT_S3_PREFIX = '';

  /** S3-compatible endpoint (R2, MinIO, GCS interop…); unset = AWS S3 of RESULT_S3_REGION. */
  @IsOptional() @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  RESULT_S3_ENDPOINT?: string;

  @Matches(/^[a-z0-9-]{1,32}$/, { message: 'RESULT_S3_REGION must look like us-east-1 (or auto for R2)' })
  RESULT_S3_REGION = 'us-east-1';

  /** Path-style URLs (endpoint/bucket/key): MinIO and most self-hosted stores need them. */
  @Transform(toBool) @IsBoolean()
  RESULT_S3_FORCE_PATH_STYLE = false;

  /** Deadline of every bucket call (connect, answer, and each idle stretch of a download). */
  @Transform(toInt) @IsInt() @Min(100) @Max(120_000)
  RESULT_S3_TIMEOUT_MS = 5_000;

  /** > 0: downloads answer 302 to a presigned GET that expires after this many seconds, instead of streaming. */
  @Transform(toInt) @IsInt() @Min(0) @Max(604_800)
  RESULT_S3_SIGNED_URL_TTL_SECONDS = 0;

  /** How often expired objects are deleted (one process per interval, by a Redis lock); 0 = never (a bucket lifecycle rule does it). Unset: a tenth of the TTL, 1 min – 1 h. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0)
  RESULT_S3_SWEEP_INTERVAL_SECONDS?: number;

  /** Public origin of the bucket (CDN, public bucket): downloads answer 302 to <this>/<key>. */
  @IsOptional() @IsUrl({ require_tld: false, require_protocol: true, protocols: ['http', 'https'] })
  RESULT_PUBLIC_BASE_URL?: string;

  // --- signed links ---
  /**
   * HMAC key of the signed image links (images[].signed_url, url results of /v1): at least 32
   * characters, the same on every API instance and worker (webhook payloads carry links too). Unset: derived
   * from WEBHOOK_SECRET, else random per API process (a warning; webhook payloads then carry none).
   */
  @IsOptional() @IsString() @MinLength(32, { message: 'SIGNED_URL_SECRET must be at least 32 characters (e.g. openssl rand -base64 32)' })
  SIGNED_URL_SECRET?: string;

  /** How long a signed image link works (rounded up by at most 5 minutes so repeated reads give one URL). */
  @Transform(toInt) @IsInt() @Min(1) @Max(604_800)
  SIGNED_URL_TTL_SECONDS = 3_600;

  /**
   * /v1 requests without an Idempotency-Key: the same key and body within this many seconds attach
   * to the first one's job instead of starting a second GPU run (SDK retries); 0 turns it off.
   */
  @Transform(toInt) @IsInt() @Min(0) @Max(86_400)
  OPENAI_DEDUPE_WINDOW_SECONDS = 600;

  // --- workflows ---
  @IsString()
  WORKFLOWS_DIR = 'workflows';

  // --- webhooks ---
  /** Standard Webhooks secret, whsec_<base64 of 24-64 random bytes>. Required to send webhooks. */
  @IsOptional() @Matches(/^whsec_[A-Za-z0-9+/=]{32,}$/, { message: 'WEBHOOK_SECRET must be whsec_<base64 of at least 24 bytes>' })
  WEBHOOK_SECRET?: string;

  @Transform(toList) @IsString({ each: true })
  WEBHOOK_ALLOWED_HOSTS: string[] = [];

  /** Whole-attempt deadline of one delivery: lookup, connect, TLS, headers and (≤ 64 KiB of) body. */
  @Transform(toInt) @IsInt() @Min(100) @Max(60_000)
  WEBHOOK_TIMEOUT_MS = 10_000;

  /** Deliveries in flight at once per worker process. A slow receiver holds one of these, never a GPU. */
  @Transform(toInt) @IsInt() @Min(1) @Max(256)
  WEBHOOK_CONCURRENCY = 8;

  /**
   * Private hosts an input image URL (img2img, inpainting) may point at: tests and development.
   * Everything else must be https on a public address; the worker checks again at connect time.
   */
  @Transform(toList) @IsString({ each: true })
  INPUT_URL_ALLOWED_HOSTS: string[] = [];

  /** Refuse plain-http webhook URLs at submission (hosts in WEBHOOK_ALLOWED_HOSTS excepted). */
  @Transform(toBool) @IsBoolean()
  WEBHOOK_HTTPS_ONLY = true;

  /** Delay before each retry, in ms, comma-separated. */
  @Transform(toList) @Matches(/^\d+$/, { each: true, message: 'WEBHOOK_RETRY_SCHEDULE_MS must be comma-separated whole milliseconds' })
  WEBHOOK_RETRY_SCHEDULE_MS: string[] = ['5000', '30000', '120000', '600000', '1800000', '3600000', '10800000', '21600000'];

  // --- health ---
  @Transform(toBool) @IsBoolean()
  GPU_REQUIRED = true;

  @IsOptional() @Transform(toInt) @IsInt() @Min(0)
  HEALTH_MIN_FREE_VRAM_MB?: number;

  /** Budget of each readiness check; they run in parallel, so keep it under a probe's 1 s timeout. */
  @Transform(toInt) @IsInt() @Min(50) @Max(10_000)
  HEALTH_TIMEOUT_MS = 800;

  /** How long a check's answer is reused, so probe storms never reach Redis or ComfyUI. */
  @Transform(toInt) @IsInt() @Min(0) @Max(10_000)
  HEALTH_CACHE_MS = 1_500;

  /** Jobs waiting, none active and no job started for this long while workers are alive: queue check down. */
  @Transform(toInt) @IsInt() @Min(100)
  HEALTH_QUEUE_STUCK_MS = 60_000;

  /** Checks that decide /health and /health/ready; an API-only node that cannot reach ComfyUI drops comfyui,gpu. */
  @Transform(toList) @IsIn(['redis', 'comfyui', 'gpu', 'workers', 'queue'], { each: true })
  HEALTH_READY_CHECKS: string[] = ['redis', 'comfyui', 'gpu', 'workers', 'queue'];

  /** After SIGTERM: readiness is 503 at once, the API keeps serving this long (≥ LB interval × fall + timeout), then closes. */
  @Transform(toInt) @IsInt() @Min(0)
  SHUTDOWN_DRAIN_MS = 5_000;

  /** After the drain: how long requests in flight may still take before their connections are cut. */
  @Transform(toInt) @IsInt() @Min(0)
  SHUTDOWN_TIMEOUT_MS = 20_000;

  /** Bearer token (or basic-auth password) of the queue dashboard at /admin/queues; unset = dashboard off. */
  @IsOptional() @IsString() @MinLength(16, { message: 'ADMIN_TOKEN must be at least 16 characters' })
  ADMIN_TOKEN?: string;

  /** Serve the API's /metrics on this port instead of the public one. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  METRICS_PORT?: number;

  /** The worker's own /metrics (job outcomes and durations, webhook deliveries); unset = not served. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  WORKER_METRICS_PORT?: number;

  /** Each generation worker writes its heartbeat this often; it expires after three intervals. */
  @Transform(toInt) @IsInt() @Min(100) @Max(60_000)
  WORKER_HEARTBEAT_INTERVAL_MS = 5_000;

  // --- routing and warm-up ---
  /**
   * true: accept jobs for a model no live worker serves (they wait in that model's queue), for
   * fleets that start GPU boxes on demand; false: refuse them with 503 model_unavailable.
   */
  @Transform(toBool) @IsBoolean()
  QUEUE_UNSERVED_MODELS = false;

  /** true: a worker renders each served model's warm-up prompt before it takes user jobs (at start and after ComfyUI restarts). */
  @Transform(toBool) @IsBoolean()
  WARMUP = false;

  // --- auth ---
  /** true: refuse to start while no API key exists (never run open by accident). */
  @Transform(toBool) @IsBoolean()
  AUTH_REQUIRED = false;

  /**
   * Submissions (POST jobs, POST generate) per minute per API key (per client IP when the server
   * runs open); a key's --rpm overrides it. Sized for one web-app backend serving all its users.
   */
  @Transform(toInt) @IsInt() @Min(1)
  RATE_LIMIT_SUBMIT_PER_MINUTE = 600;

  /** Reads (job, events, images, models; cancel too) per minute per key or client IP: a separate budget, so polling never blocks submitting. */
  @Transform(toInt) @IsInt() @Min(1)
  RATE_LIMIT_READ_PER_MINUTE = 6_000;

  /** Deprecated: the old single budget. When set, it is the default of both budgets above (each counted on its own). */
  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  RATE_LIMIT_PER_MINUTE?: number;

  /** Jobs one API key may have queued or running at once; keys may override it. */
  @Transform(toInt) @IsInt() @Min(1)
  QUOTA_MAX_JOBS_PER_KEY = 10;

  /** Blocklist file: one word or /regex/flags per line, # comments. */
  @IsOptional() @IsString()
  CONTENT_POLICY_FILE?: string;

  /** Blocked words or /regex/flags, comma-separated (added to CONTENT_POLICY_FILE's). */
  @Transform(toList) @IsString({ each: true })
  CONTENT_POLICY_BLOCKLIST: string[] = [];

  /** Replicas WAIT must confirm for an acknowledged write (REDIS_MIN_REPLICAS_ACK, or its default). */
  get replicasToAck(): number {
    return this.REDIS_MIN_REPLICAS_ACK ?? (this.REDIS_SENTINELS.length ? 1 : 0);
  }

  get webhookRetryScheduleMs(): number[] {
    return this.WEBHOOK_RETRY_SCHEDULE_MS.map(Number);
  }
}

/** Redis's own rule: the text between the first { and the first } after it, when not empty, is what is hashed. */
export function hasHashTag(key: string): boolean {
  const open = key.indexOf('{');
  return open >= 0 && key.indexOf('}', open + 1) > open + 1;
}

/** Settings that are each valid but do not fit together: one Redis topology, a Cluster-safe prefix. */
function redisTopologyProblem(env: Env): string | undefined {
  if (env.REDIS_SENTINELS.length && env.REDIS_CLUSTER_NODES.length) {
    return 'REDIS_SENTINELS and REDIS_CLUSTER_NODES are both set: choose Sentinel or Cluster';
  }
  if (env.REDIS_CLUSTER_NODES.length && !hasHashTag(env.QUEUE_PREFIX)) {
    return `QUEUE_PREFIX=${JSON.stringify(env.QUEUE_PREFIX)} has no {hash tag}: on Redis Cluster (REDIS_CLUSTER_NODES) every key must share one slot, e.g. QUEUE_PREFIX={${env.QUEUE_PREFIX.replace(/[{}]/g, '') || 'fictures'}}`;
  }
  return undefined;
}

export class EnvValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
  }
}

/**
 * Builds the Env from a plain record (process.env by default). Unknown variables are ignored;
 * every known one is checked, and all problems are reported at once.
 */
export function loadEnv(source: Record<string, string | undefined> = process.env, overrides: Partial<Record<keyof Env, unknown>> = {}): Env {
  const known = new Set(Object.keys(new Env()).concat(['PUBLIC_BASE_URL', 'WEBHOOK_SECRET', 'HEALTH_MIN_FREE_VRAM_MB', 'ADMIN_TOKEN', 'METRICS_PORT', 'WORKER_METRICS_PORT', 'CONTENT_POLICY_FILE', 'RATE_LIMIT_PER_MINUTE',
    'RESULT_S3_BUCKET', 'RESULT_S3_ENDPOINT', 'RESULT_S3_SWEEP_INTERVAL_SECONDS', 'RESULT_PUBLIC_BASE_URL', 'SIGNED_URL_SECRET',
    'REDIS_SENTINEL_NAME', 'REDIS_SENTINEL_PASSWORD', 'REDIS_PASSWORD', 'REDIS_MIN_REPLICAS_ACK']));
  const raw: Record<string, unknown> = {};
  // An empty value means "not set" (as in .env.example), so the default applies.
  for (const [k, v] of Object.entries(source)) if (known.has(k) && v !== undefined && v !== '') raw[k] = v;
  const env = plainToInstance(Env, { ...raw, ...overrides }, { exposeDefaultValues: true });
  const errors = validateSync(env, { forbidUnknownValues: false });
  if (errors.length) {
    throw new EnvValidationError(
      errors.map((e) => `${e.property}=${JSON.stringify(raw[e.property] ?? (overrides as Record<string, unknown>)[e.property])}: ${Object.values(e.constraints ?? {}).join('; ')}`),
    );
  }
  const topology = redisTopologyProblem(env);
  if (topology) throw new EnvValidationError([topology]);
  const given = (k: keyof Env) => raw[k] !== undefined || (overrides as Record<string, unknown>)[k] !== undefined;
  if (env.RATE_LIMIT_PER_MINUTE !== undefined) {
    if (!given('RATE_LIMIT_SUBMIT_PER_MINUTE')) env.RATE_LIMIT_SUBMIT_PER_MINUTE = env.RATE_LIMIT_PER_MINUTE;
    if (!given('RATE_LIMIT_READ_PER_MINUTE')) env.RATE_LIMIT_READ_PER_MINUTE = env.RATE_LIMIT_PER_MINUTE;
  }
  return env;
}

/** For an app's main(): the validated Env, or one clear message and exit code 2. */
export function loadEnvOrExit(source: Record<string, string | undefined> = process.env): Env {
  try {
    return loadEnv(source);
  } catch (e) {
    if (e instanceof EnvValidationError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
