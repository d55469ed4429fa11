import { EnvValidationError, hasHashTag, loadEnv } from './env';

describe('loadEnv', () => {
  it('configures Sentinel or Cluster instead of REDIS_URL, with clear errors for bad values', () => {
    expect(loadEnv({})).toMatchObject({ REDIS_SENTINELS: [], REDIS_CLUSTER_NODES: [], replicasToAck: 0, REDIS_REPLICA_ACK_TIMEOUT_MS: 500 });
    const sentinel = loadEnv({ REDIS_SENTINELS: '10.0.0.1:26379, sentinel-b:26379,[::1]:26380', REDIS_SENTINEL_NAME: 'mymaster' });
    expect(sentinel).toMatchObject({ REDIS_SENTINELS: ['10.0.0.1:26379', 'sentinel-b:26379', '[::1]:26380'], REDIS_SENTINEL_NAME: 'mymaster', replicasToAck: 1 });
    expect(loadEnv({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_MIN_REPLICAS_ACK: '0' }).replicasToAck).toBe(0);
    expect(loadEnv({ REDIS_MIN_REPLICAS_ACK: '2' }).replicasToAck).toBe(2);
    expect(() => loadEnv({ REDIS_SENTINELS: 'a:1' })).toThrow(/REDIS_SENTINEL_NAME must be set with REDIS_SENTINELS/);
    expect(() => loadEnv({ REDIS_SENTINELS: 'a:1,nope', REDIS_SENTINEL_NAME: 'm' })).toThrow(/REDIS_SENTINELS must be comma-separated host:port pairs/);
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'redis://a:1', QUEUE_PREFIX: '{f}' })).toThrow(/REDIS_CLUSTER_NODES must be comma-separated host:port pairs/);
    for (const bad of ['-1', 'one', '17']) expect(() => loadEnv({ REDIS_MIN_REPLICAS_ACK: bad })).toThrow(/REDIS_MIN_REPLICAS_ACK/);
    expect(() => loadEnv({ REDIS_REPLICA_ACK_TIMEOUT_MS: '0' })).toThrow(/REDIS_REPLICA_ACK_TIMEOUT_MS/);
    expect(() => loadEnv({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_NAME: 'm', REDIS_CLUSTER_NODES: 'b:2', QUEUE_PREFIX: '{f}' })).toThrow(/choose Sentinel or Cluster/);
  });

  it('on Cluster, refuses a queue prefix without a {hash tag}', () => {
    expect(loadEnv({ REDIS_CLUSTER_NODES: 'a:7000,b:7001', QUEUE_PREFIX: '{fictures}' }).REDIS_CLUSTER_NODES).toEqual(['a:7000', 'b:7001']);
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'a:7000' })).toThrow(/QUEUE_PREFIX="fictures" has no \{hash tag\}.*QUEUE_PREFIX=\{fictures\}/);
    expect(() => loadEnv({ REDIS_CLUSTER_NODES: 'a:7000', QUEUE_PREFIX: '{}x' })).toThrow(EnvValidationError);
    expect(loadEnv({ QUEUE_PREFIX: 'fictures' }).QUEUE_PREFIX).toBe('fictures'); // a single Redis needs no tag
    expect([hasHashTag('{a}'), hasHashTag('x{a}y'), hasHashTag('{}{a}'), hasHashTag('a}{'), hasHashTag('{a')]).toEqual([true, true, false, false, false]);
  });

  it('applies the documented defaults', () => {
    const env = loadEnv({});
    expect(env).toMatchObject({
      PORT: 8000,
      REDIS_URL: 'redis://127.0.0.1:6379',
      COMFYUI_URLS: ['http://127.0.0.1:8188'],
      WORKFLOWS_DIR: 'workflows',
      RESULT_STORE: 'redis',
      RESULT_TTL_SECONDS: 86400,
      QUEUE_MAX_WAITING: 10000,
      KEEP_IMAGE_METADATA: false,
    });
  });

  it('has separate submission and read budgets, with the old single budget as a deprecated alias of both', () => {
    expect(loadEnv({})).toMatchObject({ RATE_LIMIT_SUBMIT_PER_MINUTE: 600, RATE_LIMIT_READ_PER_MINUTE: 6000, RATE_LIMIT_PER_MINUTE: undefined });
    expect(loadEnv({ RATE_LIMIT_PER_MINUTE: '300' })).toMatchObject({ RATE_LIMIT_SUBMIT_PER_MINUTE: 300, RATE_LIMIT_READ_PER_MINUTE: 300 });
    expect(loadEnv({ RATE_LIMIT_PER_MINUTE: '300', RATE_LIMIT_READ_PER_MINUTE: '9000' })).toMatchObject({ RATE_LIMIT_SUBMIT_PER_MINUTE: 300, RATE_LIMIT_READ_PER_MINUTE: 9000 });
    expect(loadEnv({}, { RATE_LIMIT_PER_MINUTE: 50, RATE_LIMIT_SUBMIT_PER_MINUTE: 7 })).toMatchObject({ RATE_LIMIT_SUBMIT_PER_MINUTE: 7, RATE_LIMIT_READ_PER_MINUTE: 50 });
    expect(() => loadEnv({ RATE_LIMIT_READ_PER_MINUTE: '0' })).toThrow(/RATE_LIMIT_READ_PER_MINUTE/);
  });

  it('guards Redis memory: eviction policy off by default, a watermark share between 0.1 and 1', () => {
    expect(loadEnv({})).toMatchObject({ REDIS_REQUIRE_NOEVICTION: false, REDIS_MEMORY_HIGH_WATERMARK: 0.9 });
    expect(loadEnv({ REDIS_REQUIRE_NOEVICTION: 'true', REDIS_MEMORY_HIGH_WATERMARK: '0.75' })).toMatchObject({ REDIS_REQUIRE_NOEVICTION: true, REDIS_MEMORY_HIGH_WATERMARK: 0.75 });
    expect(loadEnv({ REDIS_MEMORY_HIGH_WATERMARK: '1' }).REDIS_MEMORY_HIGH_WATERMARK).toBe(1);
    for (const bad of ['0', '1.5', '90%', 'high', '-0.5']) expect(() => loadEnv({ REDIS_MEMORY_HIGH_WATERMARK: bad })).toThrow(/REDIS_MEMORY_HIGH_WATERMARK/);
  });

  it('parses lists, numbers and booleans; an empty value means unset', () => {
    const env = loadEnv({ COMFYUI_URLS: 'http://gpu1:8188, http://gpu2:8188', PORT: '9000', GPU_REQUIRED: 'false', PUBLIC_BASE_URL: '' });
    expect(env.COMFYUI_URLS).toEqual(['http://gpu1:8188', 'http://gpu2:8188']);
    expect(env.PORT).toBe(9000);
    expect(env.GPU_REQUIRED).toBe(false);
    expect(env.PUBLIC_BASE_URL).toBeUndefined();
    expect(loadEnv({ KEEP_IMAGE_METADATA: 'true' }).KEEP_IMAGE_METADATA).toBe(true);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['REDIS_URL', 'localhost:6379'],
    ['COMFYUI_URLS', 'ftp://gpu:8188'],
    ['RESULT_STORE', 'mongo'],
    ['RESULT_S3_BUCKET', 'No_Such'],
    ['RESULT_S3_PREFIX', '/abs'],
    ['RESULT_PUBLIC_BASE_URL', 'cdn.example'],
    ['WEBHOOK_SECRET', 'plain-secret'],
    ['LOG_LEVEL', 'loud'],
    ['KEEP_IMAGE_METADATA', 'maybe'],
  ])('refuses %s=%s with one line naming the variable', (name, value) => {
    let error: unknown;
    try {
      loadEnv({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EnvValidationError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    expect(message).toContain(`${name}=`);
  });

  it('RESULT_STORE=s3 needs a bucket; the S3 settings have defaults', () => {
    expect(() => loadEnv({ RESULT_STORE: 's3' })).toThrow(/RESULT_S3_BUCKET/);
    const env = loadEnv({ RESULT_STORE: 's3', RESULT_S3_BUCKET: 'my-results', RESULT_S3_FORCE_PATH_STYLE: 'true' });
    expect(env).toMatchObject({
      RESULT_S3_BUCKET: 'my-results', RESULT_S3_PREFIX: '', RESULT_S3_REGION: 'us-east-1', RESULT_S3_FORCE_PATH_STYLE: true,
      RESULT_S3_TIMEOUT_MS: 5000, RESULT_S3_SIGNED_URL_TTL_SECONDS: 0,
    });
    expect(env.RESULT_S3_SWEEP_INTERVAL_SECONDS).toBeUndefined();
    expect(loadEnv({ RESULT_S3_SWEEP_INTERVAL_SECONDS: '0' }).RESULT_S3_SWEEP_INTERVAL_SECONDS).toBe(0);
  });
});
