import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine } from '../helpers/engine.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { CREDENTIAL_NAME_RULE } from '../../src/domain/credential.ts';
import type { Runtime } from '../../src/runtime.ts';

/**
 * Issue 13 item 1 at the HTTP surface: `POST /v1/rotations {accountSid}` still rotates the
 * subaccount's `default` credential, `{accountSid, credential}` names another; each credential has
 * its own lock, so rotations of two credentials of one subaccount are in flight together.
 */
describe('managed credentials in the rotations API', () => {
  let stack: Stack;
  let rt: Runtime;
  let app: FastifyInstance;
  const operator = mintToken('ci', 'operator');
  const viewer = mintToken('dash', 'viewer');
  const auth = (t = operator.token) => ({ authorization: `Bearer ${t}` });

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3, drainSeconds: 30 });
    await stack.seedAll();
    // No worker: the HTTP surface only; rotations stay pending and hold their locks.
    rt = await startEngine(stack, { API_TOKENS: `${operator.entry},${viewer.entry}` }, { worker: false });
    app = rt.app!;
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  const start = (payload: Record<string, unknown>, headers: Record<string, string> = {}) => app.inject({ method: 'POST', url: '/v1/rotations', headers: { ...auth(), ...headers }, payload });

  it('rotates the default credential without a name and a named one beside it; a second of one credential is 409 naming it', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const billing = await start({ accountSid: sid, credential: 'billing-prod', reason: 'quarterly' });
    expect(billing.statusCode).toBe(202);
    expect(billing.json()).toMatchObject({ accountSid: sid, credential: 'billing-prod', status: 'pending', step: 'create-secondary' });
    const byDefault = await start({ accountSid: sid });
    expect(byDefault.statusCode).toBe(202);
    expect(byDefault.json()).toMatchObject({ accountSid: sid, credential: 'default' });

    const again = await start({ accountSid: sid, credential: 'billing-prod' });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ id: billing.json().id, error: { code: 'rotation_in_flight' } });
    expect(again.json().error.message).toContain(`${sid}/billing-prod`);
    const defaultAgain = await start({ accountSid: sid, credential: 'default' });
    expect(defaultAgain.statusCode).toBe(409);
    expect(defaultAgain.json()).toMatchObject({ id: byDefault.json().id });
    expect(defaultAgain.json().error.message).toContain(`${sid}/default`);

    const detail = await app.inject({ method: 'GET', url: `/v1/rotations/${billing.json().id}`, headers: auth(viewer.token) });
    expect(detail.json()).toMatchObject({ accountSid: sid, credential: 'billing-prod', holdsSubaccount: true });

    const list = async (query: string) =>
      ((await app.inject({ method: 'GET', url: `/v1/rotations?${query}`, headers: auth(viewer.token) })).json().items as Array<{ id: string; credential: string }>).map((r) => `${r.id} ${r.credential}`);
    expect(await list(`accountSid=${sid}`)).toEqual([`${byDefault.json().id} default`, `${billing.json().id} billing-prod`]);
    expect(await list(`accountSid=${sid}&credential=billing-prod`)).toEqual([`${billing.json().id} billing-prod`]);
    expect(await list(`accountSid=${sid}&credential=default&status=pending`)).toEqual([`${byDefault.json().id} default`]);
    expect(await list('credential=billing-prod')).toEqual([`${billing.json().id} billing-prod`]);
    expect(await list(`accountSid=${sid}&credential=web`)).toEqual([]);

    // The audit entry of each start names the credential.
    const audit = await rt.audit.list({ rotationId: billing.json().id, limit: 10 });
    expect(audit.items.filter((e) => e.action === 'rotation.start').map((e) => [e.status, e.credential])).toEqual([
      [409, 'billing-prod'],
      [202, 'billing-prod'],
    ]);
  });

  it('refuses a bad credential name with 400 naming the field and the rule', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    for (const credential of ['Billing', 'pending', '', 'a/b', '-web', 'x'.repeat(64), { name: 'web' }]) {
      const res = await start({ accountSid: sid, credential });
      expect(res.statusCode, JSON.stringify(credential)).toBe(400);
      const message = res.json().error.message as string;
      expect(message).toMatch(/^field credential must be /);
      if (typeof credential === 'string') expect(message).toContain(CREDENTIAL_NAME_RULE);
    }
    const query = await app.inject({ method: 'GET', url: '/v1/rotations?credential=Pending', headers: auth(viewer.token) });
    expect(query.statusCode).toBe(400);
    expect(query.json().error.message).toBe(`query parameter credential must be ${CREDENTIAL_NAME_RULE}`);
    expect(await rt.repo.inFlightFor(sid)).toBeUndefined();
  });

  it('an Idempotency-Key repeats one start: naming the default credential or not is the same request', async () => {
    const sid = stack.emu.subaccounts[2]!.sid;
    const first = await start({ accountSid: sid }, { 'idempotency-key': 'cred-1' });
    expect(first.statusCode).toBe(202);
    const same = await start({ accountSid: sid, credential: 'default' }, { 'idempotency-key': 'cred-1' });
    expect(same.statusCode).toBe(202);
    expect(same.headers['idempotent-replayed']).toBe('true');
    expect(same.json()).toEqual(first.json());
    const other = await start({ accountSid: sid, credential: 'web' }, { 'idempotency-key': 'cred-1' });
    expect(other.statusCode).toBe(422);
    expect(other.json().error.code).toBe('idempotency_key_reused');
    const web = await start({ accountSid: sid, credential: 'web' }, { 'idempotency-key': 'cred-2' });
    expect(web.statusCode).toBe(202);
    expect(web.json().credential).toBe('web');
  });

  it('the OpenAPI document shows the credential in the start body, the list query and the records', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
    const post = doc.paths['/v1/rotations'].post;
    const body = post.requestBody.content['application/json'].schema;
    expect(body.properties.credential).toMatchObject({ type: 'string', pattern: expect.stringContaining('pending') });
    expect(body.properties.credential.description).toContain(CREDENTIAL_NAME_RULE);
    expect(body.required).toEqual(['accountSid']);
    const params = doc.paths['/v1/rotations'].get.parameters as Array<{ name: string; in: string }>;
    expect(params.filter((p) => p.in === 'query').map((p) => p.name)).toContain('credential');
    expect(post.responses['202'].content['application/json'].schema.properties.credential).toMatchObject({ type: 'string' });
    const detail = doc.paths['/v1/rotations/{id}'].get.responses['200'].content['application/json'].schema;
    expect(detail.properties.credential).toMatchObject({ type: 'string' });
  });
});
