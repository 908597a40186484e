import { execSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { runFleet, type FleetResult } from './fleet.ts';
import { runBaseline } from './baseline.ts';
import { round } from './lib.ts';

/**
 * `tsx bench/fleet-cpu.ts [N] [loopN] [--prof] [--monitor] [--against DIR] [--rounds K]`: the
 * orchestration's CPU alone (issue 17 item 7), quicker than `npm run bench`. One fleet run of the
 * compiled worker (N rotations after its warm-up) and the hand-written loop (loopN rotations) in
 * the same run: the worker's CPU per rotation and its ratio to the loop's.
 *
 * `--against DIR`: also run the worker of another build (DIR/dist/src/main.js, e.g. an older
 * commit's `git archive` built with `node scripts/build.mjs`), alternating with this one for K
 * rounds (default 1), so both see the same host load. `--prof` runs the worker under --cpu-prof
 * (profiles in bench/profiles/; `tsx bench/profile-summary.ts FILE`), which slows it: the ratio is
 * then not comparable; `--monitor` counts the commands the worker sends (Redis MONITOR, which slows Redis).
 */
// The compiled worker (dist/), as production runs it: build it when a source is newer.
execSync('node scripts/build.mjs --if-stale', { stdio: 'inherit' });
const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const positional = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--against') && !argv[i - 1]?.startsWith('--rounds'));
const n = Number(positional[0] ?? 3000);
const loopN = Number(positional[1] ?? 300);
const prof = argv.includes('--prof');
const monitor = argv.includes('--monitor');
const against = flag('--against');
const rounds = Number(flag('--rounds') ?? 1);
const log = (m: string): void => console.error(`[fleet-cpu ${new Date().toISOString().slice(11, 19)}] ${m}`);
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(', ');

const fleet = (entry?: string): Promise<FleetResult> =>
  runFleet({ n, workers: 1, latencyMs: 50, twilioConcurrency: 100, workerConcurrency: 200, log, monitor, ...(entry ? { workerEntry: entry } : {}), ...(prof ? { workerNodeArgs: ['--cpu-prof', '--cpu-prof-dir=bench/profiles'] } : {}) });
const summary = (f: FleetResult, loopMs: number) => ({
  workerCpuMsPerRotation: f.cpuMsPerRotation,
  ratioToLoop: round(f.cpuMsPerRotation / loopMs, 3),
  workerThreads: f.workerThreadCpuMsPerRotation,
  workerSystemShare: f.workerSystemShare,
  fleetRatio: f.ratio,
  rotationsPerSecond: f.rotationsPerSecond,
  redisCommandsPerRotation: f.redisCommandsPerRotation,
  succeeded: f.succeeded,
  failed: f.failed,
});

const runs: Array<{ round: number; load: string; loopCpuMsPerRotation: number; current: ReturnType<typeof summary>; against?: ReturnType<typeof summary> }> = [];
for (let r = 1; r <= rounds; r++) {
  const loadAtStart = load();
  const other = against ? await fleet(join(against, 'dist/src/main.js')) : undefined;
  const current = await fleet();
  const loop = await runBaseline({ n: loopN, latencyMs: 50, twilioConcurrency: 100, log });
  runs.push({ round: r, load: `${loadAtStart} → ${load()}`, loopCpuMsPerRotation: loop.cpuMsPerRotation, current: summary(current, loop.cpuMsPerRotation), ...(other ? { against: summary(other, loop.cpuMsPerRotation) } : {}) });
  log(JSON.stringify(runs.at(-1)));
}
console.log(JSON.stringify({ n, loopN, against, runs }, null, 2));
