// Two projects: unit specs beside the code, end-to-end specs in test/ against a real Redis and the
// ComfyUI simulator. The global setup starts one private redis-server for the whole run unless
// REDIS_URL is given; fault tests start their own.
const libs = ['config', 'common', 'queue', 'comfyui', 'workflows', 'storage', 'webhooks', 'health', 'jobs'];
const moduleNameMapper = {};
for (const l of libs) {
  moduleNameMapper[`^@app/${l}$`] = `<rootDir>/libs/${l}/src`;
  moduleNameMapper[`^@app/${l}/(.*)$`] = `<rootDir>/libs/${l}/src/$1`;
}
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.spec.json' }] };
const common = { rootDir: __dirname, moduleFileExtensions: ['ts', 'js', 'json'], transform, moduleNameMapper, testEnvironment: 'node' };

// Jest is not told to kill itself at the end: every spec closes what it opens, so jest exits by itself. A handle left open shows as
// "Jest did not exit one second after the test run has completed" (openHandlesTimeout) or as "A worker
// process has failed to exit gracefully"; a run that really hangs is bounded by the timeout in .ci/run.
module.exports = {
  maxWorkers: 2,
  testTimeout: 30000,
  openHandlesTimeout: 1000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts'],
      setupFilesAfterEnv: ['<rootDir>/test/support/unit-setup.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
    },
  ],
};
