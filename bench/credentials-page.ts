/**
 * GET /v1/credentials (the fleet view the dashboard pages through) and GET /v1/accounts/{sid} at a
 * fleet of N managed credentials: N/2 subaccounts with two credentials each, 10% labelled hipaa, 10%
 * with an account override naming a policy with weekly windows in America/New_York, half rotated.
 * The API as its own process, autocannon from this one, as bench/api-load.ts does.
 *
 *   npx tsx bench/credentials-page.ts [credentials=100000] [seconds=10] [connections=50]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import autocannon from 'autocannon';
import { startEmbeddedRedis } from '../src/state/redis.ts';
import { AccountRepository } from '../src/state/accounts.ts';
import { CredentialRepository } from '../src/state/credentials.ts';
import { PolicyRepository } from '../src/state/policies.ts';
import { mintToken } from '../src/api/tokens.ts';
import { cpuMs, redisCpuMs, round, spawnTs } from './lib.ts';

const [n = 100_000, seconds = 10, connections = 50] = process.argv.slice(2).map(Number);
const hex = (i: number): string => i.toString(16).padStart(32, '0');
const DAY = 86_400_000;

const dir = await mkdtemp(join(tmpdir(), 'rotator-credbench-'));
const server = await startEmbeddedRedis({ dir, persist: false });
const redis = new Redis(server.url);
try {
  const accounts = new AccountRepository(redis, 'rotator');
  const credentials = new CredentialRepository(redis, 'rotator');
  const policies = new PolicyRepository(redis, 'rotator');
  await policies.put({ name: 'weekend', interval: 'P60D', windows: [{ days: ['sat', 'sun'], hours: { from: '01:00', to: '05:00' }, timeZone: 'America/New_York' }] });
  const subs = Math.ceil(n / 2);
  const now = Date.now();
  console.log(`loading ${n} credentials on ${subs} subaccounts`);
  for (let i = 0; i < subs; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, subs - i) }, (_, j) => i + j);
    await accounts.upsertMany(batch.map((k) => ({ accountSid: `AC${hex(k)}`, friendlyName: `Customer ${k}`, status: 'active', ownerAccountSid: `AC${hex(999_999_999)}` })), now - 200 * DAY);
    await Promise.all(
      batch.flatMap((k) => {
        const sid = `AC${hex(k)}`;
        const ops: Array<Promise<unknown>> = [];
        for (const name of ['default', 'web']) ops.push(credentials.ensure({ accountSid: sid, name }, { now: now - ((k * 7919) % 150) * DAY }));
        if (k % 10 === 0) ops.push(accounts.patch(sid, { labels: ['hipaa', 'tier=gold'] }));
        if (k % 10 === 5) ops.push(accounts.patch(sid, { policy: 'weekend' }, { requireStoredPolicy: true }));
        return ops;
      }),
    );
    await Promise.all(
      batch
        .filter((k) => k % 2 === 0)
        .map((k) => {
          const at = new Date(now - ((k * 31) % 80) * DAY).toISOString();
          return credentials.recordFinished({ id: `r${k}`, accountSid: `AC${hex(k)}`, status: 'succeeded', dryRun: false, newKeySid: `SK${hex(k)}`, finishedAt: at, updatedAt: at }, Date.parse(at) - 60_000);
        }),
    );
  }
  console.log(`${await credentials.count()} credentials`);

  const viewer = mintToken('bench', 'viewer');
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
  const api = await spawnTs(
    'src/main.ts',
    ['api'],
    { REDIS_URL: server.url, API_TOKENS: viewer.entry, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '100000000' },
    () => false,
    [],
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true,
  );
  try {
    const mid = `AC${hex(Math.floor(subs / 2))}`;
    const cursor = Buffer.from(`${mid}/default`, 'latin1').toString('base64url');
    const routes = ['/v1/accounts?limit=100', '/v1/credentials?limit=100', `/v1/credentials?limit=100&cursor=${cursor}`, '/v1/credentials?limit=500', '/v1/credentials?limit=100&label=hipaa&overdue=true', `/v1/accounts/AC${hex(5)}`];
    console.log('| route | req/s | p50 ms | p99 ms | API CPU µs/req | Redis CPU µs/req | non-2xx |\n|---|---|---|---|---|---|---|');
    // The first route walks distinct pages (every 100th credential as the cursor, in turn): its
    // first pass finds no plan remembered; the others ask one page again and again.
    const pages = Array.from({ length: Math.floor(subs / 50) }, (_, j) => `/v1/credentials?limit=100&cursor=${Buffer.from(`AC${hex(j * 50)}/web`, 'latin1').toString('base64url')}`);
    let next = 0;
    routes.unshift('/v1/credentials?limit=100 (distinct pages in turn)');
    for (const route of routes) {
      const [api0, redis0] = [cpuMs(api.child.pid!), await redisCpuMs(redis)];
      const walk = route.includes('distinct');
      const r = await autocannon({
        url: `http://127.0.0.1:${port}${walk ? pages[0] : route}`,
        connections,
        duration: seconds,
        headers: { authorization: `Bearer ${viewer.token}` },
        ...(walk ? { requests: [{ setupRequest: (req: Record<string, unknown>) => ({ ...req, path: pages[next++ % pages.length] }) }] } : {}),
      });
      const total = Math.max(1, r.requests.total);
      const apiUs = round(((cpuMs(api.child.pid!) - api0) * 1000) / total, 0);
      const redisUs = round((((await redisCpuMs(redis)) - redis0) * 1000) / total, 0);
      console.log(`| ${route.replace(cursor, '…')} | ${round(r.requests.average, 0)} | ${r.latency.p50} | ${r.latency.p99} | ${apiUs} | ${redisUs} | ${r.non2xx} |`);
    }
  } finally {
    await api.stop();
  }
} finally {
  redis.disconnect();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
