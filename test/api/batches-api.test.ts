import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request as httpRequest } from 'node:http';
import { waitFor } from '../helpers/stack.ts';
import { expectSettled } from '../helpers/engine.ts';
import { bearer, startApiHarness, type ApiHarness } from './support.ts';

/** The batch routes over HTTP, with a worker running the batches against the Twilio emulator. */
describe('batches API', () => {
  let h: ApiHarness;
  let sids: string[];
  const body = (extra: Record<string, unknown> = {}) => ({ selector: 'all', reason: 'quarterly rotation', waves: { canary: 1, step: 50, bakeSeconds: 0 }, maxFailureRate: 0, ...extra });

  beforeAll(async () => {
    h = await startApiHarness({ worker: true, stack: { subaccounts: 4 } });
    sids = h.stack.emu.subaccounts.map((s) => s.sid);
    await h.stack.seedAll();
    // The inventory as the subaccount sync and credential bootstrap leave it.
    await h.rt.accounts.upsertMany(sids.map((s) => ({ accountSid: s, friendlyName: s, status: 'active', ownerAccountSid: h.stack.emu.parent.accountSid })));
    for (const s of sids) await h.rt.credentials.ensure({ accountSid: s, name: 'default' });
    await h.rt.accounts.patch(sids[0]!, { labels: ['hipaa'] });
  });
  afterAll(async () => h?.close());

  const post = (url: string, payload: unknown, token = h.tokens.operator, headers: Record<string, string> = {}) => h.app.inject({ method: 'POST', url, headers: { ...bearer(token), ...headers }, payload: payload as object });
  const get = (url: string) => h.app.inject({ method: 'GET', url, headers: bearer(h.tokens.viewer) });

  it('refuses a bad request with 400 naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [body({ selector: { labels: ['pci'] } }), 'selector.labels: matches no credential that can be rotated'],
      [body({ selector: 'some' }), 'selector: must be "all" or an object with exactly one of labels, accountSids, credentials, not "some"'],
      [body({ waves: { canary: '10', step: 10, bakeSeconds: 0 } }), 'waves.canary: must be a number of credentials (e.g. 5) or a percentage of the selection (e.g. "10%"), not "10"'],
      [body({ waves: { canary: 1, step: 0, bakeSeconds: 0 } }), 'waves.step: must be from 1 to 100 (percent of the selection), not 0'],
      [body({ maxFailureRate: 20 }), 'maxFailureRate: must be from 0 to 1 (a share, not a percentage), not 20'],
      [body({ selector: { accountSids: ['AC' + 'f'.repeat(32)] } }), `selector.accountSids[0]: AC${'f'.repeat(32)} is not a managed subaccount`],
    ];
    for (const [payload, message] of cases) {
      const res = await post('/v1/batches', payload);
      expect(res.statusCode, message).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'invalid_request', message });
    }
    expect((await post('/v1/batches', body(), h.tokens.viewer)).statusCode).toBe(403);
    expect((await h.rt.batches.list({ limit: 10 })).items).toHaveLength(0);
  });

  it('a filter selector selects what GET /v1/credentials lists with those filters; preview says how many without starting anything', async () => {
    const listed = async (q: string) => (await get(`/v1/credentials?limit=500&${q}`)).json().items.map((c: { id: string }) => c.id) as string[];
    for (const [filter, q] of [[{ label: 'hipaa' }, 'label=hipaa'], [{ q: sids[1]! }, `q=${sids[1]}`], [{ failed: false }, 'failed=false']] as const) {
      const res = await post('/v1/batches/preview', body({ selector: { filter } }));
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toEqual({ total: (await listed(q)).length, leftOut: {} });
    }
    for (const [filter, message] of [
      [{ overdue: 'yes' }, 'selector.filter.overdue: must be true or false, not "yes"'],
      [{ lable: 'x' }, 'selector.filter.lable'],
      [{ label: 'nobody-has-it' }, 'selector.filter: matches no credential that can be rotated'],
    ] as const) {
      const res = await post('/v1/batches/preview', body({ selector: { filter } }));
      expect(res.statusCode, message).toBe(400);
      expect(res.json().error.message).toContain(message);
    }
    expect((await post('/v1/batches/preview', body(), h.tokens.viewer)).statusCode).toBe(403);
    expect((await h.rt.batches.list({ limit: 10 })).items).toHaveLength(0);
  });

  it('creates a batch (202, Location), runs it in waves to completion, and shows it; its changes reach /v1/events as `event: batch`', async () => {
    const url = await h.app.listen({ host: '127.0.0.1', port: 0 });
    const frames: string[] = [];
    const sse = httpRequest(`${url}/v1/events`, { headers: { accept: 'text/event-stream', ...bearer(h.tokens.viewer) } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (c: string) => frames.push(c));
    });
    sse.end();
    await waitFor('the event stream to connect', async () => frames.join('').includes(': connected'));

    const res = await post('/v1/batches', body({ selector: { labels: ['hipaa'] } }));
    expect(res.statusCode).toBe(202);
    const b = res.json();
    expect(res.headers.location).toBe(`/v1/batches/${b.id}`);
    expect(b).toMatchObject({ status: 'planned', total: 1, reason: 'quarterly rotation', requestedBy: 'ci', progress: [{ wave: 1, size: 1, started: 0 }] });

    const done = await waitFor('the batch to complete', async () => {
      const r = (await get(`/v1/batches/${b.id}`)).json();
      return r.finishedAt ? r : undefined;
    });
    expect(done).toMatchObject({ status: 'completed', counts: { succeeded: 1, failed: 0, inFlight: 0 }, currentWave: 1, halt: null });
    expect(done.history.map((e: { type: string }) => e.type)).toEqual(['planned', 'started', 'wave-started', 'wave-ended', 'completed']);
    expect((await expectSettled(h.stack, sids[0]!)).problems).toEqual([]);
    const rotation = (await h.rt.repo.list({ accountSid: sids[0]!, limit: 5 })).items[0]!;
    expect(rotation).toMatchObject({ trigger: 'batch', batchId: b.id, status: 'succeeded', reason: `batch ${b.id}: quarterly rotation` });

    await waitFor('the completed event on the stream', async () => frames.join('').includes('"event":"completed"'));
    sse.destroy();
    const text = frames.join('');
    const batchFrames = text.split('\n\n').filter((f) => f.includes('event: batch'));
    expect(batchFrames.map((f) => JSON.parse(f.slice(f.indexOf('data: ') + 6)).event)).toEqual(['planned', 'started', 'wave-started', 'wave-ended', 'completed']);
    expect(text).toMatch(/event: rotation\ndata: \{"type":"rotation"/);

    const list = (await get('/v1/batches?limit=10')).json();
    expect(list.items.map((x: { id: string }) => x.id)).toContain(b.id);
    expect(list.items[0].history).toBeUndefined();
  });

  it('honours Idempotency-Key; pause/resume/cancel answer 409 with the reason when the state forbids them; all audited with the batch id', async () => {
    const key = { 'idempotency-key': 'batch-once' };
    const payload = body({ dryRun: true, selector: { accountSids: [sids[1], sids[2]] } });
    const first = await post('/v1/batches', payload, h.tokens.operator, key);
    const again = await post('/v1/batches', payload, h.tokens.operator, key);
    expect(first.statusCode).toBe(202);
    expect(again.statusCode).toBe(202);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json().id).toBe(first.json().id);
    expect((await post('/v1/batches', body({ dryRun: true }), h.tokens.operator, key)).statusCode).toBe(422);
    const id = first.json().id as string;

    await waitFor('the dry-run batch to finish', async () => (await h.rt.batches.get(id))?.finishedAt);
    const after = (await get(`/v1/batches/${id}`)).json();
    expect(after).toMatchObject({ status: 'completed', dryRun: true, counts: { succeeded: 2 } });
    for (const action of ['pause', 'resume', 'cancel']) {
      const r = await post(`/v1/batches/${id}/${action}`, undefined);
      expect(r.statusCode, action).toBe(409);
      expect(r.json().error).toMatchObject({ code: 'action_not_allowed', message: `${action} refused: cannot ${action}: the batch is completed` });
    }
    expect((await post('/v1/batches/01234567-89ab-7def-8123-456789abcdef/pause', undefined)).statusCode).toBe(404);

    const audit = (await h.rt.audit.list({ limit: 200 })).items.filter((e) => e.batchId === id);
    expect(audit.map((e) => [e.action, e.status])).toEqual(
      expect.arrayContaining([
        ['batch.create', 202],
        ['batch.pause', 409],
        ['batch.resume', 409],
        ['batch.cancel', 409],
      ]),
    );
    expect(audit.filter((e) => e.action.startsWith('batch.') && e.rotationId !== undefined)).toEqual([]);
  });
});
