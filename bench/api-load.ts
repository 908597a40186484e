import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import autocannon from 'autocannon';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { RotationRepository } from '../src/state/rotations.ts';
import { AccountRepository } from '../src/state/accounts.ts';
import { CredentialRepository } from '../src/state/credentials.ts';
import { ComplianceFacts } from '../src/state/compliance.ts';
import { PolicyRepository } from '../src/state/policies.ts';
import { complianceRowsOn } from '../src/service/compliance-rows.ts';
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
}

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
    kind: 'api-key',
    credential: 'default',
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
 * A fleet of managed credentials as the compliance report reads it: `n` credentials, two per
 * subaccount (`default` and `billing`), each rotated once (a current key, its date, the last
 * rotation), its subaccount in the inventory and scanned (three keys at Twilio: both credentials'
 * current keys and one sprawl key; the stages of both credentials). Every 7th credential is overdue.
 */
export async function loadCredentialFleet(redis: Redis, n: number, log?: (m: string) => void): Promise<void> {
  const now = Date.now();
  const subs = Math.ceil(n / 2);
  const sid = (i: number): string => `AC${hex(0xc0000000 + i)}`;
  const key = (i: number): string => `SK${hex(0xc0000000 + i)}`;
  log?.(`api: loading ${n} managed credentials in ${subs} subaccounts, with their compliance facts`);
  const accounts = new AccountRepository(redis, 'rotator');
  await accounts.upsertMany(Array.from({ length: subs }, (_, i) => ({ accountSid: sid(i), friendlyName: `Fleet customer ${i}`, status: 'active', ownerAccountSid: `AC${'f'.repeat(32)}` })), now - 200 * 86_400_000);
  const credentials = new CredentialRepository(redis, 'rotator');
  const facts = new ComplianceFacts(redis, 'rotator');
  await pool(
    Array.from({ length: subs }, (_, i) => i),
    64,
    async (i) => {
      const stages = [];
      const keys = [];
      for (const [j, name] of (['billing', 'default'] as const).entries()) {
        const c = 2 * i + j;
        if (c >= n) continue;
        const at = now - (c % 7 === 0 ? 120 : c % 80) * 86_400_000;
        await credentials.ensure({ accountSid: sid(i), name }, { now: at - 86_400_000 });
        await credentials.recordFinished({ id: crypto.randomUUID(), accountSid: sid(i), credential: name, status: 'succeeded', dryRun: false, newKeySid: key(c), finishedAt: new Date(at).toISOString(), updatedAt: new Date(at).toISOString() }, at);
        stages.push({ name, current: key(c), pending: null, previous: null });
        keys.push({ sid: key(c), friendlyName: `rotator:${crypto.randomUUID()}`, dateCreated: at });
      }
      keys.push({ sid: key(n + i), friendlyName: 'made by hand', dateCreated: now - 400 * 86_400_000 });
      await facts.put({ accountSid: sid(i), friendlyName: `Fleet customer ${i}`, status: 'active', scannedAtMs: now, keys, note: null, stages, knownRotationIds: [], sprawl: 1, leftover: 0 });
    },
  );
  // What the workers do as these writes land: every credential's compliance row rendered and stored.
  await renderComplianceRows(redis, log);
}

/** Render every compliance row waiting (as a worker's renderer does); returns this process's CPU ms per row rendered. */
export async function renderComplianceRows(redis: Redis, log?: (m: string) => void): Promise<{ rows: number; cpuUsPerRow: number }> {
  const credentials = new CredentialRepository(redis, 'rotator');
  const rows = complianceRowsOn(redis, 'rotator', { credentials, policies: new PolicyRepository(redis, 'rotator') });
  const cpu0 = process.cpuUsage();
  let sids = 0;
  for (;;) {
    const r = await rows.drainOnce({ chunk: 500, maxChunks: 50 });
    if (r.idle) break;
    sids += r.rendered + r.walked;
  }
  const cpu = process.cpuUsage(cpu0);
  const n = await credentials.count();
  log?.(`api: rendered the compliance rows of ${sids} subaccount passes (${n} credentials)`);
  return { rows: n, cpuUsPerRow: n ? Math.round((cpu.user + cpu.system) / n) : 0 };
}

/**
 * The read API under load: N finished rotation records and N accounts in Redis (and, with
 * `credentials`, a fleet of managed credentials with their compliance facts), the API as its own
 * process, autocannon from this one: each route as fast as it answers (50 connections), then, with
 * `openLoopRate`, the list routes at that fixed offered load (latency there does not depend on how
 * fast this machine saturates).
 */
export async function runApiLoad(opts: {
  records: number;
  accounts: number;
  connections: number;
  seconds: number;
  log?: (m: string) => void;
  nodeArgs?: string[];
  credentials?: number;
  openLoopRate?: number;
}): Promise<{ routes: RouteLoad[]; openLoop: Array<RouteLoad & { offeredPerSecond: number }>; redisBytesPerRecord: number; credentials: number }> {
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
    if (opts.credentials) await loadCredentialFleet(redis, opts.credentials, opts.log);

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
      const load = async (route: string, overallRate?: number): Promise<RouteLoad> => {
        opts.log?.(`api: ${route}${overallRate ? ` at ${overallRate} requests/s` : ''}`);
        const r = await cpuPerRequest(api.child.pid!, redis, () =>
          autocannon({ url: `http://127.0.0.1:${port}${route.replace('{id}', sampleId)}`, connections: opts.connections, duration: opts.seconds, headers: { authorization: `Bearer ${viewer.token}` }, ...(overallRate ? { overallRate } : {}) }),
        );
        return { route, requestsPerSecond: round(r.requests.average, 0), p50Ms: r.latency.p50, p99Ms: r.latency.p99, p90Ms: r.latency.p90, maxMs: r.latency.max, non2xx: r.non2xx, apiCpuUsPerRequest: r.apiUs, redisCpuUsPerRequest: r.redisUs };
      };
      const listRoutes = ['/v1/accounts?limit=100', ...(opts.credentials ? ['/v1/compliance?limit=100'] : [])];
      for (const route of ['/v1/rotations?limit=50', ...listRoutes, '/v1/rotations/{id}']) routes.push(await load(route));
      const openLoop: Array<RouteLoad & { offeredPerSecond: number }> = [];
      if (opts.openLoopRate) for (const route of listRoutes) openLoop.push({ ...(await load(route, opts.openLoopRate)), offeredPerSecond: opts.openLoopRate });
      return { routes, openLoop, redisBytesPerRecord: round(redisBytesPerRecord, 0), credentials: opts.credentials ?? 0 };
    } finally {
      await api.stop();
    }
  } finally {
    redis.disconnect();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
