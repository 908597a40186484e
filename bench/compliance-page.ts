import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import autocannon from 'autocannon';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { mintToken } from '../src/api/tokens.ts';
import { loadCredentialFleet, renderComplianceRows } from './api-load.ts';
import { ComplianceFacts } from '../src/state/compliance.ts';
import { redisKeys } from '../src/state/keys.ts';
import { cpuMs, redisCpuMs, round, spawnTs } from './lib.ts';

/**
 * `tsx bench/compliance-page.ts [credentials] [seconds] [--cpu-prof]`: the compliance page's API
 * CPU and p99 at 50 connections, next to GET /v1/accounts?limit=100 and GET /healthz (a route that
 * does nothing) in the same run: the ratios do not depend on the host's speed or load.
 * - cold: distinct pages in a loop for `seconds`, each read from the stored rows (the fleet is
 *   larger than the rows an API process keeps, so no page finds its rows kept: the Redis MGETs per
 *   request say so), after a write to every credential's subaccount (a scan's facts) and the
 *   renderer (this process, as a worker would) storing the rows again;
 * - warm: the same page again and again (its rows kept in the API process);
 * - stale: every page read once right after the write, before any row is rendered again (the
 *   reader renders each row from its inputs: what every page cost before rows were stored), next
 *   to the accounts pages walked the same way (as many requests, distinct pages).
 * The write-time cost is printed too: this process's CPU per row rendered, and the stored bytes
 * per row. The host's load average goes with every figure.
 * With `--open-loop=<requests/s>`: then each route at that fixed offered load (autocannon's
 * overallRate over the same 50 connections), the cold pages after another write to every
 * subaccount: the latency there is the service time and its queueing, not the saturation point.
 */
const credentials = Number(process.argv[2] ?? 100_000);
const seconds = Number(process.argv[3] ?? 8);
const profile = process.argv.includes('--cpu-prof');
const openLoop = Number(process.argv.find((a) => a.startsWith('--open-loop='))?.slice('--open-loop='.length) ?? 0);
const hex = (n: number, len = 32): string => n.toString(16).padStart(len, '0');
const load = (): string => loadavg().map((l) => l.toFixed(1)).join(' ');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

