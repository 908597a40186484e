import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTwilioClient, NoCredentialError, type RotatorTwilioClient } from 'rotator/client';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished } from '../helpers/engine.ts';
import { ENGINE_STORE_BACKENDS, storeBackendUnavailable } from '../helpers/stores.ts';
import { Secret } from '../../src/domain/secret.ts';
import type { Runtime } from '../../src/runtime.ts';

/**
 * Issue 15 item 1, for every store: an application on the client library caches its credential
 * far longer than the drain (0 here), Rotator deletes the key it holds, and the client's 401
 * re-read and retry means no failed request reaches the application's code. Also: an entry with no
 * credential yet (a bootstrap staged but not current; for AWS, the placeholder) is "no credential".
 */
describe.each(ENGINE_STORE_BACKENDS)('client library with the %s store', (kind) => {
  const unavailable = storeBackendUnavailable(kind);
  let stack: Stack;
  let rt: Runtime;
  const clients: RotatorTwilioClient[] = [];
  /** What an application configures: the store's settings by Rotator's names, and where Twilio is. */
  const appEnv = () => ({ ...stack.backend.env, TWILIO_BASE_URL: stack.emu.url });

  beforeAll(async () => {
    if (unavailable) return;
    stack = await startStack({ subaccounts: 2, drainSeconds: 0, store: kind });
    await stack.seed([stack.emu.subaccounts[0]!.sid]);
    rt = await startEngine(stack, {}, { api: false });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.rotator.close()));
    await rt?.close();
    await stack?.close();
  });

  it.skipIf(!!unavailable)('a key deleted at Twilio while cached costs the application no failed request', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const client = await createTwilioClient({ accountSid: sid, env: appEnv(), refreshSeconds: 3600 });
    clients.push(client);
    const oldKey = client.rotator.keySid();
    expect(oldKey).toMatch(/^SK/);

    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const app = (async () => {
      while (running) {
        try {
          await client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'ping' });
          ok++;
        } catch (err) {
          failures.push(`${(err as { status?: number }).status} ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    const done = await waitFinished(rt, (await startRotation(rt, sid, 'client 401')).id);
    expect(done.status, JSON.stringify(done.error ?? done.lastError)).toBe('succeeded');
    expect(stack.emu.listKeys(sid).map((k) => k.sid)).toEqual([done.newKeySid]);
    // The cache (an hour) outlived the key: the next request got a 401, re-read, and went again.
    await waitFor('the client to move to the new key', async () => client.rotator.keySid() === done.newKeySid);
    const okAtMove = ok;
    await waitFor('a few more requests with the new key', async () => ok > okAtMove + 3);
    running = false;
    await app;

    expect(failures).toEqual([]);
    expect(client.rotator.retriedAfter401).toBeGreaterThanOrEqual(1);
    expect(stack.emu.authLog(0).some((e) => e.status === 401 && e.principal === oldKey)).toBe(true);
  });

  it.skipIf(!!unavailable)('reads an entry with no current credential (a bootstrap staged, for AWS its placeholder) as no credential yet', async () => {
    const sid = stack.emu.subaccounts[1]!.sid;
    const key = stack.emu.seedKey(sid, 'bootstrapping');
    await stack.store.putPending(stack.path(sid), 'bootstrap-0000000000000000000000001', { accountSid: sid, apiKeySid: key.sid, apiKeySecret: new Secret(key.secret) });
    const client = await createTwilioClient({ accountSid: sid, env: appEnv(), refreshSeconds: 3600 });
    clients.push(client);
    expect(client.rotator.keySid()).toBeUndefined();
    await expect(client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'ping' })).rejects.toBeInstanceOf(NoCredentialError);

    await stack.store.promotePending(stack.path(sid), 'bootstrap-0000000000000000000000001', key.sid);
    expect(await client.rotator.refresh()).toBe(key.sid);
    await expect(client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'ping' })).resolves.toMatchObject({ sid: expect.stringMatching(/^SM/) });
  });
});
