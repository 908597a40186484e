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
import { cpuMs, redisCpuMs, round, spawnTs } from './lib.ts';

/**
 * `tsx bench/compliance-page.ts [credentials] [seconds] [--cpu-prof]`: the compliance page's API
 * CPU alone, next to GET /v1/accounts?limit=100 in the same run (the ratio does not depend on the
 * host's speed or load). Three figures for the page, each with its p99 at 50 connections:
 * - cold: every page read once, the first read after a write to every credential's subaccount
 *   (a scan's facts), once the renderer (this process, as a worker would) has stored the rows;
 * - warm: the same page again and again;
 * - stale: every page read once right after the write, before any row is rendered again (the
 *   reader renders each row from its inputs: what every page cost before rows were stored).
 * The write-time cost is printed too: this process's CPU per row rendered. The host's load average
 * goes with every figure: on a shared host the absolute numbers move with it.
 */
const credentials = Number(process.argv[2] ?? 100_000);
const seconds = Number(process.argv[3] ?? 8);
const profile = process.argv.includes('--cpu-prof');
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
  const measure = async (name: string, opts: Parameters<typeof autocannon>[0]) => {
    const [api0, redis0, load0] = [cpuMs(pid), await redisCpuMs(redis), load()];
    const r = await autocannon({ connections: 50, headers, ...opts });
    const n = Math.max(1, r.requests.total);
    const out = {
      name,
      requests: r.requests.total,
      perSecond: round(r.requests.average, 0),
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      apiCpuUs: round(((cpuMs(pid) - api0) * 1000) / n, 0),
      redisCpuUs: round((((await redisCpuMs(redis)) - redis0) * 1000) / n, 0),
      non2xx: r.non2xx,
      loadavg: `${load0} → ${load()}`,
    };
    console.log(JSON.stringify(out));
    return out;
  };
  try {
    const base = `http://127.0.0.1:${port}`;
    let next = 0;
    const walk = (): Parameters<typeof autocannon>[0] => ({
      url: base,
      amount: cursors.length,
      requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, path: `/v1/compliance?limit=100&cursor=${cursors[next++ % cursors.length]}` }) }],
    });
    // Warm-up, not measured: the JIT, for both routes (one walk over every page).
    await autocannon({ url: `${base}/v1/accounts?limit=100`, connections: 10, amount: 2000, headers });
    await autocannon({ ...walk(), connections: 10, headers });
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
    console.log(JSON.stringify({ renderedRows: render.rows, renderCpuUsPerRow: render.cpuUsPerRow, loadavg: load() }));
    next = 0;
    const cold = await measure('compliance, distinct pages, first read after a write (cold)', walk());
    const accounts = await measure('accounts?limit=100', { url: `${base}/v1/accounts?limit=100`, duration: seconds });
    const warm = await measure('compliance?limit=100 (same page, warm)', { url: `${base}/v1/compliance?limit=100`, duration: seconds });
    // Written again, not rendered: every row is stale, and the reader renders (and stores) it.
    await rescan();
    next = 0;
    const stale = await measure('compliance, distinct pages, rows stale (rendered by the reader)', walk());
    const accounts2 = await measure('accounts?limit=100 (again)', { url: `${base}/v1/accounts?limit=100`, duration: seconds });
    const acc = { apiCpuUs: (accounts.apiCpuUs + accounts2.apiCpuUs) / 2, p99Ms: Math.max(accounts.p99Ms, accounts2.p99Ms), perSecond: (accounts.perSecond + accounts2.perSecond) / 2 };
    console.log(
      JSON.stringify({
        credentials,
        apiCpuRatioWarm: round(warm.apiCpuUs / acc.apiCpuUs, 2),
        apiCpuRatioCold: round(cold.apiCpuUs / acc.apiCpuUs, 2),
        apiCpuRatioStale: round(stale.apiCpuUs / acc.apiCpuUs, 2),
        p99RatioWarm: round(warm.p99Ms / acc.p99Ms, 2),
        p99RatioCold: round(cold.p99Ms / acc.p99Ms, 2),
        throughputRatioWarm: round(warm.perSecond / acc.perSecond, 2),
        redisCpuRatioWarm: round(warm.redisCpuUs / ((accounts.redisCpuUs + accounts2.redisCpuUs) / 2), 2),
      }),
    );
  } finally {
    await api.stop();
  }
} finally {
  redis.disconnect();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
