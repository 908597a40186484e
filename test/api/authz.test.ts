import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { dumpRedis } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/stack.ts';
import { createOidcVerifier } from '../../src/api/oidc.ts';
import { AUDIENCE, bearer, ISSUER, rotationIn, startApiHarness, type ApiHarness } from './support.ts';

/** `consumer` (issue 15) is outside the operator roles' order: only a consumer token may send heartbeats, and it may do nothing else. */
type Need = 'public' | 'viewer' | 'operator' | 'admin' | 'consumer';
const RANK = { viewer: 0, operator: 1, admin: 2 } as const;

/**
 * Every route of the app × every kind of caller. The expected answer is derived from the route's
 * role alone: 401 without a usable credential, 403 below the role, anything but 401/403 at or
 * above it. A route missing from this table fails the test (compared with the app's own routes).
 */
describe('authorization matrix', () => {
  let h: ApiHarness;
  let url: string;
  let rotationId: string;
  let sid: string;
  let batchId: string;
  const batchBody = { selector: 'all', reason: 'authz', dryRun: true, waves: { canary: 1, step: 100, bakeSeconds: 0 }, maxFailureRate: 1 };
  /** Before the first token is verified (the first JWKS fetch). */
  let started: number;

  beforeAll(async () => {
    started = Date.now();
    h = await startApiHarness();
    url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    sid = h.stack.emu.subaccounts[0]!.sid;
    rotationId = (await rotationIn(h.rt, h.stack.emu.subaccounts[1]!.sid, 'failed', { undo: { reason: 'failure', completedAt: new Date().toISOString() } })).id;
    await h.rt.credentials.ensure({ accountSid: h.stack.emu.subaccounts[2]!.sid, name: 'default' });
    const batch = await h.rt.batches.create(batchBody, 'test');
    if (!batch.ok) throw new Error(JSON.stringify(batch.errors));
    batchId = batch.value.id;
  });
  afterAll(async () => h?.close());

  const routes = (): Array<{ method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: string; need: Need; body?: object; sse?: boolean }> => [
    { method: 'GET', url: '/healthz', need: 'public' },
    { method: 'GET', url: '/readyz', need: 'public' },
    { method: 'GET', url: '/metrics', need: 'public' },
    { method: 'GET', url: '/docs', need: 'public' },
    { method: 'GET', url: '/docs/json', need: 'public' },
    { method: 'POST', url: '/v1/rotations', need: 'operator', body: { accountSid: sid, dryRun: true } },
    { method: 'GET', url: '/v1/rotations', need: 'viewer' },
    { method: 'GET', url: `/v1/rotations/${rotationId}`, need: 'viewer' },
    { method: 'POST', url: `/v1/rotations/${rotationId}/cancel`, need: 'operator' },
    { method: 'POST', url: `/v1/rotations/${rotationId}/rollback`, need: 'operator' },
    { method: 'POST', url: `/v1/rotations/${rotationId}/retry`, need: 'operator' },
    { method: 'POST', url: `/v1/rotations/${rotationId}/abandon`, need: 'admin', body: { confirm: h.stack.emu.subaccounts[1]!.sid } },
    // The same route, with a body only an admin may send: an emergency rotation.
    { method: 'POST', url: '/v1/rotations', need: 'admin', body: { accountSid: sid, urgent: true, reason: 'key leaked in a build log', drainSeconds: 0 } },
    { method: 'GET', url: '/v1/accounts', need: 'viewer' },
    { method: 'POST', url: '/v1/batches', need: 'operator', body: batchBody },
    { method: 'GET', url: '/v1/batches', need: 'viewer' },
    { method: 'GET', url: `/v1/batches/${batchId}`, need: 'viewer' },
    { method: 'POST', url: '/v1/batches/preview', need: 'operator', body: batchBody },
    { method: 'POST', url: `/v1/batches/${batchId}/pause`, need: 'operator' },
    { method: 'POST', url: `/v1/batches/${batchId}/resume`, need: 'operator' },
    { method: 'POST', url: `/v1/batches/${batchId}/cancel`, need: 'operator' },
    { method: 'GET', url: `/v1/accounts/${sid}`, need: 'viewer' },
    { method: 'PATCH', url: `/v1/accounts/${sid}`, need: 'operator', body: { labels: ['hipaa'] } },
    { method: 'POST', url: `/v1/accounts/${sid}/credentials`, need: 'operator', body: { name: 'web' } },
    { method: 'PATCH', url: `/v1/accounts/${sid}/credentials/default`, need: 'operator', body: { paused: false } },
    { method: 'GET', url: '/v1/credentials', need: 'viewer' },
    { method: 'GET', url: '/v1/policies', need: 'viewer' },
    { method: 'GET', url: '/v1/policies/default', need: 'viewer' },
    { method: 'PUT', url: '/v1/policies/authz-test', need: 'admin', body: { interval: 'P60D' } },
    { method: 'DELETE', url: '/v1/policies/authz-test', need: 'admin' },
    { method: 'GET', url: '/v1/events', need: 'viewer', sse: true },
    { method: 'GET', url: '/v1/audit', need: 'admin' },
    { method: 'GET', url: '/v1/audit/export', need: 'admin' },
    { method: 'GET', url: '/v1/status', need: 'admin' },
    { method: 'GET', url: '/v1/compliance', need: 'viewer' },
    { method: 'POST', url: '/v1/compliance/scan', need: 'admin' },
    { method: 'POST', url: `/v1/accounts/${sid}/keys/SK${'0'.repeat(32)}/delete`, need: 'admin', body: { confirm: `SK${'0'.repeat(32)}` } },
    { method: 'GET', url: '/v1/schedule', need: 'viewer' },
    { method: 'POST', url: '/v1/schedule/pause', need: 'admin', body: { reason: 'authz test' } },
    { method: 'POST', url: '/v1/schedule/resume', need: 'admin', body: { reason: 'authz test' } },
    { method: 'POST', url: '/v1/consumers/heartbeat', need: 'consumer', body: { consumer: 'authz-app', accountSid: h.stack.emu.subaccounts[2]!.sid, keySid: `SK${'1'.repeat(32)}` } },
    { method: 'GET', url: `/v1/accounts/${sid}/consumers`, need: 'viewer' },
    { method: 'POST', url: `/v1/rotations/${rotationId}/promote`, need: 'operator' },
    // The dashboard (issue 14): its page and files are public; signing in takes a token in the body.
    { method: 'GET', url: '/', need: 'public' },
    { method: 'GET', url: '/ui/:version/:file', need: 'public' },
    { method: 'POST', url: '/v1/session', need: 'public', body: { token: h.tokens.viewer } },
    { method: 'GET', url: '/v1/session', need: 'public' },
    { method: 'DELETE', url: '/v1/session', need: 'viewer' },
    // SSO sign-in starts and ends in the browser, before any session (404 here: no OIDC_CLIENT_ID).
    { method: 'GET', url: '/v1/session/oidc', need: 'public' },
    { method: 'GET', url: '/v1/session/oidc/callback', need: 'public' },
  ];

  type Caller = { name: string; headers: () => Promise<Record<string, string>>; role?: keyof typeof RANK | 'consumer'; invalid?: boolean; noRole?: boolean };
  const callers = (): Caller[] => [
    { name: 'no token', headers: async () => ({}), invalid: true },
    { name: 'bad token', headers: async () => bearer('rot_this-is-not-a-token'), invalid: true },
    { name: 'basic auth', headers: async () => ({ authorization: 'Basic c2VjOnNlYw==' }), invalid: true },
    { name: 'viewer', headers: async () => bearer(h.tokens.viewer), role: 'viewer' },
    { name: 'operator', headers: async () => bearer(h.tokens.operator), role: 'operator' },
    { name: 'admin', headers: async () => bearer(h.tokens.admin), role: 'admin' },
    { name: 'consumer', headers: async () => bearer(h.tokens.consumer), role: 'consumer' },
    { name: 'OIDC viewer', headers: async () => bearer(await h.jwt('viewer')), role: 'viewer' },
    { name: 'OIDC operator', headers: async () => bearer(await h.jwt('operator')), role: 'operator' },
    { name: 'OIDC admin', headers: async () => bearer(await h.jwt('admin')), role: 'admin' },
    { name: 'OIDC without a mapped group', headers: async () => bearer(await h.jwt('none')), noRole: true },
    { name: 'OIDC expired', headers: async () => bearer(await track(h.idp.sign({ sub: 'u', groups: ['rotator-admins'] }, { expiresIn: Math.floor(Date.now() / 1000) - 120 }))), invalid: true },
    { name: 'OIDC wrong audience', headers: async () => bearer(await track(h.idp.sign({ sub: 'u', groups: ['rotator-admins'] }, { audience: 'another-app' }))), invalid: true },
    { name: 'OIDC wrong issuer', headers: async () => bearer(await track(h.idp.sign({ sub: 'u', groups: ['rotator-admins'] }, { issuer: 'https://evil.example' }))), invalid: true },
    { name: 'OIDC forged signature', headers: async () => bearer(await track(h.idp.sign({ sub: 'u', groups: ['rotator-admins'] }, { key: 'rogue' }))), invalid: true },
    { name: 'OIDC unknown key id', headers: async () => bearer(await track(h.idp.sign({ sub: 'u', groups: ['rotator-admins'] }, { key: 'rogue', kid: 'k9' }))), invalid: true },
    { name: 'OIDC alg none', headers: async () => bearer(track(unsigned({ sub: 'u', groups: ['rotator-admins'], iss: 'https://idp.test.example', aud: 'rotator-api', exp: Math.floor(Date.now() / 1000) + 600 }))), invalid: true },
  ];
  function track<T extends string | Promise<string>>(t: T): T {
    void Promise.resolve(t).then((v) => h.issued.push(v));
    return t;
  }

  function expected(need: Need, c: Caller): 'allowed' | 401 | 403 {
    if (need === 'public') return 'allowed';
    if (c.invalid) return 401;
    if (c.noRole) return 403;
    if (need === 'consumer' || c.role === 'consumer') return need === c.role ? 'allowed' : 403;
    return RANK[c.role!] >= RANK[need] ? 'allowed' : 403;
  }

  it('lists every route the app serves (besides HEAD and the UI assets)', () => {
    // printRoutes draws a tree (4 columns per level): rebuild each full path from its ancestors.
    const served = new Set<string>();
    const prefix: string[] = [];
    for (const line of h.app.printRoutes({ commonPrefix: false }).split('\n')) {
      const m = /^((?:│ {3}| {4})*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
      if (!m) continue;
      const depth = m[1]!.length / 4;
      prefix[depth] = (depth > 0 ? prefix[depth - 1]! : '') + m[2]!;
      for (const method of (m[3] ?? '').split(', ').filter(Boolean)) if (method !== 'HEAD') served.add(`${method} ${prefix[depth]}`);
    }
    expect(served.size).toBeGreaterThan(15);
    const table = new Set(
      routes().map((r) => `${r.method} ${r.url.replace(rotationId, ':id').replace(batchId, ':id').replace(/^\/v1\/accounts\/AC[0-9a-f]{32}\/keys\/SK[0-9a-f]{32}\//, '/v1/accounts/:sid/keys/:keySid/').replace(/\/v1\/accounts\/AC[0-9a-f]{32}/, '/v1/accounts/:sid').replace(/credentials\/default$/, 'credentials/:name').replace(/policies\/[a-z-]+$/, 'policies/:name')}`),
    );
    const ui = [...served].filter((r) => r.startsWith('GET /docs/') && r !== 'GET /docs/json');
    expect([...served].filter((r) => !table.has(r) && !ui.includes(r))).toEqual([]);
    expect([...table].filter((r) => !served.has(r))).toEqual([]);
  });

  it('answers every route × caller as its role requires', async () => {
    const failures: string[] = [];
    for (const route of routes()) {
      for (const caller of callers()) {
        const headers = await caller.headers();
        const status = route.sse ? await sseStatus(url, route.url, headers) : (await h.app.inject({ method: route.method, url: route.url, headers, ...(route.body ? { payload: route.body } : {}) } as InjectOptions)).statusCode;
        const want = expected(route.need, caller);
        const ok = want === 'allowed' ? status !== 401 && status !== 403 && status < 500 : status === want;
        if (!ok) failures.push(`${route.method} ${route.url} as ${caller.name}: ${status}, expected ${want}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('never lets a viewer change anything', async () => {
    const before = await h.rt.repo.list({ limit: 200 });
    const snapshot = JSON.stringify(before.items.map((r) => [r.id, r.rev, r.status]));
    for (const token of [h.tokens.viewer, await h.jwt('viewer')]) {
      // Signing in and out is no change to the fleet: a viewer may.
      for (const route of routes().filter((r) => r.method !== 'GET' && (r.need === 'operator' || r.need === 'admin'))) {
        const res = await h.app.inject({ method: route.method, url: route.url, headers: bearer(token), ...(route.method === 'DELETE' ? {} : { payload: route.body ?? {} }) });
        expect(res.statusCode, `${route.url}`).toBe(403);
        expect(res.json().error).toMatchObject({ code: 'forbidden', message: expect.stringMatching(/needs the (operator|admin|consumer) role/) });
      }
      const start = await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: { ...bearer(token), 'idempotency-key': 'viewer-attempt' }, payload: { accountSid: h.stack.emu.subaccounts[2]!.sid } });
      expect(start.statusCode).toBe(403);
    }
    const after = await h.rt.repo.list({ limit: 200 });
    expect(JSON.stringify(after.items.map((r) => [r.id, r.rev, r.status]))).toBe(snapshot);
    expect(await h.rt.repo.inFlightFor(h.stack.emu.subaccounts[2]!.sid)).toBeUndefined();
  });

  it('names OIDC principals by subject and audits them with their role', async () => {
    const token = await h.jwt('operator', { sub: 'alice@example.com' });
    const res = await h.app.inject({ method: 'POST', url: '/v1/rotations', headers: bearer(token), payload: { accountSid: h.stack.emu.subaccounts[2]!.sid, dryRun: true } });
    expect(res.statusCode).toBe(202);
    const audit = await h.app.inject({ method: 'GET', url: `/v1/audit?rotationId=${res.json().id}`, headers: bearer(h.tokens.admin) });
    expect(audit.json().items[0]).toMatchObject({ actor: 'oidc:alice@example.com', role: 'operator', action: 'rotation.start', status: 202 });
    const rec = await h.rt.repo.get(res.json().id);
    expect(rec?.requestedBy).toBe('oidc:alice@example.com');
  });

  it('caches the identity provider\'s keys, and answers 503 (never lets in) when they cannot be fetched', async () => {
    // Dozens of JWTs were verified above, some with an unknown key id: the JWKS was fetched once,
    // plus at most once per 30 s cooldown since (an unknown key id may refetch after it). The bound
    // follows the time the tests took: a fixed count failed a run slowed past 90 s.
    const cooldowns = Math.floor((Date.now() - started) / 30_000);
    expect(h.idp.requests()).toBeGreaterThanOrEqual(1);
    expect(h.idp.requests()).toBeLessThanOrEqual(1 + cooldowns);
    const unreachable = createOidcVerifier({ jwksUrl: 'http://127.0.0.1:9/jwks.json', issuer: ISSUER, audience: AUDIENCE, roleClaim: 'groups', roleMap: { 'rotator-admins': 'admin' } }, { fetchTimeoutMs: 500 });
    expect(await unreachable(await h.jwt('admin'))).toMatchObject({ ok: false, status: 503, code: 'auth_unavailable' });
  });

  it('never writes a token to the logs or to Redis', async () => {
    // Every credential of the matrix reached the API; log lines (trace level) and Redis must hold none.
    // The matrix dropped its event streams without waiting for the server to see them go: scan
    // once the server has closed them all (a stream holds a connection blocked in XREAD).
    const readers = async () => ((await h.rt.redis.client('LIST')) as string).split('\n').filter((l) => l.includes('cmd=xread')).length;
    await waitFor('the matrix\'s event streams to close', async () => (await readers()) === 0);
    const logs = h.stack.logs.text();
    expect(logs.length).toBeGreaterThan(10_000);
    expect(logs).toMatch(/"reqId":"[0-9a-f-]{36}"/);
    const redis = await dumpRedis(h.rt.redisUrl);
    const leaked = h.issued.filter((t) => logs.includes(t) || redis.some((v) => v.includes(t)));
    expect(h.issued.length).toBeGreaterThan(20);
    expect(leaked.map((t) => `${t.slice(0, 6)}… (${t.length} chars)`)).toEqual([]);
    // Nor any recognisable part of one: the JWT signature segments.
    const signatures = h.issued.filter((t) => t.split('.').length === 3).map((t) => t.split('.')[2]!).filter((s) => s.length > 20);
    expect(signatures.filter((s) => logs.includes(s))).toEqual([]);
  });
});

/** The status of a GET on an event stream, read from the response head; the stream is then dropped. */
function sseStatus(base: string, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method: 'GET', headers }, (res) => {
      resolve(res.statusCode ?? 0);
      res.destroy();
      req.destroy();
    });
    req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
    req.end();
  });
}

function unsigned(claims: object): string {
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
}
