import { EnvValidationError, loadEnv } from './env';

describe('loadEnv', () => {
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
    });
  });

  it('parses lists, numbers and booleans; an empty value means unset', () => {
    const env = loadEnv({ COMFYUI_URLS: 'http://gpu1:8188, http://gpu2:8188', PORT: '9000', GPU_REQUIRED: 'false', PUBLIC_BASE_URL: '' });
    expect(env.COMFYUI_URLS).toEqual(['http://gpu1:8188', 'http://gpu2:8188']);
    expect(env.PORT).toBe(9000);
    expect(env.GPU_REQUIRED).toBe(false);
    expect(env.PUBLIC_BASE_URL).toBeUndefined();
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
