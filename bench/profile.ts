import { execSync } from 'node:child_process';
import { runFleet } from './fleet.ts';

execSync('node scripts/build.mjs --if-stale', { stdio: 'inherit' });

/**
 * `tsx bench/profile.ts [N] [workers]`: one fleet run with the worker(s) under --cpu-prof, profiles in
 * bench/profiles/ (open them in Chrome DevTools, or summarise with `tsx bench/profile-summary.ts FILE`).
 */
const n = Number(process.argv[2] ?? 3000);
const workers = Number(process.argv[3] ?? 1);
const r = await runFleet({
  n,
  workers,
  latencyMs: 50,
  twilioConcurrency: 100,
  workerConcurrency: 200,
  log: (m) => console.error(m),
  workerNodeArgs: ['--cpu-prof', '--cpu-prof-dir=bench/profiles'],
});
console.log(JSON.stringify(r, null, 2));
