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

module.exports = {
  maxWorkers: 2,
  testTimeout: 30000,
  // A BullMQ or ioredis handle left open must never hang CI.
  forceExit: true,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      globalTeardown: '<rootDir>/test/support/global-teardown.ts',
    },
  ],
};