const dir = await mkdtemp(join(tmpdir(), 'rotator-cperf-'));
const server = await startEmbeddedRedis({ dir, persist: false });
const redis = new Redis(server.url);
try {
  await loadCredentialFleet(redis, credentials, (m) => console.error(m));
  const viewer = mintToken('bench', 'viewer');
  const port = await freePort();
  const api = await spawnTs(
    'src/main.ts',
    ['api'],
    { REDIS_URL: server.url, API_TOKENS: viewer.entry, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '100000000' },
    () => false,
    profile ? ['--cpu-prof', '--cpu-prof-dir=bench/profiles'] : [],
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
  );
  const pid = api.child.pid!;
  const headers = { authorization: `Bearer ${viewer.token}` };
  // A page starts after the credential id in its cursor: every 100th credential of the fleet.
  const cursors = Array.from({ length: Math.floor(credentials / 100) - 1 }, (_, p) => {
    const c = (p + 1) * 100 - 1;
    return Buffer.from(`AC${hex(0xc0000000 + Math.floor(c / 2))}/${c % 2 === 0 ? 'billing' : 'default'}`, 'latin1').toString('base64url');
  });
  const mgetCalls = async (): Promise<number> => Number(/cmdstat_mget:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
  // An accounts page starts after the SID in its cursor: every 100th account.
  const accountCursors = Array.from({ length: Math.floor(credentials / 200) - 1 }, (_, p) => Buffer.from(`AC${hex(0xc0000000 + (p + 1) * 100 - 1)}`, 'latin1').toString('base64url'));
  const measure = async (name: string, opts: Parameters<typeof autocannon>[0]) => {
    const [api0, redis0, load0, mget0] = [cpuMs(pid), await redisCpuMs(redis), load(), await mgetCalls()];
    const r = await autocannon({ connections: 50, headers, ...opts });
    const n = Math.max(1, r.requests.total);
    const mgets = (await mgetCalls()) - mget0;
    const out = {
      name,
      requests: r.requests.total,
      perSecond: round(r.requests.average, 0),
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      apiCpuUs: round(((cpuMs(pid) - api0) * 1000) / n, 0),
      redisCpuUs: round((((await redisCpuMs(redis)) - redis0) * 1000) / n, 0),
      non2xx: r.non2xx,
      redisMgetsPerRequest: round(mgets / n, 2),
      loadavg: `${load0} → ${load()}`,
    };
    console.log(JSON.stringify(out));
    return out;
  };
  try {
    const base = `http://127.0.0.1:${port}`;
    let next = 0;
    const pages = (amount?: number): Parameters<typeof autocannon>[0] => ({
      url: base,
      ...(amount ? { amount } : { duration: seconds }),
      requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, path: `/v1/compliance?limit=100&cursor=${cursors[next++ % cursors.length]}` }) }],
    });
    let nextAccount = 0;
    const accountPages = (amount: number): Parameters<typeof autocannon>[0] => ({
      url: base,
      amount,
      requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, path: `/v1/accounts?limit=100&cursor=${accountCursors[nextAccount++ % accountCursors.length]}` }) }],
    });
    // Warm-up, not measured: the JIT, for every route (one walk over every page).
    await autocannon({ url: `${base}/v1/accounts?limit=100`, connections: 10, amount: 2000, headers });
    await autocannon({ url: `${base}/healthz`, connections: 10, amount: 2000, headers });
    await autocannon({ ...accountPages(cursors.length), connections: 10, headers });
    await autocannon({ ...pages(cursors.length), connections: 10, headers });
    // A write to every subaccount (a scan's facts again: it marks their rows), then the rows rendered
    // as a worker would, timed: the write-time cost per row.
    const facts = new ComplianceFacts(redis, 'rotator');
    const rescan = async () => {
      const subs = Math.ceil(credentials / 2);
      const sids = Array.from({ length: subs }, (_, i) => `AC${hex(0xc0000000 + i)}`);
      for (let i = 0; i < subs; i += 500) {
        const chunk = sids.slice(i, i + 500);
        const got = await facts.getMany(chunk);
        await Promise.all(got.map((f) => f && facts.put({ ...f, scannedAtMs: f.scannedAtMs + 1000 })));
      }
    };
    await rescan();
    const render = await renderComplianceRows(redis);
    const sample = await redis.mget(cursors.slice(0, 100).map((c) => redisKeys('rotator').complianceRow(Buffer.from(c, 'base64url').toString('latin1'))));
    const stored = sample.filter((x): x is string => x !== null);
    console.log(JSON.stringify({ renderedRows: render.rows, renderCpuUsPerRow: render.cpuUsPerRow, storedBytesPerRow: stored.length ? Math.round(stored.reduce((a, x) => a + Buffer.byteLength(x), 0) / stored.length) : null, loadavg: load() }));
    next = 0;
    const cold = await measure('compliance, distinct pages in a loop, rows read from Redis (cold)', pages());
    const accounts = await measure('accounts?limit=100', { url: `${base}/v1/accounts?limit=100`, duration: seconds });
    const warm = await measure('compliance?limit=100 (same page, warm)', { url: `${base}/v1/compliance?limit=100`, duration: seconds });
    const health = await measure('healthz (does nothing)', { url: `${base}/healthz`, duration: seconds });
    // Written again, not rendered: every row is stale, and the reader renders (and stores) it.
    await rescan();
    next = 0;
    const stale = await measure('compliance, distinct pages, rows stale (rendered by the reader)', pages(cursors.length));
    nextAccount = 0;
    const accountWalk = await measure('accounts, distinct pages, as many requests', accountPages(cursors.length));
    const accounts2 = await measure('accounts?limit=100 (again)', { url: `${base}/v1/accounts?limit=100`, duration: seconds });
    const acc = { apiCpuUs: (accounts.apiCpuUs + accounts2.apiCpuUs) / 2, p99Ms: Math.max(accounts.p99Ms, accounts2.p99Ms), perSecond: (accounts.perSecond + accounts2.perSecond) / 2 };
    console.log(
      JSON.stringify({
        credentials,
        apiCpuRatioWarm: round(warm.apiCpuUs / acc.apiCpuUs, 2),
        apiCpuRatioCold: round(cold.apiCpuUs / acc.apiCpuUs, 2),
        apiCpuRatioStaleToAccountWalk: round(stale.apiCpuUs / accountWalk.apiCpuUs, 2),
        p99RatioWarm: round(warm.p99Ms / acc.p99Ms, 2),
        p99RatioCold: round(cold.p99Ms / acc.p99Ms, 2),
        throughputRatioWarm: round(warm.perSecond / acc.perSecond, 2),
        throughputRatioCold: round(cold.perSecond / acc.perSecond, 2),
        redisCpuRatioWarm: round(warm.redisCpuUs / ((accounts.redisCpuUs + accounts2.redisCpuUs) / 2), 2),
        redisCpuRatioCold: round(cold.redisCpuUs / ((accounts.redisCpuUs + accounts2.redisCpuUs) / 2), 2),
        // p99 over that of a route that does nothing, same connections, same run: the host's load divides out.
        p99OverHealthz: { accounts: round(acc.p99Ms / health.p99Ms, 2), complianceWarm: round(warm.p99Ms / health.p99Ms, 2), complianceCold: round(cold.p99Ms / health.p99Ms, 2), healthzP99Ms: health.p99Ms },
      }),
    );
    if (openLoop > 0) {
      await rescan();
      await renderComplianceRows(redis);
      const rate = { overallRate: openLoop, duration: seconds };
      next = 0;
      const oCold = await measure(`open loop ${openLoop}/s: compliance, distinct pages (cold)`, { ...pages(), ...rate });
      const oAcc = await measure(`open loop ${openLoop}/s: accounts?limit=100`, { url: `${base}/v1/accounts?limit=100`, ...rate });
      const oWarm = await measure(`open loop ${openLoop}/s: compliance?limit=100 (warm)`, { url: `${base}/v1/compliance?limit=100`, ...rate });
      const oHealth = await measure(`open loop ${openLoop}/s: healthz`, { url: `${base}/healthz`, ...rate });
      console.log(JSON.stringify({ openLoopPerSecond: openLoop, p99OverHealthz: { accounts: round(oAcc.p99Ms / oHealth.p99Ms, 2), complianceWarm: round(oWarm.p99Ms / oHealth.p99Ms, 2), complianceCold: round(oCold.p99Ms / oHealth.p99Ms, 2), healthzP99Ms: oHealth.p99Ms } }));
    }
  } finally {
    await api.stop();
  }
} finally {
  redis.disconnect();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
