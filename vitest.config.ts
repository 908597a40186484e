import { defineConfig } from 'vitest/config';
import FileDurationsReporter from './test/reporters/file-durations.ts';
import SlowestFirstSequencer from './test/helpers/sequencer.ts';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Last guards against a hang, sized for a machine twice as slow as ours or busy with other
    // work: a test waits for the events it needs (test/helpers/stack.ts waitFor), never for a
    // guessed time. Tests that start many processes set their own, larger, timeouts.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Compiles dist/ if it is stale and has Rotator's processes started from it (test/helpers/compiled.ts).
    globalSetup: ['test/helpers/compiled.ts'],
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    // The slowest files first, so that neither worker is left running one alone at the end.
    sequence: { sequencer: SlowestFirstSequencer },
    // The default output, then each file's duration, slowest first (.ci/run shows both).
    reporters: ['default', new FileDurationsReporter()],
  },
});
