import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { AccountRepository } from '../src/state/accounts.ts';
import { CredentialRepository } from '../src/state/credentials.ts';
import { PolicyRepository } from '../src/state/policies.ts';
import { RotationRepository } from '../src/state/rotations.ts';
import { ScheduleStore } from '../src/state/schedule.ts';
import { FleetDirectory } from '../src/service/fleet.ts';
import { RotationService } from '../src/service/rotations.ts';
import { Planner } from '../src/service/planner.ts';
import { redisCommandCount, redisCpuMs, round } from './lib.ts';

/**
 * The planner's tick at fleet sizes 10,000 and 100,000 with 1,000 credentials due (and 100 due at
 * 100,000): Redis commands (INFO commandstats, Lua's inner calls included) and CPU of the process
 * running the tick and of Redis, per tick. The tick starts real rotation records (the service's
 * Lua create, its indexes and event), with the queue stubbed: what is measured is the planner and
 * the state it writes, not BullMQ. The baseline, measured in the same run on the same data: a scan
 * of the whole fleet (the rebuild, which is what a planner without the due set would do per tick).
 * Goal: flat in the fleet size, linear in what is due.
 */

export interface TickCost {
  redisCommands: number;
  cpuMs: number;
  redisCpuMs: number;
  wallMs: number;
  started: number;
}

export interface PlannerSize {
  fleet: number;
  due: number;
  tick: TickCost;
  /** A tick with nothing due (the fixed cost of every tick). */
  quietTick: TickCost;
  /** The baseline: one pass over every credential (the rebuild). */
  fullScan: TickCost;
}

export interface PlannerBenchResult {
  sizes: PlannerSize[];
  /** From 10,000 to 100,000 credentials, 1,000 due: growth of the tick's Redis commands and CPU, %. */
  growth: { redisCommandsPct: number; cpuPct: number };
  /** At the larger fleet: the tick's Redis commands per due credential with 100 due and with 1,000 due. */
  perDue: { due100: number; due1000: number };
  /** The tick over the full scan at 100,000 credentials (Redis commands, CPU). */
  tickOverScan: { redisCommands: number; cpu: number };
}

const DAY = 86_400_000;
const hex = (n: number): string => n.toString(16).padStart(32, '0');

async function measure(redis: Redis, fn: () => Promise<number>): Promise<TickCost> {
  const [c0, r0, cpu0, t0] = [await redisCommandCount(redis), await redisCpuMs(redis), process.cpuUsage(), performance.now()];
  const started = await fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const [c1, r1] = [await redisCommandCount(redis), await redisCpuMs(redis)];
  // The two INFO calls of the measurement itself are not the tick's.
  return { redisCommands: c1 - c0 - 1, cpuMs: round((cpu.user + cpu.system) / 1000, 1), redisCpuMs: round(r1 - r0, 1), wallMs: round(wallMs, 1), started };
}

async function oneSize(url: string, fleet: number, due: number, log: (m: string) => void): Promise<PlannerSize> {
  const redis = new Redis(url);
  const prefix = `pb${fleet}x${due}`;
  const now = Date.now();
  // The fleet: `due` credentials last rotated 100 days ago (past their P90D deadline), the rest
  // spread over the last 80 days (slots ahead). One JSON string and one index entry each, as
  // CredentialRepository writes them.
  for (let i = 0; i < fleet; i += 5_000) {
    const pipe = redis.pipeline();
    for (let n = i; n < Math.min(fleet, i + 5_000); n++) {
      const id = `AC${hex(n + 1)}/default`;
      const r = n < due ? now - 100 * DAY : now - Math.floor((n / fleet) * 80 * DAY) - DAY;
      pipe.set(`${prefix}:cred:${id}`, JSON.stringify({ k: `SK${hex(n + 1)}`, r, f: r, l: [`seed-${n}`, r, 'succeeded'] }));
      pipe.zadd(`${prefix}:creds`, 0, id);
    }
    await pipe.exec();
  }
  const credentials = new CredentialRepository(redis, prefix);
  const policies = new PolicyRepository(redis, prefix);
  const repo = new RotationRepository(redis, prefix);
  const service = new RotationService(repo, { enqueue: async () => undefined, wake: async () => undefined, requeue: async () => undefined });
  const planner = new Planner(
    { store: new ScheduleStore(redis, prefix), fleet: new FleetDirectory({ credentials, accounts: new AccountRepository(redis, prefix), policies }), policies, service, log: pino({ level: 'silent' }) },
    // The budget is the due count, so one tick starts them all (its cost is per due credential).
    { tickMs: 60_000, maxStartsPerTick: due, leaseMs: 600_000, retryAfterFailureMs: 3_600_000 },
  );
  const fullScan = await measure(redis, () => planner.rebuildAll());
  log(`planner bench: ${fleet.toLocaleString('en')} credentials, ${due} due: full scan ${fullScan.wallMs} ms`);
  const tick = await measure(redis, async () => (await planner.tick()).started);
  if (tick.started !== due) throw new Error(`the tick started ${tick.started} of ${due} due`);
  const quietTick = await measure(redis, async () => (await planner.tick()).started);
  log(`planner bench: tick ${tick.wallMs} ms (${tick.redisCommands} Redis commands), quiet tick ${quietTick.wallMs} ms`);
  await redis.flushdb();
  redis.disconnect();
  return { fleet, due, tick, quietTick, fullScan };
}

