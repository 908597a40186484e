import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions } from 'fastify';
import { STATUSES } from '../../src/domain/rotation.ts';
import { bearer, rotationIn, startApiHarness, type ApiHarness } from './support.ts';

/**
 * Issue 12 item 15: a refused request says which field, where, and what is allowed — built from
 * each route's schema in the one error handler, so every route's query, path and body get it; a
 * known path asked with the wrong method is a 405 with Allow; an action takes an empty body.
 */
describe('validation errors name the field and what is allowed; 405; empty action bodies', () => {
  let h: ApiHarness;
  const sid = 'AC' + 'a'.repeat(32);
  const id = '01890a5d-ac96-774b-bcce-b302099a8057';

  beforeAll(async () => {
    h = await startApiHarness({ logLevel: 'warn' });
  });
  afterAll(async () => h?.close());

  const send = (opts: InjectOptions) => h.app.inject({ ...opts, headers: { ...bearer(h.tokens.admin), ...(opts.headers as Record<string, string>) } });
  const refused = async (opts: InjectOptions): Promise<string> => {
    const res = await send(opts);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'invalid_request', requestId: expect.any(String) });
    return res.json().error.message as string;
  };

  it('an unknown body field names the nearest known one (dryrun → dryRun)', async () => {
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, dryrun: true } })).toBe('unknown field dryrun; did you mean dryRun?');
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, reasn: 'leak' } })).toBe('unknown field reasn; did you mean reason?');
    // Nothing near: the known fields are listed instead.
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, force: true } })).toBe('unknown field force; known fields: accountSid, credential, reason, dryRun, urgent, drainSeconds, confirm');
  });

  it('a missing field that was sent misspelt says so', async () => {
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountsid: sid } })).toBe('field accountSid is required (did you mean it instead of accountsid?)');
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { reason: 'x' } })).toBe('field accountSid is required');
  });

  it('status=done lists the statuses', async () => {
    const message = await refused({ method: 'GET', url: '/v1/rotations?status=done' });
    expect(message).toBe(`query parameter status must be one of ${STATUSES.join(', ')}`);
  });

  it('a malformed SID or id names the field and the form it takes, in the body, the query and the path', async () => {
    const form = 'an account SID: AC followed by 32 lowercase hex digits';
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: 'AC123' } })).toBe(`field accountSid must be ${form}`);
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: 'AC' + 'A'.repeat(32) } })).toBe(`field accountSid must be ${form}`);
    expect(await refused({ method: 'GET', url: '/v1/rotations?accountSid=AC12' })).toBe(`query parameter accountSid must be ${form}`);
    expect(await refused({ method: 'GET', url: '/v1/audit?accountSid=nope' })).toBe(`query parameter accountSid must be ${form}`);
    const idForm = 'a rotation id: a UUID in lowercase hex (8-4-4-4-12 digits)';
    expect(await refused({ method: 'GET', url: '/v1/rotations/nope' })).toBe(`path parameter id must be ${idForm}`);
    expect(await refused({ method: 'POST', url: '/v1/rotations/nope/cancel' })).toBe(`path parameter id must be ${idForm}`);
    expect(await refused({ method: 'GET', url: '/v1/audit?rotationId=x' })).toBe(`query parameter rotationId must be ${idForm}`);
  });

  it('types and ranges say what is allowed', async () => {
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, dryRun: 'yes' } })).toBe('field dryRun must be true or false');
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, reason: '' } })).toBe('field reason must be 1 to 500 characters long');
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: [sid] })).toBe('the body must be a JSON object');
    expect(await refused({ method: 'GET', url: '/v1/rotations?limit=abc' })).toBe('query parameter limit must be an integer');
    expect(await refused({ method: 'GET', url: '/v1/rotations?limit=0' })).toBe('query parameter limit must be an integer from 1 to 200');
    expect(await refused({ method: 'GET', url: '/v1/accounts?limit=501' })).toBe('query parameter limit must be an integer from 1 to 500');
    expect(await refused({ method: 'GET', url: '/v1/audit?since=yesterday' })).toBe('query parameter since must be an ISO 8601 date or date-time');
    expect(await refused({ method: 'POST', url: '/v1/rotations', headers: { 'idempotency-key': 'tab\there' }, payload: { accountSid: sid } })).toBe('header idempotency-key must be 1 to 255 printable ASCII characters');
  });

  it('every route refuses an unknown query parameter by name, suggesting the nearest', async () => {
    expect(await refused({ method: 'GET', url: '/v1/rotations?limt=5' })).toBe('unknown query parameter limt; did you mean limit?');
    expect(await refused({ method: 'GET', url: '/v1/rotations?drop=1' })).toBe('unknown query parameter drop; known query parameters: accountSid, credential, status, limit, cursor');
    expect(await refused({ method: 'GET', url: '/v1/accounts?curser=x' })).toBe('unknown query parameter curser; did you mean cursor?');
    expect(await refused({ method: 'GET', url: '/v1/audit?rotationid=x' })).toBe('unknown query parameter rotationid; did you mean rotationId?');
    expect(await refused({ method: 'GET', url: '/v1/events?lasteventid=1-0' })).toBe('unknown query parameter lasteventid; did you mean lastEventId?');
    // Routes without query parameters refuse one rather than ignore it (a `?force=true` must not look accepted).
    expect(await refused({ method: 'GET', url: `/v1/rotations/${id}?verbose=1` })).toBe('unknown query parameter verbose: this request takes no query parameters');
    expect(await refused({ method: 'POST', url: `/v1/rotations/${id}/cancel?force=true` })).toBe('unknown query parameter force: this request takes no query parameters');
  });

  it('does not echo what was sent, and quotes odd field names', async () => {
    const secretish = 'sk_live_' + 'z'.repeat(30);
    const message = await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: secretish } });
    expect(message).not.toContain(secretish);
    expect(await refused({ method: 'POST', url: '/v1/rotations', payload: { accountSid: sid, 'a b"c': 1 } })).toBe('unknown field "a b\\"c"; known fields: accountSid, credential, reason, dryRun, urgent, drainSeconds, confirm');
  });

  describe('405 for a known path with the wrong method, 404 for an unknown path', () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', '/v1/rotations', 'GET, HEAD, POST'],
      ['DELETE', `/v1/rotations/${id}`, 'GET, HEAD'],
      ['GET', `/v1/rotations/${id}/cancel`, 'POST'],
      ['PATCH', `/v1/rotations/${id}/retry`, 'POST'],
      ['POST', '/v1/accounts', 'GET, HEAD'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/v1/events', 'GET, HEAD'],
    ];
    for (const [method, url, allow] of cases) {
      it(`${method} ${url.replace(id, '{id}')} → 405, Allow: ${allow}`, async () => {
        const res = await send({ method: method as 'GET', url });
        expect(res.statusCode).toBe(405);
        expect(res.headers.allow).toBe(allow);
        expect(res.json().error).toMatchObject({ code: 'method_not_allowed', message: `${method} is not allowed on ${url}; allowed: ${allow}`, requestId: expect.any(String) });
      });
    }

    it('answers 405 before authentication too (the methods are public, as in /docs/json)', async () => {
      const res = await h.app.inject({ method: 'DELETE', url: '/v1/rotations' });
      expect(res.statusCode).toBe(405);
      expect(res.headers.allow).toBe('GET, HEAD, POST');
    });

    it('an unknown path stays 404, whatever the method', async () => {
      for (const [method, url] of [['GET', '/v1/nothing'], ['DELETE', '/v1/nothing'], ['GET', `/v1/rotations/${id}/explode`], ['POST', '/v1/rotations/'], ['GET', '/nothing'], ['GET', '/ui/nothing']] as const) {
        const res = await send({ method, url });
        expect(res.statusCode, `${method} ${url}`).toBe(404);
        expect(res.headers.allow).toBeUndefined();
        expect(res.json().error.code).toBe('not_found');
      }
    });
  });

  describe('an action takes no body, an empty JSON body, or {}', () => {
    const bodies: Array<[string, Partial<InjectOptions>]> = [
      ['no body at all', {}],
      ['Content-Type: application/json with no body', { headers: { 'content-type': 'application/json' }, payload: '' }],
      ['{}', { payload: {} }],
    ];
    for (const action of ['cancel', 'rollback', 'retry'] as const) {
      for (const [what, opts] of bodies) {
        it(`${action}: ${what}`, async () => {
          const n = Math.floor(Math.random() * 2 ** 48).toString(16).padStart(32, '0');
          const rec = await rotationIn(h.rt, `AC${n}`, action === 'retry' ? 'failed' : 'waiting', { step: 'promote' });
          const res = await send({ method: 'POST', url: `/v1/rotations/${rec.id}/${action}`, ...opts, headers: { ...bearer(h.tokens.operator), ...(opts.headers as Record<string, string>) } });
          expect(res.statusCode, res.body).toBe(200);
          expect(res.json().id).toBe(rec.id);
        });
      }
    }

    it('a field in an action body is refused by name', async () => {
      const rec = await rotationIn(h.rt, 'AC' + 'e'.repeat(32), 'waiting', { step: 'promote' });
      expect(await refused({ method: 'POST', url: `/v1/rotations/${rec.id}/cancel`, payload: { force: true } })).toBe('unknown field force: this request takes no fields (send no body, or {})');
      expect(await refused({ method: 'POST', url: `/v1/rotations/${rec.id}/cancel`, payload: [] })).toBe('the body must be a JSON object or empty');
      expect((await h.rt.repo.get(rec.id))?.undo).toBeUndefined();
    });

    it('a route that needs a body still refuses an empty one', async () => {
      const res = await send({ method: 'POST', url: '/v1/rotations', headers: { 'content-type': 'application/json' }, payload: '' });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.code).toBe('invalid_json');
    });

    it('the OpenAPI document says an action body is optional', async () => {
      const doc = (await h.app.inject({ method: 'GET', url: '/docs/json' })).json();
      for (const action of ['cancel', 'rollback', 'retry']) expect(doc.paths[`/v1/rotations/{id}/${action}`].post.requestBody.required).toBe(false);
      expect(doc.paths['/v1/rotations'].post.requestBody.required).toBe(true);
    });
  });
});
