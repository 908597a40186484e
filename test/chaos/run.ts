import { parseArgs } from 'node:util';
import { STORE_KINDS, type StoreKind } from '../helpers/stores.ts';
import { abortChaos, runChaos, type ChaosReport } from './chaos.ts';

/**
 * `npm run chaos -- [--rotations 200] [--workers 3] [--minutes 2] [--seed 1] [--store file|aws|vault|all]`
 *
 * One run per store (all three in turn by default), each printing its faults as they happen, every
 * invariant violation on a line of its own, and one summary line. Exit code 1 on any violation.
 */
// The AWS SDK in this process warns once about future Node versions: noise in a run's output.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name !== 'NodeVersionSupportWarning') console.warn(`${w.name}: ${w.message}`);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.log(`chaos: ${signal}: stopping the run's processes and restoring what it changed`);
    void abortChaos().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      rotations: { type: 'string', default: '200' },
      workers: { type: 'string', default: '3' },
      minutes: { type: 'string', default: '2' },
      seed: { type: 'string', default: '1' },
      store: { type: 'string', default: 'all' },
      quiet: { type: 'boolean', default: false },
    },
  });
  const num = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min} (got ${v})`);
    return n;
  };
  const stores: StoreKind[] = values.store === 'all' ? [...STORE_KINDS] : [values.store as StoreKind];
  if (!stores.every((s) => STORE_KINDS.includes(s))) throw new Error(`--store must be file, aws, vault or all (got ${values.store})`);
  const opts = { rotations: num('rotations', values.rotations, 1), workers: num('workers', values.workers, 1), minutes: num('minutes', values.minutes, 0), seed: num('seed', values.seed, 0) };
  const reports: ChaosReport[] = [];
  for (const store of stores) {
    console.log(`chaos: store=${store} seed=${opts.seed} starting (${opts.workers} workers, ≥ ${opts.rotations} rotations, ≥ ${opts.minutes} min)`);
    const report = await runChaos({ store, ...opts, log: values.quiet ? undefined : (line) => console.log(`  [${store}] ${line}`) });
    for (const v of report.violations) console.log(`violation: store=${store}: ${v}`);
    console.log(`  [${store}] details: ${JSON.stringify(report.details)}`);
    console.log(report.summary);
    reports.push(report);
  }
  return reports.some((r) => r.violations.length > 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`chaos run failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(2);
  },
);
