import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints, once the run is over, how long each test file took, slowest first: the suite has to
 * stay well under CI's limit on slower machines, and a file that creeps up is visible here long
 * before the whole run gets too slow. Appended after the default reporter's output.
 *
 * Columns: `total` is what the file cost its worker (environment, import of the file and what it
 * imports, setup, tests and hooks); `tests` is its tests and hooks alone.
 */
export default class FileDurationsReporter implements Reporter {
  #started = 0;

  onTestRunStart(): void {
    this.#started = performance.now();
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const rows = modules.map((m) => {
      const d = m.diagnostic();
      const total = d.environmentSetupDuration + d.prepareDuration + d.collectDuration + d.setupDuration + d.duration;
      const tests = [...m.children.allTests()];
      const failed = tests.filter((t) => t.result().state === 'failed').length;
      return { file: m.relativeModuleId, total, tests: d.duration, count: tests.length, failed, state: m.state() };
    });
    if (rows.length === 0) return;
    rows.sort((a, b) => b.total - a.total);
    const s = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
    const width = Math.max(...rows.map((r) => r.file.length), 4);
    const lines = [
      '',
      ` Duration per test file, slowest first (wall time of the run: ${s(performance.now() - this.#started)})`,
      `   ${'file'.padEnd(width)}  ${'total'.padStart(8)}  ${'tests'.padStart(8)}  tests run`,
      ...rows.map((r) => `   ${r.file.padEnd(width)}  ${s(r.total).padStart(8)}  ${s(r.tests).padStart(8)}  ${r.count}${r.failed ? `, ${r.failed} failed` : ''}${r.state === 'skipped' ? ' (skipped)' : ''}`),
      `   ${'sum'.padEnd(width)}  ${s(rows.reduce((a, r) => a + r.total, 0)).padStart(8)}`,
      '',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
}
