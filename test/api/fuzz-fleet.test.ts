import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import { startApiHarness, type ApiHarness } from './support.ts';
import { AnswerJudge, fuzzRuns, fuzzSeed, hex, payloadOf, printable as printableUpTo, withQuery, type Answer } from '../helpers/fuzz.ts';

/**
 * Property-based fuzzing of the fleet routes (issue 13), as test/api/fuzz.test.ts does the
 * rotation routes: policies, a subaccount's labels/override/pause, managed credentials, batches,
 * the schedule, the compliance report and scan, and the sprawl-key delete — arbitrary and
 * near-valid bodies, path parameters, query strings, Accept headers and credentials. The
 * properties: never a 5xx; every 4xx carries `{error: {code, message}}`; the app keeps answering;
 * and no answer, nor anything in Redis, holds a key secret the emulator issued or a bearer token.
 */
const RUNS = fuzzRuns(400);
/**
 * A fixed seed (FUZZ_SEED overrides it): whether a random walk happens to produce an admin's valid
 * policy was luck, so the "every route succeeded once" check failed some runs. The same requests
 * every run make this file pass or fail for the code, not the dice; change the seed to explore.
 */
const SEED = fuzzSeed();

// A last guard only, as in fuzz.test.ts: a loaded host may need far more than vitest's default.
describe('fuzzing the fleet routes', { timeout: 600_000 }, () => {
  let h: ApiHarness;
  const bodies: string[] = [];
  const answers = new AnswerJudge();
  const subs: string[] = [];
  const batchIds: string[] = [];

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn', stack: { subaccounts: 4 } });
    // Keys with secrets in the store and at Twilio: what a leak would show.
    await h.stack.seedAll();
    const parent = h.stack.emu.parent.accountSid;
    subs.push(...h.stack.emu.subaccounts.map((s) => s.sid));
    await h.rt.accounts.upsertMany(subs.map((s, i) => ({ accountSid: s, friendlyName: `Customer ${i}`, status: 'active', ownerAccountSid: parent })));
    for (const s of subs) await h.rt.credentials.ensure({ accountSid: s, name: 'default' });
    await h.rt.accounts.patch(subs[0]!, { labels: ['hipaa'] });
    const b = await h.app.inject({ method: 'POST', url: '/v1/batches', headers: auth('operator'), payload: { selector: 'all', reason: 'fuzz seed', dryRun: true, waves: { canary: 1, step: 50, bakeSeconds: 0 }, maxFailureRate: 0.5 } });
    expect(b.statusCode, b.body).toBe(202);
    batchIds.push(b.json().id);
  });

  afterAll(async () => {
    if (!h) return;
    const secrets = [...h.stack.emu.issuedSecrets(), ...h.issued];
    expect(findSecrets(secrets, bodies)).toEqual([]);
    expect(findSecrets(h.stack.emu.issuedSecrets(), await dumpRedis(h.rt.redisUrl))).toEqual([]);
    await h.close();
  });

  const auth = (role: 'viewer' | 'operator' | 'admin') => ({ authorization: `Bearer ${h.tokens[role]}` });

  // ---- generators --------------------------------------------------------------------------
  const printable = printableUpTo(40);
  const sid = () => fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...subs) }, hex(32).map((x) => `AC${x}`), fc.constantFrom('AC', '', 'AC' + 'A'.repeat(32), 'SK' + '0'.repeat(32)), fc.string({ maxLength: 40 }));
  const keySid = () => fc.oneof(hex(32).map((x) => `SK${x}`), fc.constantFrom('SK', 'sk' + '0'.repeat(32)), fc.string({ maxLength: 40 }));
  const name = () => fc.oneof(fc.constantFrom('default', 'hipaa', 'web-prod', 'billing', 'Not_A_Name', '', '-x', 'a'.repeat(70)), fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/), fc.string({ maxLength: 30 }));
  const label = () => fc.oneof(fc.constantFrom('hipaa', 'pci', 'tier=gold', 'Not OK', '', '=x', 'a=b=c'), fc.string({ maxLength: 20 }));
  const duration = () => fc.oneof(fc.constantFrom('P90D', 'P30D', 'P1D', 'PT1H', 'P1Y2', '90 days', 'P0D', 'P-1D', 'P99999999D', ''), fc.string({ maxLength: 12 }), fc.integer());
  const zone = () => fc.oneof(fc.constantFrom('UTC', 'America/New_York', 'Mars/Olympus_Mons', 'Etc/GMT+14', ''), fc.string({ maxLength: 20 }));
  const day = () => fc.oneof(fc.constantFrom('mon', 'tue', 'sat', 'sun', 'funday'), fc.string({ maxLength: 5 }));
  const hhmm = () => fc.oneof(fc.constantFrom('00:00', '09:00', '17:00', '24:00', '25:61', '9:00'), fc.string({ maxLength: 6 }));
  const policyBody = () =>
    fc.record(
      {
        name: name(),
        interval: duration(),
        maxKeyAge: fc.oneof(duration(), fc.constant(null)),
        windows: fc.oneof(fc.array(fc.record({ days: fc.array(day(), { maxLength: 3 }), hours: fc.oneof(fc.record({ from: hhmm(), to: hhmm() }), fc.anything()), timeZone: zone() }, { requiredKeys: [] }), { maxLength: 2 }), fc.anything()),
        blackouts: fc.oneof(fc.array(fc.record({ from: fc.oneof(fc.constantFrom('2026-12-24T00:00:00Z', '2026-12-24', 'x'), fc.string({ maxLength: 25 })), to: fc.constantFrom('2026-12-26T00:00:00Z', '2020-01-01T00:00:00Z', '') }), { maxLength: 2 }), fc.anything()),
        labels: fc.oneof(fc.array(label(), { maxLength: 3 }), fc.anything()),
        exclude: fc.oneof(fc.boolean(), fc.anything()),
        extra: fc.anything(),
      },
      { requiredKeys: [] },
    );
  const accountPatch = () => fc.record({ labels: fc.oneof(fc.array(label(), { maxLength: 4 }), fc.anything()), policy: fc.oneof(name(), fc.constant(null), fc.anything()), paused: fc.oneof(fc.boolean(), fc.anything()), extra: fc.anything() }, { requiredKeys: [] });
  const credentialBody = () => fc.record({ name: name(), kind: fc.oneof(fc.constantFrom('api-key', 'auth-token', ''), fc.anything()), policy: fc.oneof(name(), fc.constant(null)), paused: fc.oneof(fc.boolean(), fc.anything()) }, { requiredKeys: [] });
  const selector = () =>
    fc.oneof(
      fc.constantFrom('all', 'none', ''),
      fc.record({ labels: fc.array(label(), { maxLength: 3 }) }),
      fc.record({ accountSids: fc.array(sid(), { maxLength: 3 }) }),
      fc.record({ credentials: fc.array(fc.record({ accountSid: sid(), name: name() }, { requiredKeys: [] }), { maxLength: 3 }) }),
      fc.record({ labels: fc.array(label()), accountSids: fc.array(sid()) }),
      fc.anything(),
    );
  const batchBody = () =>
    fc.record(
      {
        selector: selector(),
        reason: fc.oneof(fc.string({ minLength: 1, maxLength: 300 }), fc.constant(''), fc.integer()),
        // Mostly dry runs: a real batch would queue rotations nobody works (no worker here).
        dryRun: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.anything() }),
        waves: fc.oneof(fc.record({ canary: fc.oneof(fc.integer({ min: -2, max: 2000 }), fc.constantFrom('10%', '0%', '150%', 'x%', '')), step: fc.oneof(fc.integer({ min: -5, max: 200 }), fc.anything()), bakeSeconds: fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.anything()) }, { requiredKeys: [] }), fc.anything()),
        maxFailureRate: fc.oneof(fc.double({ min: -1, max: 2, noNaN: true }), fc.anything()),
      },
      { requiredKeys: [] },
    );
  const body = (near: fc.Arbitrary<unknown>) =>
    fc.oneof(
      { weight: 5, arbitrary: near.map((v) => ({ json: v })) },
      { weight: 1, arbitrary: fc.anything().map((v) => ({ json: v })) },
      { weight: 1, arbitrary: fc.string({ maxLength: 100 }).map((raw) => ({ raw, type: 'application/json' })) },
      { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 60 }), fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', '*/*')).map(([raw, type]) => ({ raw, type })) },
      { weight: 1, arbitrary: fc.constant({ raw: '{"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}}}', type: 'application/json' }) },
      { weight: 1, arbitrary: fc.constant({}) },
    );
  const queryKey = fc.oneof(fc.constantFrom('limit', 'cursor', 'overdue', 'label', 'policy', 'section', 'sprawl', 'days', 'accountSid', 'status', '__proto__'), fc.string({ maxLength: 10 }));
  const queryValue = fc.oneof(fc.integer({ min: -5, max: 2000 }).map(String), fc.constantFrom('true', 'false', 'credentials', 'subaccounts', 'hipaa', 'default', 'QUM', 'QUMwMDAw', ''), fc.string({ maxLength: 30 }));
  const query = () => fc.dictionary(queryKey, queryValue, { maxKeys: 4 }).map((d) => new URLSearchParams(d).toString());
  const role = () => fc.oneof({ weight: 6, arbitrary: fc.constantFrom('viewer', 'operator', 'admin') }, { weight: 1, arbitrary: fc.constant(undefined) });
  const headers = (r: string | undefined, accept?: string): Record<string, string> => ({ ...(r ? auth(r as 'admin') : {}), ...(accept ? { accept } : {}) });
  const accept = () => fc.option(fc.oneof(fc.constantFrom('text/csv', 'application/json', 'text/csv;q=0.5, application/json', '*/*', 'text/html'), printable), { nil: undefined });
  // ---- the property (test/helpers/fuzz.ts), and every answer kept for the leak scan ---------
  function judge(what: string, a: Answer): void {
    bodies.push(a.body);
    answers.judge(what, a);
  }
  async function send(opts: InjectOptions): Promise<void> {
    const res = await h.app.inject(opts);
    judge(`${opts.method} ${opts.url} ${String(opts.payload ?? '').slice(0, 200)}`, { statusCode: res.statusCode, body: res.body });
  }
  const fuzz = <T,>(arb: fc.Arbitrary<T>, run: (v: T) => Promise<void>) => {
    answers.current = expect.getState().currentTestName ?? '';
    return fc.assert(fc.asyncProperty(arb, run), { numRuns: RUNS, seed: SEED });
  };
  const seg = (s: string, raw: boolean) => (raw ? s.replace(/[?#/\s%]/g, '') || 'x' : encodeURIComponent(s));

  // ---- reads -------------------------------------------------------------------------------
  for (const path of ['/v1/policies', '/v1/credentials', '/v1/batches', '/v1/schedule', '/v1/compliance']) {
    it(`GET ${path}: query strings, Accept and credentials`, async () => {
      await fuzz(fc.record({ q: query(), r: role(), a: accept() }), async ({ q, r, a }) => send({ method: 'GET', url: withQuery(path, q), headers: headers(r, a) }));
    });
  }

  it('GET /v1/policies/{name}, /v1/accounts/{sid}, /v1/batches/{id}: path parameters', async () => {
    const target = fc.oneof(
      name().map((n) => ['/v1/policies/', n] as const),
      sid().map((s) => ['/v1/accounts/', s] as const),
      fc.oneof(fc.constantFrom(...batchIds), fc.uuid(), fc.string({ maxLength: 40 })).map((id) => ['/v1/batches/', id] as const),
    );
    await fuzz(fc.record({ t: target, raw: fc.boolean(), q: query(), r: role() }), async ({ t, raw, q, r }) => send({ method: 'GET', url: withQuery(`${t[0]}${seg(t[1], raw)}`, q), headers: headers(r) }));
  });

  // ---- writes ------------------------------------------------------------------------------
  it('PUT and DELETE /v1/policies/{name}: names and bodies', async () => {
    await fuzz(fc.record({ n: name(), raw: fc.boolean(), b: body(policyBody()), del: fc.boolean(), r: role(), q: query() }), async ({ n, raw, b, del, r, q }) => {
      const url = withQuery(`/v1/policies/${seg(n, raw)}`, q);
      await send(del ? { method: 'DELETE', url, headers: headers(r) } : ({ method: 'PUT', url, ...payloadOf(b, headers(r)) } as InjectOptions));
    });
    // An admin's well-formed policy is rare among these requests (a random name, role, query and
    // body must all be right): one known-good PUT and DELETE make sure the handler's success path
    // ran beside whatever the walk reached.
    await send({ method: 'PUT', url: '/v1/policies/fuzz-known', headers: headers('admin'), payload: { interval: 'P60D' } } as InjectOptions);
    await send({ method: 'DELETE', url: '/v1/policies/fuzz-known', headers: headers('admin') });
  });

  it('PATCH /v1/accounts/{sid}: labels, override, pause', async () => {
    await fuzz(fc.record({ s: sid(), raw: fc.boolean(), b: body(accountPatch()), r: role() }), async ({ s, raw, b, r }) => send({ method: 'PATCH', url: `/v1/accounts/${seg(s, raw)}`, ...payloadOf(b, headers(r)) } as InjectOptions));
  });

  it('POST /v1/accounts/{sid}/credentials and PATCH …/credentials/{name}', async () => {
    await fuzz(fc.record({ s: sid(), n: name(), raw: fc.boolean(), b: body(credentialBody()), patch: fc.boolean(), r: role() }), async ({ s, n, raw, b, patch, r }) => {
      const url = patch ? `/v1/accounts/${seg(s, raw)}/credentials/${seg(n, raw)}` : `/v1/accounts/${seg(s, raw)}/credentials`;
      await send({ method: patch ? 'PATCH' : 'POST', url, ...payloadOf(b, headers(r)) } as InjectOptions);
    });
  });

  it('POST /v1/batches and /v1/batches/{id}/pause|resume|cancel', async () => {
    await fuzz(
      fc.record({ b: body(batchBody()), action: fc.option(fc.constantFrom('pause', 'resume', 'cancel'), { nil: undefined }), id: fc.oneof(fc.constantFrom(...batchIds), fc.uuid(), fc.string({ maxLength: 30 })), key: fc.option(printable, { nil: undefined }), r: role() }),
      async ({ b, action, id, key, r }) => {
        const hdrs = { ...headers(r), ...(key !== undefined ? { 'idempotency-key': key } : {}) };
        await send({ method: 'POST', url: action ? `/v1/batches/${encodeURIComponent(id)}/${action}` : '/v1/batches', ...payloadOf(b, hdrs) } as InjectOptions);
      },
    );
  });

  it('POST /v1/schedule/pause|resume and /v1/compliance/scan', async () => {
    await fuzz(fc.record({ path: fc.constantFrom('/v1/schedule/pause', '/v1/schedule/resume', '/v1/compliance/scan'), b: body(fc.record({ reason: fc.oneof(fc.string({ maxLength: 600 }), fc.anything()) }, { requiredKeys: [] })), r: role(), q: query() }), async ({ path, b, r, q }) =>
      send({ method: 'POST', url: withQuery(path, q), ...payloadOf(b, headers(r)) } as InjectOptions),
    );
  });

  it('POST /v1/accounts/{sid}/keys/{keySid}/delete: key SIDs and confirmations', async () => {
    await fuzz(fc.record({ s: sid(), k: keySid(), raw: fc.boolean(), confirm: fc.oneof(keySid(), fc.anything()), same: fc.boolean(), r: role() }), async ({ s, k, raw, confirm, same, r }) =>
      send({ method: 'POST', url: `/v1/accounts/${seg(s, raw)}/keys/${seg(k, raw)}/delete`, ...payloadOf({ json: { confirm: same ? k : confirm } }, headers(r)) } as InjectOptions),
    );
  });

  it('still serves afterwards; every route refused what it should', async () => {
    expect((await h.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await h.app.inject({ method: 'GET', url: '/v1/compliance', headers: auth('viewer') })).statusCode).toBe(200);
    expect(h.stack.logs.text()).not.toMatch(/unhandled error/);
    for (const [route, counts] of answers.seen) {
      const codes = [...counts.keys()];
      // No sprawl key exists here: the delete's handler refuses (404/409) what passes validation.
      if (route.includes('keySid')) expect(codes.some((c) => c === 404 || c === 409), `${route} never reached its handler`).toBe(true);
      // Whether random requests hit a success path is luck (an admin, a valid name, body and
      // query at once); asserting it made this file fail some runs. Printed, not asserted; the
      // success paths have their own tests (fleet-api, policies, credentials).
      else if (!codes.some((c) => c < 300)) console.log(`fuzz: ${route} never succeeded in this walk (seed ${SEED})`);
      expect(codes.some((c) => c >= 400 && c < 500), `${route} never refused`).toBe(true);
    }
  });
});