export async function runPlannerBench(opts: { sizes?: number[]; log: (m: string) => void }): Promise<PlannerBenchResult> {
  const [small, large] = opts.sizes ?? [10_000, 100_000];
  const dir = await mkdtemp(join(tmpdir(), 'rotator-bench-planner-'));
  const server = await startEmbeddedRedis({ dir, persist: false });
  try {
    // Warm-up (JIT, connections, script cache): not reported. Twice: after one, the first measured
    // tick still cost about a third more CPU than the same tick measured later.
    for (let i = 0; i < 2; i++) await oneSize(server.url, 5_000, 1_000, () => undefined);
    const a = await oneSize(server.url, small!, 1_000, opts.log);
    const b = await oneSize(server.url, large!, 1_000, opts.log);
    const c = await oneSize(server.url, large!, 100, opts.log);
    const pct = (x: number, y: number): number => round((y / x - 1) * 100, 1);
    return {
      sizes: [a, b, c],
      growth: { redisCommandsPct: pct(a.tick.redisCommands, b.tick.redisCommands), cpuPct: pct(a.tick.cpuMs, b.tick.cpuMs) },
      perDue: { due100: round(c.tick.redisCommands / 100, 1), due1000: round(b.tick.redisCommands / 1000, 1) },
      tickOverScan: { redisCommands: round(b.tick.redisCommands / b.fullScan.redisCommands, 3), cpu: round(b.tick.cpuMs / b.fullScan.cpuMs, 3) },
    };
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The BENCHMARKS.md section (bench/run.ts writes it with the rest; `tsx bench/planner.ts` prints it alone). */
export function plannerMarkdown(p: PlannerBenchResult, host: string): string {
  const row = (s: PlannerSize, what: 'tick' | 'quietTick' | 'fullScan', label: string): string => {
    const t = s[what];
    return `| ${s.fleet.toLocaleString('en')} | ${s.due.toLocaleString('en')} | ${label} | ${t.redisCommands.toLocaleString('en')} | ${t.cpuMs} | ${t.redisCpuMs} | ${t.wallMs} |`;
  };
  return `## Planner tick

${host}. One tick of the planner in the benchmark process against its own Redis: it reads the due set,
decides again for what it read, claims each due credential and starts its rotation (a real rotation record; the BullMQ
queue stubbed). Redis commands from INFO commandstats (Lua's inner calls included); CPU of the process running the tick and of
Redis. The baseline, on the same data in the same run: one pass over the whole fleet (the rebuild), which is what a tick
without the due set would cost.

| credentials | due | what | Redis commands | CPU ms | Redis CPU ms | wall ms |
|---|---|---|---|---|---|---|
${p.sizes.map((s) => [row(s, 'tick', 'tick'), row(s, 'quietTick', 'tick, nothing due'), row(s, 'fullScan', 'baseline: full scan')].join('\n')).join('\n')}

From ${p.sizes[0]!.fleet.toLocaleString('en')} to ${p.sizes[1]!.fleet.toLocaleString('en')} credentials with 1,000 due, the tick's Redis commands changed by ${p.growth.redisCommandsPct}% and its CPU by ${p.growth.cpuPct}%: flat in the fleet
(the command count is exact; one tick's CPU is one sample, and moves by up to a third between runs on this host).
Redis commands per due credential: ${p.perDue.due100} with 100 due, ${p.perDue.due1000} with 1,000: linear in what is due.
At ${p.sizes[1]!.fleet.toLocaleString('en')} credentials the tick costs ${p.tickOverScan.redisCommands}× the full scan's Redis commands and ${p.tickOverScan.cpu}× its CPU.
`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const log = (m: string): void => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`);
  const r = await runPlannerBench({ log });
  const host = `Measured on ${new Date().toISOString().slice(0, 10)} by \`npx tsx bench/planner.ts\` (also part of \`npm run bench\`): ${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}, ${round(totalmem() / 2 ** 30, 1)} GiB, Node ${process.version}`;
  console.log(JSON.stringify(r, null, 2));
  console.log(plannerMarkdown(r, host));
}
