import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest (they start and kill many processes, or wait out real drains),
 * longest first: update from the per-file duration table the run prints at its end.
 */
export const SLOWEST_FILES = [
  'test/chaos/chaos.test.ts',
  'test/chaos/chaos-sentinel.test.ts',
  'test/engine/crash.test.ts',
  'test/engine/zero-downtime.test.ts',
  'test/engine/two-workers.test.ts',
  'test/engine/consumer-gate.test.ts',
  'test/engine/batch-fleet.test.ts',
  'test/engine/rolling-restart.test.ts',
  'test/engine/sentinel-auth-tls.test.ts',
  'test/engine/rolling-restart-park.test.ts',
  'test/engine/tls-redis.test.ts',
  'test/dashboard/dashboard.test.ts',
  'test/engine/credentials.test.ts',
  'test/startup/npm-start.test.ts',
  'test/release/compiled.test.ts',
  'test/api/fuzz.test.ts',
  'test/contract/stores.test.ts',
  'test/client/client.test.ts',
  'test/unit/file-store-kill.test.ts',
  'test/cli/adopt-key.test.ts',
  'test/cli/rotator.test.ts',
];

/**
 * Starts the slowest files first, then the rest in vitest's own order. Vitest orders by the
 * durations of earlier runs when it has them, and otherwise by file size, larger first; CI runs
 * on a fresh clone, without those durations, and the two slowest files are among the smallest:
 * they started last, and the run waited for them alone on one of its two workers.
 */
export default class SlowestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification): number => {
      const i = SLOWEST_FILES.findIndex((name) => f.moduleId.endsWith(`/${name}`));
      return i === -1 ? SLOWEST_FILES.length : i;
    };
    // Array.prototype.sort is stable: files outside the list keep vitest's order.
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}
