/**
 * The emulator's IAM v1 Keys (restricted keys) and Accounts v1 Auth Tokens, driven through the real
 * `twilio` package, so Rotator's restricted-key and Auth Token rotations meet Twilio's wire format.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import type { TwilioEmulator } from './twilio/server.ts';
import { startTwilioEmulator } from './twilio/server.ts';

class EmulatorRequestClient extends twilio.RequestClient {
  constructor(private readonly origin: string) {
    super();
  }

  override request<TData>(opts: RequestClient.RequestOptions<TData>) {
    const uri = String(opts.uri).replace(/^https:\/\/(api|iam|accounts)\.twilio\.com/, this.origin);
    return super.request<TData>({ ...opts, uri });
  }
}

async function failure(p: Promise<unknown>): Promise<{ status?: number; code?: number }> {
  try {
    await p;
  } catch (err) {
    return err as { status?: number; code?: number };
  }
  throw new Error('expected the call to fail');
}

const POLICY = { allow: ['/twilio/messaging/messages/read'] };

describe('Twilio emulator: IAM v1 Keys and Accounts v1 Auth Tokens (through twilio-node)', () => {
  let emu: TwilioEmulator;
  let http: EmulatorRequestClient;
  const client = (username: string, password: string, accountSid?: string): twilio.Twilio =>
    twilio(username, password, { httpClient: http, ...(accountSid ? { accountSid } : {}) });

  beforeAll(async () => {
    emu = await startTwilioEmulator({ subaccounts: 2 });
    http = new EmulatorRequestClient(emu.url);
  });
  afterAll(async () => {
    await emu?.close();
  });

  it('creates a restricted key with its policy; the key may make the calls its policy allows and gets 70051 for others', async () => {
    const sub = emu.subaccounts[0]!;
    const parent = client(emu.parent.accountSid, emu.parent.authToken);
    const key = await parent.iam.v1.newApiKey.create({ accountSid: sub.sid, friendlyName: 'rotator:r1', keyType: 'restricted', policy: POLICY });
    expect(key.sid).toMatch(/^SK[0-9a-f]{32}$/);
    expect(key.secret).toBeTruthy();
    expect(key.policy).toEqual(POLICY);
    expect((await parent.iam.v1.apiKey(key.sid).fetch()).policy).toEqual(POLICY);

    const restricted = client(key.sid, key.secret!, sub.sid);
    await expect(restricted.api.v2010.accounts(sub.sid).messages.page({ pageSize: 1 })).resolves.toBeDefined();
    const outside = await failure(restricted.api.v2010.accounts(sub.sid).messages.create({ to: '+15005550006', from: '+15005550001', body: 'x' }));
    expect(outside).toMatchObject({ status: 403, code: 70051 });
    const keys = await failure(restricted.iam.v1.getApiKeys.list({ accountSid: sub.sid }));
    expect(keys).toMatchObject({ status: 401, code: 20003 });
  });

  it('refuses a restricted key without a valid policy, and a list without AccountSid, with 400', async () => {
    const parent = client(emu.parent.accountSid, emu.parent.authToken);
    const sub = emu.subaccounts[0]!;
    expect(await failure(parent.iam.v1.newApiKey.create({ accountSid: sub.sid, keyType: 'restricted' }))).toMatchObject({ status: 400, code: 20001 });
    expect(await failure(parent.iam.v1.newApiKey.create({ accountSid: sub.sid, keyType: 'restricted', policy: { allow: [] } }))).toMatchObject({ status: 400 });
  });

  it('lists keys of an account across meta pages (absolute next_page_url) and deletes one', async () => {
    const parent = client(emu.parent.accountSid, emu.parent.authToken);
    const sub = emu.subaccounts[1]!;
    const made = [];
    for (let i = 0; i < 5; i++) made.push((await parent.iam.v1.newApiKey.create({ accountSid: sub.sid, friendlyName: `k${i}`, keyType: 'restricted', policy: POLICY })).sid);
    const page = await parent.iam.v1.getApiKeys.page({ accountSid: sub.sid, pageSize: 2 });
    expect(page.instances).toHaveLength(2);
    expect(page.nextPageUrl).toMatch(/^https:\/\/iam\.twilio\.com\/v1\/Keys\?.*PageToken=PA/);
    const all = await parent.iam.v1.getApiKeys.list({ accountSid: sub.sid, pageSize: 2 });
    expect(all.map((k) => k.sid)).toEqual(made);
    await parent.iam.v1.apiKey(made[0]!).remove();
    expect((await parent.iam.v1.getApiKeys.list({ accountSid: sub.sid })).map((k) => k.sid)).toEqual(made.slice(1));
    expect(await failure(parent.iam.v1.apiKey(made[0]!).fetch())).toMatchObject({ status: 404, code: 20404 });
  });

  it('rotates an Auth Token: secondary valid beside the primary, promote kills the old one (20003), a secondary can be deleted', async () => {
    const sub = await emu.createSubaccount('auth-token drill');
    const oldToken = sub.authToken;
    const asSub = (token: string) => client(sub.sid, token);
    const secondary = await asSub(oldToken).accounts.v1.secondaryAuthToken().create();
    expect(secondary.accountSid).toBe(sub.sid);
    const newToken = secondary.secondaryAuthToken;
    expect(newToken).toMatch(/^[0-9a-f]{32}$/);
    // Both authenticate until promotion.
    await asSub(oldToken).api.v2010.accounts(sub.sid).fetch();
    await asSub(newToken).api.v2010.accounts(sub.sid).fetch();

    const promoted = await asSub(newToken).accounts.v1.authTokenPromotion().update();
    expect(promoted.authToken).toBe(newToken);
    expect(await failure(asSub(oldToken).api.v2010.accounts(sub.sid).fetch())).toMatchObject({ status: 401, code: 20003 });
    await asSub(newToken).api.v2010.accounts(sub.sid).fetch();
    // Nothing left to promote.
    expect(await failure(asSub(newToken).accounts.v1.authTokenPromotion().update())).toMatchObject({ status: 400 });

    const third = await asSub(newToken).accounts.v1.secondaryAuthToken().create();
    expect(emu.account(sub.sid)?.hasSecondaryAuthToken).toBe(true);
    await asSub(newToken).accounts.v1.secondaryAuthToken().remove();
    expect(emu.account(sub.sid)?.hasSecondaryAuthToken).toBe(false);
    expect(await failure(asSub(third.secondaryAuthToken).api.v2010.accounts(sub.sid).fetch())).toMatchObject({ status: 401, code: 20003 });
    expect(await failure(asSub(newToken).accounts.v1.secondaryAuthToken().remove())).toMatchObject({ status: 404 });
  });

  it('refuses Standard keys on the Auth Token endpoints (20003)', async () => {
    const sub = emu.subaccounts[0]!;
    const key = emu.seedKey(sub.sid, 'std');
    expect(await failure(client(key.sid, key.secret, sub.sid).accounts.v1.secondaryAuthToken().create())).toMatchObject({ status: 401, code: 20003 });
  });
});
