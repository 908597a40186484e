import { defineConfig } from 'vitest/config';
import FileDurationsReporter from './test/reporters/file-durations.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    // The default output, then each file's duration, slowest first (.ci/run shows both).
    reporters: ['default', new FileDurationsReporter()],
  },
});
