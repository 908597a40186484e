/**
 * The Twilio emulator, driven through the real `twilio` package: if twilio-node can't page,
 * authenticate or parse errors against it, neither can Rotator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import type { TwilioEmulator } from './twilio/server.ts';
import { startTwilioEmulator } from './twilio/server.ts';
import { waitFor } from '../helpers/stack.ts';

/** Sends every Twilio host to the emulator, path unchanged (what TWILIO_BASE_URL does). */
class EmulatorRequestClient extends twilio.RequestClient {
  constructor(private readonly origin: string) {
    super();
  }

  override request<TData>(opts: RequestClient.RequestOptions<TData>) {
    const uri = String(opts.uri).replace(/^https:\/\/(api|iam|accounts)\.twilio\.com/, this.origin);
    return super.request<TData>({ ...opts, uri });
  }
}

interface TwilioErrorLike {
  status?: number;
  code?: number | string;
  message?: string;
}

async function failure(p: Promise<unknown>): Promise<TwilioErrorLike> {
  try {
    await p;
  } catch (err) {
    return err as TwilioErrorLike;
  }
  throw new Error('expected the call to fail');
}

const SID = (prefix: string) => new RegExp(`^${prefix}[0-9a-f]{32}$`);

describe('Twilio emulator (through twilio-node)', () => {
  let emu: TwilioEmulator;
  let http: EmulatorRequestClient;
  let parent: twilio.Twilio;
  const client = (username: string, password: string, accountSid?: string): twilio.Twilio =>
    twilio(username, password, { httpClient: http, ...(accountSid ? { accountSid } : {}) });
  const sub = (i: number) => {
    const s = emu.subaccounts[i];
    if (!s) throw new Error(`no subaccount ${i}`);
    return s;
  };

  beforeAll(async () => {
    emu = await startTwilioEmulator({ subaccounts: 3, seed: 42 });
    http = new EmulatorRequestClient(emu.url);
    parent = client(emu.parent.accountSid, emu.parent.authToken);
  });

  afterAll(async () => {
    await emu?.close();
  });

  it('lists the parent itself alongside its subaccounts, each with its auth token', async () => {
    const accounts = await parent.api.v2010.accounts.list();
    const self = accounts.find((a) => a.sid === emu.parent.accountSid);
    expect(self?.ownerAccountSid).toBe(emu.parent.accountSid);
    const subs = accounts.filter((a) => a.ownerAccountSid === emu.parent.accountSid && a.sid !== a.ownerAccountSid);
    expect(subs.map((a) => a.friendlyName)).toEqual(['Customer 1', 'Customer 2', 'Customer 3']);
    for (const a of subs) {
      expect(a.sid).toMatch(SID('AC'));
      expect(a.authToken).toBe(emu.subaccounts.find((s) => s.sid === a.sid)?.authToken);
      expect(a.status).toBe('active');
      expect(a.type).toBe('Full');
      expect(a.dateCreated.getTime()).not.toBeNaN();
    }
  });

  it('pages with PageSize=2 by following next_page_uri until it is null', async () => {
    const before = emu.stats().byRoute['GET /Accounts.json'] ?? 0;
    const listed = await parent.api.v2010.accounts.list({ pageSize: 2 });
    expect(listed).toHaveLength(4);
    expect(new Set(listed.map((a) => a.sid)).size).toBe(4);
    expect((emu.stats().byRoute['GET /Accounts.json'] ?? 0) - before).toBe(2);

    const seen: string[] = [];
    await parent.api.v2010.accounts.each({ pageSize: 2 }, (a) => {
      seen.push(a.sid);
    });
    expect(seen).toEqual(listed.map((a) => a.sid));

    const first = await parent.api.v2010.accounts.page({ pageSize: 2 });
    expect(first.nextPageUrl).toMatch(/^https:\/\/api\.twilio\.com\/2010-04-01\/Accounts\.json\?.*PageToken=PA/);
    const second = await first.nextPage();
    expect(second?.instances.map((a) => a.sid)).toEqual(listed.slice(2).map((a) => a.sid));
    expect(second?.nextPageUrl).toBeUndefined();
    const back = await second?.previousPage();
    expect(back?.instances.map((a) => a.sid)).toEqual(listed.slice(0, 2).map((a) => a.sid));

    const filtered = await parent.api.v2010.accounts.list({ friendlyName: 'Customer 2', status: 'active' });
    expect(filtered.map((a) => a.sid)).toEqual([sub(1).sid]);
  });

  it('creates, lists, fetches, renames and deletes keys; the secret appears only at creation', async () => {
    const keys = parent.api.v2010.accounts(sub(0).sid).keys;
    const created = await parent.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: 'rotator:01TEST' });
    expect(created.sid).toMatch(SID('SK'));
    expect(created.secret).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(created.friendlyName).toBe('rotator:01TEST');
    expect(emu.issuedSecrets()).toContain(created.secret);

    const listed = await keys.list();
    expect(listed.map((k) => k.sid)).toContain(created.sid);

    // twilio-node's KeyInstance drops unknown fields, so check the wire for a leaked secret.
    const base = `https://api.twilio.com/2010-04-01/Accounts/${sub(0).sid}/Keys`;
    const rawList = await parent.request({ method: 'get', uri: `${base}.json` });
    expect(JSON.stringify(rawList.body)).not.toContain(created.secret);
    const rawFetch = await parent.request({ method: 'get', uri: `${base}/${created.sid}.json` });
    expect(rawFetch.statusCode).toBe(200);
    expect(rawFetch.body).not.toHaveProperty('secret');

    const renamed = await keys(created.sid).update({ friendlyName: 'renamed' });
    expect(renamed.friendlyName).toBe('renamed');
    expect((await keys(created.sid).fetch()).friendlyName).toBe('renamed');

    expect(await keys(created.sid).remove()).toBe(true);
    const gone = await failure(keys(created.sid).fetch());
    expect([gone.status, gone.code]).toEqual([404, 20404]);

    const tooLong = await failure(
      parent.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: 'x'.repeat(65) }),
    );
    expect(tooLong.status).toBe(400);
    expect(tooLong.code).toBe(20001);
  });

  it('pages keys even when an item of the previous page was deleted in between', async () => {
    const acct = parent.api.v2010.accounts(sub(2).sid);
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await acct.newKeys.create({ friendlyName: `k${i}` })).sid);
    const page1 = await acct.keys.page({ pageSize: 2 });
    const lastOfPage1 = page1.instances[1]?.sid ?? '';
    await acct.keys(lastOfPage1).remove();
    const rest: string[] = [];
    for (let p = await page1.nextPage(); p; p = await p.nextPage()) rest.push(...p.instances.map((k) => k.sid));
    expect([...page1.instances.map((k) => k.sid), ...rest]).toEqual(made);
  });

  it('authenticates with an API key: a Standard key may send messages but not touch Keys or Accounts', async () => {
    const key = await parent.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: 'app' });
    const app = client(key.sid, key.secret, sub(0).sid);

    const msg = await app.messages.create({ to: '+15005550006', from: '+15005550001', body: 'hello' });
    expect(msg.sid).toMatch(SID('SM'));
    expect(msg.accountSid).toBe(sub(0).sid);
    expect(msg.status).toBe('queued');
    expect((await app.messages(msg.sid).fetch()).body).toBe('hello');
    expect((await app.messages.list({ limit: 5 })).map((m) => m.sid)).toContain(msg.sid);

    for (const denied of [
      app.api.v2010.accounts(sub(0).sid).keys.list(),
      app.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: 'nope' }),
      app.api.v2010.accounts(sub(0).sid).fetch(),
      app.api.v2010.accounts.list(),
    ]) {
      const err = await failure(denied);
      expect([err.status, err.code]).toEqual([401, 20003]);
    }
    // Only its own account, even for non-admin resources.
    const other = await failure(
      app.api.v2010.accounts(sub(1).sid).messages.create({ to: '+15005550006', from: '+15005550001', body: 'x' }),
    );
    expect([other.status, other.code]).toEqual([401, 20003]);

    const missing = await failure(app.messages.create({ to: '+15005550006', from: '+15005550001' } as never));
    expect([missing.status, missing.code]).toEqual([400, 21602]);
  });

  it('lets the parent Main key manage subaccount keys', async () => {
    const main = client(emu.parent.mainKey.sid, emu.parent.mainKey.secret, emu.parent.accountSid);
    const created = await main.api.v2010.accounts(sub(1).sid).newKeys.create({ friendlyName: 'via-main' });
    expect(created.secret).toBeTruthy();
    expect((await main.api.v2010.accounts.list()).length).toBeGreaterThanOrEqual(4);
    await main.api.v2010.accounts(sub(1).sid).keys(created.sid).remove();
  });

  it('keeps subaccount credentials inside their own subaccount', async () => {
    const c = client(sub(0).sid, sub(0).authToken);
    expect((await c.api.v2010.accounts(sub(0).sid).keys.list()).length).toBeGreaterThanOrEqual(0);
    expect((await c.api.v2010.accounts.list()).map((a) => a.sid)).toEqual([sub(0).sid]);
    const err = await failure(c.api.v2010.accounts(sub(1).sid).keys.list());
    expect([err.status, err.code]).toEqual([401, 20003]);
    const parentErr = await failure(c.api.v2010.accounts(emu.parent.accountSid).fetch());
    expect([parentErr.status, parentErr.code]).toEqual([401, 20003]);
  });

  it('answers 401 20003 for a deleted key and a rotated auth token, and 404 20404 for unknown sids', async () => {
    const key = await parent.api.v2010.accounts(sub(1).sid).newKeys.create({ friendlyName: 'doomed' });
    const app = client(key.sid, key.secret, sub(1).sid);
    await app.api.v2010.accounts(sub(1).sid).balance.fetch();
    await parent.api.v2010.accounts(sub(1).sid).keys(key.sid).remove();
    const err = await failure(app.api.v2010.accounts(sub(1).sid).balance.fetch());
    expect(err.status === 401 && err.code === 20003).toBe(true);

    const oldToken = sub(2).authToken;
    const { authToken: newToken } = emu.revokeCredential(sub(2).sid);
    expect(newToken).toBeDefined();
    expect(newToken).not.toBe(oldToken);
    const stale = await failure(client(sub(2).sid, oldToken).api.v2010.accounts(sub(2).sid).fetch());
    expect([stale.status, stale.code]).toEqual([401, 20003]);
    expect((await client(sub(2).sid, sub(2).authToken).api.v2010.accounts(sub(2).sid).fetch()).sid).toBe(sub(2).sid);
    expect(emu.restoreCredential(sub(2).sid)).toBe(true);
    expect(sub(2).authToken).toBe(oldToken);

    const bad = await failure(client(emu.parent.accountSid, 'wrong').api.v2010.accounts.list());
    expect([bad.status, bad.code]).toEqual([401, 20003]);

    const noKey = await failure(parent.api.v2010.accounts(sub(0).sid).keys(`SK${'0'.repeat(32)}`).fetch());
    expect([noKey.status, noKey.code]).toEqual([404, 20404]);
    expect(noKey.message).toBe(
      `The requested resource /2010-04-01/Accounts/${sub(0).sid}/Keys/SK${'0'.repeat(32)}.json was not found`,
    );
    const noAccount = await failure(parent.api.v2010.accounts(`AC${'0'.repeat(32)}`).fetch());
    expect([noAccount.status, noAccount.code]).toEqual([404, 20404]);
  });

  it('closes a subaccount: its credentials and its keys stop working, the parent still sees it', async () => {
    const created = await parent.api.v2010.accounts.create({ friendlyName: 'Churned customer' });
    expect(created.ownerAccountSid).toBe(emu.parent.accountSid);
    expect(emu.subaccounts.map((s) => s.sid)).toContain(created.sid);
    const own = client(created.sid, created.authToken);
    await own.api.v2010.accounts(created.sid).fetch();

    await parent.api.v2010.accounts(created.sid).update({ status: 'closed' });
    const err = await failure(own.api.v2010.accounts(created.sid).fetch());
    expect([err.status, err.code]).toEqual([401, 20003]);
    const keyErr = await failure(parent.api.v2010.accounts(created.sid).newKeys.create({ friendlyName: 'x' }));
    expect([keyErr.status, keyErr.code]).toEqual([401, 20003]);
    expect((await parent.api.v2010.accounts(created.sid).fetch()).status).toBe('closed');
    const closed = await parent.api.v2010.accounts.list({ status: 'closed' });
    expect(closed.map((a) => a.sid)).toEqual([created.sid]);
    const reopen = await failure(parent.api.v2010.accounts(created.sid).update({ status: 'active' }));
    expect(reopen.status).toBe(400);
  });

  it('refuses requests beyond the concurrency limit with 429 20429, without processing them', async () => {
    // The first two are held until the other 18 have come and been refused. (With a 50 ms latency
    // they were done before a busy machine had sent the rest, which then got in.)
    emu.setFaults({ concurrency: 2, latencyMs: 60_000 });
    emu.resetStats();
    try {
      const burst = Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          parent.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: `burst-${i}` }),
        ),
      );
      await waitFor('18 of the burst to be refused', async () => emu.stats().rejected429 >= 18, 50_000, 5);
      // Released as they reach their latency (one may still be reading its body).
      let released = 0;
      await waitFor('the two admitted requests to be released', async () => (released += emu.endLatency()) >= 2, 50_000, 5);
      const results = await burst;
      expect(released).toBe(2);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as TwilioErrorLike] : []));
      expect(ok).toHaveLength(2);
      expect(refused).toHaveLength(18);
      for (const e of refused) expect([e.status, e.code]).toEqual([429, 20429]);
      expect(emu.stats().rejected429).toBe(18);
      expect(emu.stats().inFlightPeak).toBe(2);
      expect(emu.listKeys(sub(0).sid).filter((k) => k.friendlyName.startsWith('burst-'))).toHaveLength(2);
    } finally {
      emu.setFaults({ concurrency: null, latencyMs: 0 });
      emu.endLatency();
    }
  });

  it('injects failNext faults: 500 and reset before processing, reset after processing', async () => {
    const acct = parent.api.v2010.accounts(sub(1).sid);
    const count = () => emu.listKeys(sub(1).sid).length;
    const before = count();

    emu.setFaults({ failNext: { count: 1, status: 500 } });
    const e500 = await failure(acct.newKeys.create({ friendlyName: 'f500' }));
    expect([e500.status, e500.code]).toEqual([500, 20500]);
    expect(count()).toBe(before);

    emu.setFaults({ failNext: { count: 1, status: 'reset', match: { method: 'POST', path: '/Keys\\.json$' } } });
    await acct.keys.list(); // not matched: the rule waits for the POST
    const reset = await failure(acct.newKeys.create({ friendlyName: 'reset' }));
    expect(reset.status).toBeUndefined();
    expect(reset.code).toBe('ECONNRESET');
    expect(count()).toBe(before);

    emu.setFaults({ failNext: { count: 1, status: 'reset', phase: 'after' } });
    await failure(acct.newKeys.create({ friendlyName: 'lost-answer' }));
    expect(emu.listKeys(sub(1).sid).map((k) => k.friendlyName)).toContain('lost-answer');

    const ok = await acct.newKeys.create({ friendlyName: 'fine' });
    expect(ok.secret).toBeTruthy();
    expect(emu.faults().failNext).toEqual([]);
  });

  it('holds a timeout fault open and then drops it', async () => {
    emu.setFaults({ timeoutMs: 150, failNext: { count: 1, status: 'timeout' } });
    const t0 = Date.now();
    const err = await failure(parent.api.v2010.accounts(sub(0).sid).fetch());
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(err.status).toBeUndefined();
    emu.setFaults({ timeoutMs: 30_000 });
  });

  it('records who called what in the auth log', async () => {
    const since = emu.authLog().at(-1)?.seq ?? 0;
    const key = await parent.api.v2010.accounts(sub(0).sid).newKeys.create({ friendlyName: 'logged' });
    const main = client(emu.parent.mainKey.sid, emu.parent.mainKey.secret, emu.parent.accountSid);
    await main.api.v2010.accounts(sub(0).sid).keys.list();
    await client(key.sid, key.secret, sub(0).sid).api.v2010.accounts(sub(0).sid).balance.fetch();
    await failure(client(key.sid, 'wrong-secret', sub(0).sid).api.v2010.accounts(sub(0).sid).balance.fetch());

    const entries = emu.authLog(since);
    expect(entries.map((e) => [e.principal, e.principalType, e.accountSid, e.method, e.status])).toEqual([
      [emu.parent.accountSid, 'auth_token', sub(0).sid, 'POST', 201],
      [emu.parent.mainKey.sid, 'main_key', sub(0).sid, 'GET', 200],
      [key.sid, 'standard_key', sub(0).sid, 'GET', 200],
      [key.sid, 'standard_key', sub(0).sid, 'GET', 401],
    ]);
    expect(entries[0]?.path).toBe(`/2010-04-01/Accounts/${sub(0).sid}/Keys.json`);
  });

  it('exposes its controls over HTTP under /__emulator', async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${emu.url}/__emulator/${path}`, { method: 'POST', body: JSON.stringify(body) });

    const made = await post('keys', { accountSid: sub(0).sid, friendlyName: 'seeded' });
    expect(made.status).toBe(201);
    const key = (await made.json()) as { sid: string; secret: string };
    expect(key.sid).toMatch(SID('SK'));

    const state = (await (await fetch(`${emu.url}/__emulator/state`)).json()) as {
      accounts: { sid: string; keys: { sid: string }[] }[];
    };
    expect(state.accounts.find((a) => a.sid === sub(0).sid)?.keys.map((k) => k.sid)).toContain(key.sid);
    expect(JSON.stringify(state)).not.toContain(key.secret);

    const secrets = (await (await fetch(`${emu.url}/__emulator/secrets`)).json()) as { secrets: string[] };
    expect(secrets.secrets).toEqual(expect.arrayContaining([key.secret, emu.parent.authToken, emu.parent.mainKey.secret]));

    expect((await post('revoke', { sid: key.sid })).status).toBe(200);
    const err = await failure(client(key.sid, key.secret, sub(0).sid).messages.list());
    expect([err.status, err.code]).toEqual([401, 20003]);

    const log = (await (await fetch(`${emu.url}/__emulator/auth-log?since=0&limit=1`)).json()) as {
      entries: unknown[];
      lastSeq: number;
    };
    expect(log.entries).toHaveLength(1);
    expect(log.lastSeq).toBeGreaterThan(1);

    const badFaults = await post('faults', { failRate: { rate: 2, kinds: [500] } });
    expect(badFaults.status).toBe(400);
    const subRes = await post('subaccounts', { friendlyName: 'From HTTP' });
    expect(((await subRes.json()) as { sid: string }).sid).toMatch(SID('AC'));
    const stats = (await (await fetch(`${emu.url}/__emulator/stats`)).json()) as { requests: number };
    expect(stats.requests).toBeGreaterThan(0);
  });
});

describe('Twilio emulator options', () => {
  it('can refuse the parent Main key on subaccounts (the contested behaviour)', async () => {
    const emu = await startTwilioEmulator({ subaccounts: 1, parentMainKeyOnSubaccounts: false });
    try {
      const main = twilio(emu.parent.mainKey.sid, emu.parent.mainKey.secret, {
        accountSid: emu.parent.accountSid,
        httpClient: new EmulatorRequestClient(emu.url),
      });
      expect(await main.api.v2010.accounts(emu.parent.accountSid).keys.list()).toHaveLength(1);
      const subSid = emu.subaccounts[0]?.sid ?? '';
      const err = await failure(main.api.v2010.accounts(subSid).keys.list());
      expect([err.status, err.code]).toEqual([401, 20003]);
    } finally {
      await emu.close();
    }
  });

  it('denyParent refuses the parent on one subaccount while that subaccount\'s own keys keep working', async () => {
    const emu = await startTwilioEmulator({ subaccounts: 2 });
    try {
      const [a, b] = emu.subaccounts;
      const appKey = emu.seedKey(a!.sid, 'app');
      emu.denyParent(a!.sid, true);
      const parent = twilio(emu.parent.accountSid, emu.parent.authToken, { httpClient: new EmulatorRequestClient(emu.url) });
      const err = await failure(parent.api.v2010.accounts(a!.sid).keys.list());
      expect([err.status, err.code]).toEqual([401, 20003]);
      expect(await parent.api.v2010.accounts(b!.sid).keys.list()).toEqual([]);
      const app = twilio(appKey.sid, appKey.secret, { accountSid: a!.sid, httpClient: new EmulatorRequestClient(emu.url) });
      expect((await app.messages.create({ to: '+15005550006', from: '+15005550001', body: 'hi' })).sid).toMatch(/^SM/);
      emu.denyParent(a!.sid, false);
      expect(await parent.api.v2010.accounts(a!.sid).keys.list()).toHaveLength(1);
    } finally {
      await emu.close();
    }
  });

  it('close() returns promptly while a timeout fault holds a request', async () => {
    const emu = await startTwilioEmulator({ subaccounts: 0 });
    const c = twilio(emu.parent.accountSid, emu.parent.authToken, { httpClient: new EmulatorRequestClient(emu.url) });
    const HOLD_MS = 60_000;
    emu.setFaults({ timeoutMs: HOLD_MS, failNext: { count: 1, status: 'timeout' } });
    const pending = failure(c.api.v2010.accounts.list());
    // Closed once the request is being held (not after a guessed 50 ms, by which a busy machine
    // may not have sent it: close() then had nothing to cut short and the test proved nothing).
    await waitFor('the request to be held', async () => emu.stats().faultsInjected === 1, 60_000, 5);
    const t0 = Date.now();
    await emu.close();
    // "Promptly": long before the hold would have ended by itself (the bound was 1 s).
    expect(Date.now() - t0).toBeLessThan(HOLD_MS / 4);
    expect((await pending).status).toBeUndefined();
  });

  it('seeds many subaccounts quickly and pages through them 1000 at a time', async () => {
    const emu = await startTwilioEmulator({ subaccounts: 2500 });
    try {
      const c = twilio(emu.parent.accountSid, emu.parent.authToken, { httpClient: new EmulatorRequestClient(emu.url) });
      const all = await c.api.v2010.accounts.list({ pageSize: 1000 });
      expect(all).toHaveLength(2501);
      expect(emu.stats().byRoute['GET /Accounts.json']).toBe(3);
    } finally {
      await emu.close();
    }
  });
});
