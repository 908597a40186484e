/**
 * CPU and wall time of the file store's writes and reads, through the real FileSecretStore:
 *
 *   npx tsx providers/file/bench.ts [cycles=3000] [paths=1000] [concurrency=100] [rounds=3]
 *
 * A cycle is what a rotation does to its entry — putPending, promotePending, dropPrevious (three
 * locked read-modify-writes) — over entries seeded with a current version, so every step writes.
 * Then `cycles × 3` lock-free reads. CPU is the whole process's (user + system, the libuv threads
 * included). Rounds repeat both in the same directory; compare medians of several runs. A write to
 * an existing entry allocates and frees no inode (store.ts): when each write replaced its file and
 * its lock, system CPU grew from run to run with the inodes ext4 had freed in the minutes before
 * (its allocator skips them), and swung 2–3× between runs of the same code.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Secret } from '../../src/domain/secret.ts';
import { FileSecretStore } from './store.ts';

// Same threadpool as `npm run worker`; it is sized when first used, so set it by re-running.
// eslint-disable-next-line no-restricted-properties -- a benchmark tool, not the service's configuration
const env = process.env;
if (!env.UV_THREADPOOL_SIZE) {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...process.execArgv, self, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...env, UV_THREADPOOL_SIZE: '16' } });
  process.exit(r.status ?? 1);
}

const [cycles = 3000, paths = 1000, concurrency = 100, rounds = 3] = process.argv.slice(2).map(Number);
const accountSid = 'AC' + '0'.repeat(32);
const cred = (sid: string) => ({ accountSid, apiKeySid: sid, apiKeySecret: new Secret(randomBytes(16).toString('hex')) });
const sid = () => 'SK' + randomBytes(16).toString('hex');

async function pool(n: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < n; i = next++) await work(i);
  }));
}

interface Figures {
  cpu: number;
  user: number;
  system: number;
  wall: number;
}
const results: Record<string, Figures[]> = {};

/** Per-operation µs of process CPU (user, system) and wall time. */
async function measure(label: string, n: number, unit: string, work: (i: number) => Promise<void>): Promise<void> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await pool(n, work);
  const wall = ((performance.now() - t0) * 1000) / n;
  const { user, system } = process.cpuUsage(cpu0);
  const f = { cpu: (user + system) / n, user: user / n, system: system / n, wall };
  (results[`${label} (µs per ${unit})`] ??= []).push(f);
  console.log(`${label}: ${n} ${unit}s, ${show(f)} µs per ${unit}`);
}

const show = (f: Figures): string => `CPU ${Math.round(f.cpu)} (user ${Math.round(f.user)}, system ${Math.round(f.system)}), wall ${Math.round(f.wall)}`;
/** The round of median CPU, so its figures add up. */
const median = (fs: Figures[]): Figures => fs.slice().sort((a, b) => a.cpu - b.cpu)[(fs.length - 1) >> 1]!;

const dir = await mkdtemp(join(tmpdir(), 'rotator-file-bench-'));
try {
  const store = new FileSecretStore({ dir: join(dir, 'secrets'), key: randomBytes(32) });
  const path = (i: number) => `twilio/AC${String(i % paths).padStart(32, '0')}`;
  // The current key of each path, and its rotation count, so concurrent cycles never share a path's state.
  const current = Array.from({ length: paths }, () => sid());
  await pool(paths, async (i) => {
    await store.putPending(path(i), 'seed', cred(current[i]!));
    await store.promotePending(path(i), 'seed', current[i]!);
  });
  for (let round = 0; round < rounds; round++) {
    await measure('write cycle (put+promote+drop)', cycles, 'cycle', async (i) => {
      const p = path(i);
      const old = current[i % paths]!;
      const next = sid();
      current[i % paths] = next;
      await store.putPending(p, `r${round}.${i}`, cred(next));
      await store.promotePending(p, `r${round}.${i}`, next);
      await store.dropPrevious(p, old);
    });
    await measure('read', cycles * 3, 'read', async (i) => {
      await store.read(path(i));
    });
  }
  console.log(`median of ${rounds} rounds:`);
  for (const [label, fs] of Object.entries(results)) console.log(`  ${label}: ${show(median(fs))}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
