import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import autocannon from 'autocannon';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { RotationRepository } from '../src/state/rotations.ts';
import { AccountRepository } from '../src/state/accounts.ts';
import { newRotationId, withHistory, type RotationRecord } from '../src/domain/rotation.ts';
import { mintToken } from '../src/api/tokens.ts';
import { cpuMs, pool, redisCpuMs, redisUsedMemory, round, spawnTs } from './lib.ts';

export interface RouteLoad {
  route: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p90Ms: number;
  maxMs: number;
  non2xx: number;
  /** Alongside: CPU per request of the API process and of Redis (µs). */
  apiCpuUsPerRequest: number;
  redisCpuUsPerRequest: number;
  /**
   * The same route at a fixed offered load (FIXED_RATE requests/s across the connections), well
   * under saturation: latency there depends far less on the host's speed than at saturation.
   */
  atFixedRate: { rate: number; p50Ms: number; p99Ms: number; maxMs: number; non2xx: number };
}

/** The offered load of the fixed-rate runs (requests/s). */
export const FIXED_RATE = 1000;

/** The API's CPU and Redis's while `run` runs, per request answered. */
async function cpuPerRequest<T extends { requests: { total: number } }>(pid: number, redis: Redis, run: () => Promise<T>): Promise<T & { apiUs: number; redisUs: number }> {
  const [api0, redis0] = [cpuMs(pid), await redisCpuMs(redis)];
  const r = await run();
  const n = Math.max(1, r.requests.total);
  return { ...r, apiUs: round(((cpuMs(pid) - api0) * 1000) / n, 0), redisUs: round((((await redisCpuMs(redis)) - redis0) * 1000) / n, 0) };
}

const hex = (n: number, len = 32): string => n.toString(16).padStart(len, '0');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** A finished rotation record as the worker leaves it (five history entries). */
function finishedRecord(i: number, createdMs: number): RotationRecord {
  const at = (d: number): string => new Date(createdMs + d).toISOString();
  let rec: RotationRecord = {
    id: newRotationId(createdMs),
    kind: 'api-key', credential: 'default',
    accountSid: `AC${hex(i)}`,
    status: 'pending',
    step: 'create-secondary',
    reason: 'scheduled',
    dryRun: false,
    trigger: 'schedule',
    attempts: 0,
    createdAt: at(0),
    updatedAt: at(0),
    rev: 0,
    history: [{ step: 'create-secondary', status: 'created', at: at(0), detail: 'requested: scheduled' }],
  };
  for (const [j, step, detail] of [
    [1, 'create-secondary', 'created; verified'],
    [2, 'operationalize', 'new key current; old key valid through the drain'],
    [3, 'promote', 'new key verified, primary'],
    [4, 'delete-old', 'old key deleted'],
  ] as const) {
    rec = { ...rec, history: withHistory(rec.history, { step, status: 'completed', detail, startedAt: at(j * 10), at: at(j * 10 + 5), by: 'bench:1' }) };
  }
  return { ...rec, status: 'succeeded', step: 'done', attempts: 1, oldKeySid: `SK${hex(i)}`, newKeySid: `SK${hex(i + 1_000_000)}`, operationalizedAt: at(25), promoteAfter: at(25), finishedAt: at(45), updatedAt: at(45) };
}

/**
 * The read API under load: N finished rotation records and N accounts in Redis, the API as its own
 * process, autocannon from this one.
 */
export async function runApiLoad(opts: { records: number; accounts: number; connections: number; seconds: number; log?: (m: string) => void; nodeArgs?: string[] }): Promise<{ routes: RouteLoad[]; redisBytesPerRecord: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'rotator-apibench-'));
  const server = await startEmbeddedRedis({ dir, persist: false });
  const redis = new Redis(server.url);
  try {
    opts.log?.(`api: loading ${opts.records} rotations and ${opts.accounts} accounts`);
    const rotations = new RotationRepository(redis, 'rotator');
    const accounts = new AccountRepository(redis, 'rotator');
    await accounts.upsertMany(Array.from({ length: opts.accounts }, (_, i) => ({ accountSid: `AC${hex(i)}`, friendlyName: `Customer ${i}`, status: 'active' })));
    const memBefore = await redisUsedMemory(redis);
    const base = Date.now() - opts.records * 1000;
    let sampleId = '';
    await pool(
      Array.from({ length: opts.records }, (_, i) => i),
      32,
      async (i) => {
        const rec = finishedRecord(i, base + i * 1000);
        await rotations.create({ ...rec, status: 'pending', step: 'create-secondary' });
        await rotations.update(rec.id, (r) => ({ ...rec, rev: r.rev }));
        if (i < opts.accounts) await accounts.recordRotation(rec.accountSid, rec.newKeySid!, rec.finishedAt!, rec.id);
        if (i === Math.floor(opts.records / 2)) sampleId = rec.id;
      },
    );
    // Memory of the records and their index entries (the event stream is capped separately).
    await redis.del('rotator:events');
    const redisBytesPerRecord = Math.round((await redisUsedMemory(redis)) - memBefore) / opts.records;

    const viewer = mintToken('bench', 'viewer');
    const port = await freePort();
    // Request logging off (warn): the figures are the API's, not the log pipe's.
    const api = await spawnTs(
      'src/main.ts',
      ['api'],
      { REDIS_URL: server.url, API_TOKENS: viewer.entry, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '100000000' },
      () => false,
      opts.nodeArgs ?? [],
      async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
    );
    try {
      const routes: RouteLoad[] = [];
      for (const route of ['/v1/rotations?limit=50', '/v1/accounts?limit=100', '/v1/rotations/{id}']) {
        opts.log?.(`api: ${route}`);
        const r = await cpuPerRequest(api.child.pid!, redis, () => autocannon({ url: `http://127.0.0.1:${port}${route.replace('{id}', sampleId)}`, connections: opts.connections, duration: opts.seconds, headers: { authorization: `Bearer ${viewer.token}` } }));
        const fixed = await autocannon({ url: `http://127.0.0.1:${port}${route.replace('{id}', sampleId)}`, connections: opts.connections, duration: opts.seconds, overallRate: FIXED_RATE, headers: { authorization: `Bearer ${viewer.token}` } });
        routes.push({
          route,
          requestsPerSecond: round(r.requests.average, 0),
          p50Ms: r.latency.p50,
          p99Ms: r.latency.p99,
          p90Ms: r.latency.p90,
          maxMs: r.latency.max,
          non2xx: r.non2xx,
          apiCpuUsPerRequest: r.apiUs,
          redisCpuUsPerRequest: r.redisUs,
          atFixedRate: { rate: FIXED_RATE, p50Ms: fixed.latency.p50, p99Ms: fixed.latency.p99, maxMs: fixed.latency.max, non2xx: fixed.non2xx },
        });
      }
      return { routes, redisBytesPerRecord: round(redisBytesPerRecord, 0) };
    } finally {
      await api.stop();
    }
  } finally {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
