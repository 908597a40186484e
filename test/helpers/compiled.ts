import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Vitest's global setup: compile dist/ when it is missing or older than a source file (the same
 * `scripts/build.mjs --if-stale` that `npm start` runs; a no-op in CI, whose release build made
 * it), then tell the test workers to start Rotator's processes from it (ROTATOR_TEST_DIST).
 *
 * Why: the suite starts a few hundred worker and API processes (crash points, chaos kills, rolling
 * restarts). Through tsx each one costs about twice the CPU of the compiled code (measured: a
 * worker 1.9 s against 1.0 s, the API 4.0 s against 2.4 s), and two cores run the whole suite.
 * The compiled code is also what production runs. Where the build fails, the processes run the
 * sources through tsx as before, and the run says so.
 */
export default function setup(): void {
  if (process.env.ROTATOR_TEST_TSX === '1') return;
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs'), '--if-stale'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
  const entry = join(root, 'dist', 'src', 'main.js');
  if (r.status === 0 && existsSync(entry)) {
    process.env.ROTATOR_TEST_DIST = entry;
    return;
  }
  console.error(`dist/ could not be built (${r.stderr?.trim() || `exit ${r.status}`}): Rotator's processes run through tsx in this run`);
}
