import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine } from '../helpers/engine.ts';
import { mintToken } from '../../src/api/tokens.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { FastifyInstance, InjectOptions } from 'fastify';

describe('rotations API', () => {
  let stack: Stack;
  let rt: Runtime;
  let app: FastifyInstance;
  const operator = mintToken('ci', 'operator');
  const viewer = mintToken('dash', 'viewer');
  const auth = (t = operator.token) => ({ authorization: `Bearer ${t}` });

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 2, drainSeconds: 30 });
    await stack.seedAll();
    // No worker: these tests are about the HTTP surface; rotations stay pending.
    rt = await startEngine(stack, { API_TOKENS: `${operator.entry},${viewer.entry}` }, { worker: false });
    app = rt.app!;
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  const sid = () => stack.emu.subaccounts[0]!.sid;

  it('starts a rotation (202), returns the in-flight one on a second start (409 with its id), and shows it', async () => {
    const first = await app.inject({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: sid(), reason: 'quarterly' } });
    expect(first.statusCode).toBe(202);
    const body = first.json();
    expect(body).toMatchObject({ accountSid: sid(), status: 'pending', step: 'create-secondary' });
    expect(first.headers.location).toBe(`/v1/rotations/${body.id}`);

    const second = await app.inject({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: sid() } });
    expect(second.statusCode).toBe(409);
    expect(second.json()).toMatchObject({ id: body.id, error: { code: 'rotation_in_flight' } });

    const detail = await app.inject({ method: 'GET', url: `/v1/rotations/${body.id}`, headers: auth(viewer.token) });
    expect(detail.statusCode).toBe(200);
    expect(detail.json()).toMatchObject({ id: body.id, reason: 'quarterly', history: [{ status: 'created' }] });

    const list = await app.inject({ method: 'GET', url: `/v1/rotations?accountSid=${sid()}&limit=10`, headers: auth(viewer.token) });
    expect(list.json().items.map((r: { id: string }) => r.id)).toContain(body.id);
  });

  it('cancels a rotation before delete-old, and refuses (409) what no longer applies', async () => {
    const other = stack.emu.subaccounts[1]!.sid;
    const started = (await app.inject({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: other } })).json();
    const cancel = await app.inject({ method: 'POST', url: `/v1/rotations/${started.id}/cancel`, headers: auth() });
    expect(cancel.statusCode).toBe(200);
    expect(cancel.json().undo).toMatchObject({ reason: 'cancel' });
    const again = await app.inject({ method: 'POST', url: `/v1/rotations/${started.id}/rollback`, headers: auth() });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.message).toMatch(/already being undone/);
  });

  it('pages newest first with an opaque cursor', async () => {
    const res1 = await app.inject({ method: 'GET', url: '/v1/rotations?limit=1', headers: auth(viewer.token) });
    expect(res1.headers['content-type']).toBe('application/json; charset=utf-8');
    const page1 = res1.json();
    expect(page1.items).toHaveLength(1);
    expect(page1.nextCursor).toBeTruthy();
    const page2 = (await app.inject({ method: 'GET', url: `/v1/rotations?limit=1&cursor=${page1.nextCursor}`, headers: auth(viewer.token) })).json();
    expect(page2.items).toHaveLength(1);
    expect(page2.items[0].id).not.toBe(page1.items[0].id);
    expect(page2.items[0].createdAt <= page1.items[0].createdAt).toBe(true);
  });

  describe('bad input gets the right 4xx with an error body, and the process keeps serving', () => {
    const cases: Array<[string, () => InjectOptions, number, string]> = [
      ['malformed accountSid', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: 'AC123' } }), 400, 'invalid_request'],
      ['uppercase hex accountSid', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: 'AC' + 'A'.repeat(32) } }), 400, 'invalid_request'],
      ['unknown field', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: sid(), force: true } }), 400, 'invalid_request'],
      ['wrong type', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: sid(), dryRun: 'yes' } }), 400, 'invalid_request'],
      ['missing body', () => ({ method: 'POST', url: '/v1/rotations', headers: { ...auth(), 'content-type': 'application/json' }, payload: '' }), 400, 'invalid_json'],
      ['malformed JSON', () => ({ method: 'POST', url: '/v1/rotations', headers: { ...auth(), 'content-type': 'application/json' }, payload: '{"accountSid":' }), 400, 'invalid_json'],
      ['oversized body', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(), payload: { accountSid: sid(), reason: 'x'.repeat(100_000) } }), 413, 'body_too_large'],
      ['wrong content type', () => ({ method: 'POST', url: '/v1/rotations', headers: { ...auth(), 'content-type': 'text/plain' }, payload: 'hello' }), 415, 'unsupported_media_type'],
      ['no token', () => ({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid() } }), 401, 'unauthorized'],
      ['wrong token', () => ({ method: 'GET', url: '/v1/rotations', headers: auth('rot_not-a-real-token') }), 401, 'unauthorized'],
      ['not a bearer header', () => ({ method: 'GET', url: '/v1/rotations', headers: { authorization: 'Basic abc' } }), 401, 'unauthorized'],
      ['viewer cannot start', () => ({ method: 'POST', url: '/v1/rotations', headers: auth(viewer.token), payload: { accountSid: sid() } }), 403, 'forbidden'],
      ['unknown rotation id', () => ({ method: 'GET', url: '/v1/rotations/01890a5d-ac96-774b-bcce-b302099a8057', headers: auth() }), 404, 'rotation_not_found'],
      ['malformed rotation id', () => ({ method: 'GET', url: '/v1/rotations/../../etc', headers: auth() }), 404, 'not_found'],
      ['bad id format', () => ({ method: 'GET', url: '/v1/rotations/nope', headers: auth() }), 400, 'invalid_request'],
      ['cancel unknown', () => ({ method: 'POST', url: '/v1/rotations/01890a5d-ac96-774b-bcce-b302099a8057/cancel', headers: auth() }), 404, 'rotation_not_found'],
      ['bad limit', () => ({ method: 'GET', url: '/v1/rotations?limit=100000', headers: auth() }), 400, 'invalid_request'],
      ['bad status filter', () => ({ method: 'GET', url: '/v1/rotations?status=exploded', headers: auth() }), 400, 'invalid_request'],
      ['forged cursor', () => ({ method: 'GET', url: '/v1/rotations?cursor=Zm9v', headers: auth() }), 400, 'invalid_cursor'],
      ['unknown query field', () => ({ method: 'GET', url: '/v1/rotations?drop=1', headers: auth() }), 400, 'invalid_request'],
      ['unknown route', () => ({ method: 'GET', url: '/v1/nothing', headers: auth() }), 404, 'not_found'],
    ];
    for (const [name, req, status, code] of cases) {
      it(name, async () => {
        const res = await app.inject(req());
        expect(res.statusCode).toBe(status);
        expect(res.json().error).toMatchObject({ code, message: expect.any(String), requestId: expect.any(String) });
        expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      });
    }
  });

  it('health is public; readiness reports Redis and the store', async () => {
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ checks: { redis: 'ok', store: 'ok' } });
  });
});
