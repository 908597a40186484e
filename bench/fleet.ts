import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { openFileStore } from '../providers/file/index.ts';
import { secretPath } from '../providers/secret-store.ts';
import { Secret } from '../src/domain/secret.ts';
import { RotationRepository } from '../src/state/rotations.ts';
import { RotationService } from '../src/service/rotations.ts';
import { createRotationQueue, enqueueRotation } from '../workers/queue.ts';
import { cpuMs, cpuSplitMs, threadCpuMs, peakRssMiB, pool, redisCommandCount, redisCpuMs, redisUsedMemory, round, spawnTs, type Proc } from './lib.ts';

export interface EmulatorInfo {
  url: string;
  accountSid: string;
  authToken: string;
  subaccounts: Array<{ sid: string }>;
}

export interface FleetOptions {
  n: number;
  workers: number;
  latencyMs: number;
  twilioConcurrency: number;
  workerConcurrency: number;
  log?: (msg: string) => void;
  /** Rotations run (and not measured) before the measured fleet; default 1,000. */
  warmup?: number;
  /** The worker's entry point: default dist/src/main.js; another build's to compare two versions in one run. */
  workerEntry?: string;
  /** Count the commands the clients send (Redis MONITOR, which slows Redis: for finding where commands come from, not for figures). */
  monitor?: boolean;
  /** Node flags for the worker processes, e.g. ['--cpu-prof', '--cpu-prof-dir=bench/profiles']. */
  workerNodeArgs?: string[];
}

export interface FleetResult {
  n: number;
  workers: number;
  wallSeconds: number;
  twilioCalls: number;
  twilioCallsPerRotation: number;
  boundSeconds: number;
  ratio: number;
  rotationsPerSecond: number;
  seen429: number;
  succeeded: number;
  failed: number;
  cpuMsPerRotation: number;
  /** The share of the workers' CPU spent in the kernel (system time): file-system work, mostly. */
  workerSystemShare: number;
  /** The workers' CPU per rotation by thread kind (lib.ts threadCpuMs): main thread, libuv's pool, V8's helpers. */
  workerThreadCpuMsPerRotation: Record<string, number>;
  redisCommandsPerRotation: number;
  /** Per rotation, by command (INFO commandstats: a script's inner calls counted too), the most frequent first. */
  redisCommandMix: Record<string, number>;
  recordBytes: number;
  retainedBytesPerRotation: number;
  peakRssMiB: number;
  machineCpuShare: number;
  emulatorCpuMsPerCall: number;
  /**
   * Twilio's side of the bound: the mean time a call held one of the emulator's C slots (arrival to
   * close: L plus the emulator's own delay), and the share of C × wall its slots were held. wall /
   * bound = (ms per call / L) / occupancy.
   */
  twilioMsPerCall: number;
  twilioOccupancy: number;
  redisCpuMsPerRotation: number;
  /** Mean time per rotation in each step (from the records' history), and from creation to finish. */
  stepMs: Record<string, number>;
  /** Redis SLOWLOG over the measured run: commands slower than 1 ms, and the slowest kinds. */
  slowlog: { over1ms: number; maxMs: number; top: Array<{ command: string; count: number; maxMs: number }> };
}

