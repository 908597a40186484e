/**
 * What waiting for a replica costs an API change (issue 18, REDIS_WAIT_REPLICAS): a primary and a
 * replica under three Sentinels (test/helpers/redis-topologies.ts), Rotator connected through the
 * Sentinels as in production; each "change" is one audit append (a Lua script writing the stream
 * and the chain head, what every API change writes), then — in the measured variant — the
 * `WAIT 1 500` the API sends before answering. Sequential (one client's latency) and 50 at once
 * (throughput); both variants in the same run, alternated, so the ratio does not depend on the
 * host's speed or load.
 *
 *   npx tsx bench/redis-wait.ts [changes=2000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestSentinelSet } from '../test/helpers/redis-topologies.ts';
import { connectRedis } from '../src/state/redis.ts';
import { replicaWaiter } from '../src/state/replication.ts';
import { AuditLog } from '../src/state/audit.ts';
import { loadConfig } from '../src/config.ts';
import { round } from './lib.ts';

const n = Number(process.argv[2] ?? 2000);
const dir = await mkdtemp(join(tmpdir(), 'rotator-bench-wait-'));
const set = await TestSentinelSet.start(dir);
const cfg = loadConfig({ ...set.env }, { requireTwilio: false });
const redis = connectRedis(cfg.redis!, 'shared');
const audit = new AuditLog(redis, 'bench');
const warn: string[] = [];
const replicate = replicaWaiter(redis, { ...cfg.redisWait, log: { warn: (m: string) => warn.push(m) } as never });
const change = async (wait: boolean): Promise<void> => {
  await audit.append({ kind: 'api', actor: 'bench', role: 'operator', action: 'rotation.start', status: 202 });
  if (wait) await replicate();
};

async function run(wait: boolean, concurrency: number): Promise<{ perSecond: number; meanMs: number }> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) await change(wait);
    }),
  );
  const ms = performance.now() - t0;
  return { perSecond: round((n / ms) * 1000, 0), meanMs: round((ms / n) * concurrency, 3) };
}

const load = loadavg()[0]!;
await run(false, 1); // warm-up: script cache, JIT
const rows: string[] = [];
for (const concurrency of [1, 50]) {
  const without = [await run(false, concurrency), await run(false, concurrency)];
  const withWait = [await run(true, concurrency), await run(true, concurrency)];
  const best = (xs: Array<{ perSecond: number; meanMs: number }>) => xs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const a = best(without);
  const b = best(withWait);
  rows.push(`| ${concurrency} | ${a.perSecond}/s, ${a.meanMs} ms | ${b.perSecond}/s, ${b.meanMs} ms | ${round(b.meanMs / a.meanMs, 2)} |`);
}
console.log(`WAIT 1 ${cfg.redisWait.timeoutMs} after each API change, ${n} changes per variant, primary + replica on this host (load ${round(load, 1)} at start${warn.length ? `; ${warn.length} WAIT(s) fell short` : ''}):\n`);
console.log('| changes at once | without WAIT | with WAIT | latency ratio |');
console.log('|---|---|---|---|');
for (const r of rows) console.log(r);
redis.disconnect();
await set.stop();
await rm(dir, { recursive: true, force: true });
