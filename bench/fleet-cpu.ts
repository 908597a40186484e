import { loadavg } from 'node:os';
import { runFleet } from './fleet.ts';
import { runBaseline } from './baseline.ts';
import { round } from './lib.ts';

/**
 * `tsx bench/fleet-cpu.ts [N] [loopN] [--prof]`: the orchestration's CPU alone (issue 17 item 7), quicker
 * than `npm run bench`: one fleet run of the compiled worker (N rotations after its warm-up) and the
 * hand-written loop (loopN rotations) in the same run, the worker's CPU per rotation and its ratio to
 * the loop's. `--prof` runs the worker under --cpu-prof (profiles in bench/profiles/; summarise with
 * `tsx bench/profile-summary.ts FILE`), which slows it: the ratio is then not comparable; `--monitor`
 * counts the commands the worker sends (Redis MONITOR, which slows Redis).
 */
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const n = Number(args[0] ?? 3000);
const loopN = Number(args[1] ?? 300);
const prof = process.argv.includes('--prof');
const monitor = process.argv.includes('--monitor');
const log = (m: string): void => console.error(`[fleet-cpu ${new Date().toISOString().slice(11, 19)}] ${m}`);
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(', ');
const loadBefore = load();
const fleet = await runFleet({ n, workers: 1, latencyMs: 50, twilioConcurrency: 100, workerConcurrency: 200, log, monitor, ...(prof ? { workerNodeArgs: ['--cpu-prof', '--cpu-prof-dir=bench/profiles'] } : {}) });
const loop = await runBaseline({ n: loopN, latencyMs: 50, twilioConcurrency: 100, log });
console.log(
  JSON.stringify(
    {
      n,
      loopN,
      load: { before: loadBefore, after: load() },
      workerCpuMsPerRotation: fleet.cpuMsPerRotation,
      workerSystemShare: fleet.workerSystemShare,
      workerThreads: fleet.workerThreadCpuMsPerRotation,
      loopCpuMsPerRotation: loop.cpuMsPerRotation,
      ratioToLoop: round(fleet.cpuMsPerRotation / loop.cpuMsPerRotation, 3),
      fleetRatio: fleet.ratio,
      rotationsPerSecond: fleet.rotationsPerSecond,
      redisCommandsPerRotation: fleet.redisCommandsPerRotation,
      redisCommandMix: fleet.redisCommandMix,
      succeeded: fleet.succeeded,
      failed: fleet.failed,
    },
    null,
    2,
  ),
);
