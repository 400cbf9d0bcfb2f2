/** @type {import('jest').Config} */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: false }];
module.exports = {
  // Integration tests wait on real services; unit tests finish in milliseconds either way.
  testTimeout: 180000,
  projects: [
    {
      displayName: 'unit',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/unit'],
      transform: { '^.+\\.ts$': tsJest },
    },
    {
      displayName: 'integration',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/integration'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/support/preflight.ts',
    },
    {
      // Seeded randomized operations against a broker, TimescaleDB and PgBouncer of the suite's own
      // (test/nemesis; `npm run nemesis` runs long ones). Not part of "integration": run it with
      // `npx jest --selectProjects nemesis --ci --runInBand`.
      displayName: 'nemesis',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/nemesis'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/support/preflight.ts',
    },
    {
      // The container image (scripts/image.sh builds it; scripts/test.sh runs this after the
      // integration tests, against the same broker and database).
      displayName: 'image',
      testEnvironment: 'node',
      roots: ['<rootDir>/test/image'],
      transform: { '^.+\\.ts$': tsJest },
      globalSetup: '<rootDir>/test/support/preflight.ts',
    },
  ],
};