/** Twilio emulator + private Redis + file store, seeded with N subaccounts whose keys are current in the store. */
export async function prepareFleet(n: number, latencyMs: number, twilioConcurrency: number) {
  const dir = await mkdtemp(join(tmpdir(), 'rotator-bench-'));
  const redis = await startEmbeddedRedis({ dir: join(dir, 'redis'), persist: true });
  const emulator = await spawnTs('test/emulators/twilio/main.ts', ['--port', '0', '--subaccounts', String(n), '--latency', String(latencyMs), '--concurrency', String(twilioConcurrency)], {}, (l) => l.startsWith('{'));
  const emu = JSON.parse(emulator.firstLine) as EmulatorInfo;
  const fileKey = randomBytes(32).toString('base64');
  const storeDir = join(dir, 'secrets');
  const store = await openFileStore({ dir: storeDir, keyBase64: fileKey, keyFile: join(dir, 'unused.key') });
  const template = 'twilio/{accountSid}';
  await pool(emu.subaccounts, 32, async (sub) => {
    const res = await fetch(`${emu.url}/__emulator/keys`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ accountSid: sub.sid, friendlyName: 'app key' }) });
    const key = (await res.json()) as { sid: string; secret: string };
    const seedId = crypto.randomUUID();
    const path = secretPath(template, sub.sid);
    await store.putPending(path, seedId, { accountSid: sub.sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) });
    await store.promotePending(path, seedId, key.sid);
  });
  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    TWILIO_ACCOUNT_SID: emu.accountSid,
    TWILIO_AUTH_TOKEN: emu.authToken,
    TWILIO_BASE_URL: emu.url,
    SECRET_STORE: 'file',
    FILE_STORE_PATH: storeDir,
    FILE_STORE_KEY: fileKey,
    DATA_DIR: join(dir, 'data'),
    DRAIN_SECONDS: '0',
    LOG_LEVEL: 'warn',
  };
  return {
    dir,
    redis,
    emulator,
    emu,
    store,
    env,
    async close() {
      await emulator.stop();
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function runFleet(opts: FleetOptions): Promise<FleetResult> {
  const log = opts.log ?? (() => undefined);
  log(`fleet N=${opts.n} workers=${opts.workers}: seeding`);
  // A warm-up batch first (not measured): JIT compilation and connection set-up are a fixed cost,
  // and counting them would make the per-rotation figures of a small fleet look worse than they are.
  // 200 was too few: V8 was still optimising the hot paths, and a 1,000-rotation run measured
  // 2.9–3.1 ms of CPU per rotation after it against 2.3 ms after 1,000 (the 10,000 run: 2.4 ms).
  const warmup = opts.warmup ?? 1000;
  const fleet = await prepareFleet(opts.n + warmup, opts.latencyMs, opts.twilioConcurrency);
  const r = new Redis(fleet.redis.url);
  const workers: Proc[] = [];
  try {
    // As `npm run worker` starts it (UV_THREADPOOL_SIZE=16: see package.json and the README).
    const env = { ...fleet.env, UV_THREADPOOL_SIZE: '16', TWILIO_MAX_CONCURRENCY: String(opts.twilioConcurrency), WORKER_CONCURRENCY: String(opts.workerConcurrency), LOG_LEVEL: 'info' };
    // The compiled build (dist/, `npm run build` first), as `npm run worker` runs it in production.
    for (let i = 0; i < opts.workers; i++) workers.push(await spawnTs(opts.workerEntry ?? 'dist/src/main.js', ['worker'], env, (l) => l.includes('rotator started'), opts.workerNodeArgs ?? (process.env.BENCH_WORKER_NODE_ARGS ? process.env.BENCH_WORKER_NODE_ARGS.split(' ') : undefined)));
    const repo = new RotationRepository(r, 'rotator');
    const queueConn = new Redis(fleet.redis.url, { maxRetriesPerRequest: null });
    const queue = createRotationQueue(queueConn, 'rotator');
    const service = new RotationService(repo, { enqueue: (id) => enqueueRotation(queue, id), wake: async () => undefined, requeue: (id) => enqueueRotation(queue, id) });

    const warmSubs = fleet.emu.subaccounts.slice(0, warmup);
    const subs = fleet.emu.subaccounts.slice(warmup);
    await pool(warmSubs, 64, async (sub) => {
      await service.start({ accountSid: sub.sid, trigger: 'schedule', reason: 'warm-up' });
    });
    while ((await r.zcard('rotator:status:succeeded')) + (await r.zcard('rotator:status:failed')) < warmup) await new Promise((res) => setTimeout(res, 20));
    const warmFailed = await r.zcard('rotator:status:failed');
    await fetch(`${fleet.emu.url}/__emulator/stats/reset`, { method: 'POST' });
    await r.config('RESETSTAT');
    // Redis's own view of what is slow: every command over 1 ms during the measured run.
    await r.config('SET', 'slowlog-log-slower-than', '1000');
    await r.config('SET', 'slowlog-max-len', '10000');
    await r.slowlog('RESET');
    const memBefore = await redisUsedMemory(r);
    const cpuBefore = workers.map((w) => cpuSplitMs(w.child.pid!));
    const threadsBefore = workers.map((w) => threadCpuMs(w.child.pid!));
    const emuCpuBefore = cpuMs(fleet.emulator.child.pid!);
    const redisCpuBefore = await redisCpuMs(r);
    log(`fleet N=${opts.n} workers=${opts.workers}: rotating`);

    const monitor = opts.monitor ? monitorCommands(fleet.redis.url) : undefined;
    const t0 = performance.now();
    await pool(subs, 64, async (sub) => {
      await service.start({ accountSid: sub.sid, trigger: 'schedule', reason: 'bench' });
    });
    log(`fleet N=${opts.n} workers=${opts.workers}: all started after ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    for (;;) {
      const [ok, failed] = await Promise.all([r.zcard('rotator:status:succeeded'), r.zcard('rotator:status:failed')]);
      if (ok + failed >= opts.n + warmup) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    if (monitor) log(`commands per rotation the clients sent (MONITOR; not those Lua ran): ${JSON.stringify(await monitor.stop(opts.n))}`);

    const cpuAfter = workers.map((w) => cpuSplitMs(w.child.pid!));
    const threadsAfter = workers.map((w) => threadCpuMs(w.child.pid!));
    const threadMs: Record<string, number> = {};
    threadsAfter.forEach((after, i) => {
      for (const [name, ms] of Object.entries(after)) threadMs[name] = (threadMs[name] ?? 0) + ms - (threadsBefore[i]![name] ?? 0);
    });
    const systemCpu = cpuAfter.reduce((sum, c, i) => sum + c.system - cpuBefore[i]!.system, 0);
    const cpu = systemCpu + cpuAfter.reduce((sum, c, i) => sum + c.user - cpuBefore[i]!.user, 0);
    const emulatorCpuMs = cpuMs(fleet.emulator.child.pid!) - emuCpuBefore;
    const redisCpu = (await redisCpuMs(r)) - redisCpuBefore;
    const rss = Math.max(...workers.map((w) => peakRssMiB(w.child.pid!)));
    const commands = await redisCommandCount(r);
    const commandMix = await redisCommandMix(r, opts.n);
    const slowlog = await slowCommands(r);
    const stats = (await (await fetch(`${fleet.emu.url}/__emulator/stats`)).json()) as { requests: number; rejected429: number; byStatus: Record<string, number>; busyMs: number };
    const [allSucceeded, allFailed] = await Promise.all([r.zcard('rotator:status:succeeded'), r.zcard('rotator:status:failed')]);
    const failed = allFailed - warmFailed;
    const succeeded = allSucceeded - (warmup - warmFailed);

    // Memory a finished rotation keeps: its record plus its entries in the indexes.
    const ids = await r.zrange('rotator:rots', '0', '199');
    const keyBytes = (await Promise.all(ids.map((id) => r.memory('USAGE', `rotator:rot:${id}`, 'SAMPLES', '0')))).reduce((a: number, b) => a + Number(b ?? 0), 0) / ids.length;
    // Each record also sits in three sorted sets (all, per account, per status): their share.
    const indexBytes = await indexBytesPerRecord(r);
    const stepMs = await stepTimes(r, repo, 500);
    const recordBytes = keyBytes + indexBytes;
    log(`record key ${Math.round(keyBytes)} B + index share ${Math.round(indexBytes)} B`);
    await queue.close();
    queueConn.disconnect();
    const memAfter = await redisUsedMemory(r);

    const boundSeconds = (stats.requests * opts.latencyMs) / 1000 / opts.twilioConcurrency;
    return {
      n: opts.n,
      workers: opts.workers,
      wallSeconds: round(wallSeconds, 2),
      twilioCalls: stats.requests,
      twilioCallsPerRotation: round(stats.requests / opts.n, 2),
      boundSeconds: round(boundSeconds, 2),
      ratio: round(wallSeconds / boundSeconds, 3),
      rotationsPerSecond: round(opts.n / wallSeconds, 1),
      seen429: stats.rejected429,
      succeeded,
      failed,
      cpuMsPerRotation: round(cpu / opts.n, 3),
      workerSystemShare: round(systemCpu / Math.max(1, cpu), 2),
      workerThreadCpuMsPerRotation: Object.fromEntries(Object.entries(threadMs).map(([k, v]) => [k, round(v / opts.n, 3)])),
      redisCommandsPerRotation: round(commands / opts.n, 1),
      redisCommandMix: commandMix,
      recordBytes: Math.round(recordBytes),
      retainedBytesPerRotation: Math.round((memAfter - memBefore) / opts.n),
      peakRssMiB: round(rss, 1),
      // Everything shares this machine's cores: what the emulator and Redis used alongside.
      machineCpuShare: round((cpu + emulatorCpuMs + redisCpu) / (wallSeconds * 1000), 2),
      emulatorCpuMsPerCall: round(emulatorCpuMs / stats.requests, 3),
      twilioMsPerCall: round(stats.busyMs / stats.requests, 1),
      twilioOccupancy: round(stats.busyMs / (opts.twilioConcurrency * wallSeconds * 1000), 3),
      redisCpuMsPerRotation: round(redisCpu / opts.n, 3),
      stepMs,
      slowlog,
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    r.disconnect();
    await fleet.close();
  }
}

/** MONITOR: commands per rotation as the clients sent them (a script's own calls left out), by command (EVALSHA by script). */
function monitorCommands(url: string): { stop(n: number): Promise<Record<string, number>> } {
  // The embedded Redis listens on a unix socket (`<path>?password=…`) or TCP (a redis:// URL).
  const sock = /^([^?]+)\?password=(.*)$/.exec(url);
  const target = sock && !url.startsWith('redis') ? ['-s', sock[1]!, '-a', decodeURIComponent(sock[2]!), '--no-auth-warning'] : ['-u', url];
  const m = spawn('redis-cli', [...target, 'monitor'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const counts = new Map<string, number>();
  // `1796679758.847647 [0 127.0.0.1:5000] "EVALSHA" "sha" "2" "key"…`; a script's own calls say [0 lua].
  createInterface({ input: m.stdout }).on('line', (line) => {
    const at = line.indexOf('] ');
    if (at < 0 || line.slice(0, at).endsWith(' lua')) return;
    const args = [...line.slice(at + 2).matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!);
    const cmd = String(args[0]).toLowerCase();
    const key = cmd === 'evalsha' ? `evalsha ${String(args[1]).slice(0, 8)} ${String(args[3] ?? '').replace(/[:][^:]*$/, ':…')}` : cmd;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  });
  return {
    async stop(n) {
      m.kill();
      return Object.fromEntries([...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, v]) => [k, round(v / n, 2)]));
    },
  };
}

async function redisCommandMix(r: Redis, n: number): Promise<Record<string, number>> {
  const info = await r.info('commandstats');
  const mix = [...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1]!, round(Number(m[2]) / n, 2)] as const);
  return Object.fromEntries(mix.sort((a, b) => b[1] - a[1]).slice(0, 25));
}

async function slowCommands(r: Redis): Promise<FleetResult['slowlog']> {
  const entries = (await r.slowlog('GET', 10000)) as Array<[number, number, number, string[]]>;
  const byKind = new Map<string, { count: number; maxMs: number }>();
  let maxMs = 0;
  for (const [, , micros, args] of entries) {
    // EVALSHA is named by its script's first key's kind, never by arguments (they may be anything).
    const cmd = String(args[0] ?? '').toUpperCase();
    const key = cmd === 'EVALSHA' || cmd === 'EVAL' ? `${cmd} ${String(args[3] ?? '').replace(/[:][^:]*$/, ':…')}` : cmd;
    const k = byKind.get(key) ?? { count: 0, maxMs: 0 };
    k.count++;
    k.maxMs = Math.max(k.maxMs, micros / 1000);
    byKind.set(key, k);
    maxMs = Math.max(maxMs, micros / 1000);
  }
  const top = [...byKind.entries()].sort((a, b) => b[1].count - a[1].count).slice(0, 5).map(([command, v]) => ({ command, count: v.count, maxMs: round(v.maxMs, 1) }));
  return { over1ms: entries.length, maxMs: round(maxMs, 1), top };
}

/** Where a rotation's time goes: mean ms per step (startedAt → completed), the wait before the first, and the whole. */
async function stepTimes(r: Redis, repo: RotationRepository, sample: number): Promise<Record<string, number>> {
  const ids = await r.zrange('rotator:rots', String(-sample), '-1');
  const sums: Record<string, number> = {};
  const recs = (await repo.getMany(ids)).filter((x) => x.status === 'succeeded');
  for (const rec of recs) {
    const add = (k: string, ms: number): void => void (sums[k] = (sums[k] ?? 0) + ms);
    const created = Date.parse(rec.createdAt);
    let prev = created;
    for (const h of rec.history) {
      if (h.status !== 'completed' || !h.startedAt) continue;
      const start = Date.parse(h.startedAt);
      add(prev === created ? 'queued' : 'between steps', start - prev);
      add(h.step, Date.parse(h.at) - start);
      prev = Date.parse(h.at);
    }
    add('total', Date.parse(rec.finishedAt ?? rec.updatedAt) - created);
  }
  return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, round(v / Math.max(1, recs.length), 1)]));
}

/** Bytes each rotation costs in the sorted-set indexes: total MEMORY USAGE of the indexes / members. */
async function indexBytesPerRecord(r: Redis): Promise<number> {
  let bytes = 0;
  let cursor = '0';
  const members = await r.zcard('rotator:rots');
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', 'rotator:*rots', 'COUNT', 1000);
    cursor = next;
    for (const k of keys) bytes += Number((await r.memory('USAGE', k, 'SAMPLES', '0')) ?? 0);
  } while (cursor !== '0');
  for (const status of ['succeeded', 'failed']) bytes += Number((await r.memory('USAGE', `rotator:status:${status}`, 'SAMPLES', '0')) ?? 0);
  return members ? bytes / members : 0;
}
