import { describe, expect, it } from 'vitest';
import { CredentialCache } from '../../src/client/credential.ts';
import { Secret, type TwilioApiKeyCredential } from '../../src/domain/secret.ts';

const SID = `AC${'a'.repeat(32)}`;
const cred = (n: number): TwilioApiKeyCredential => ({ accountSid: SID, apiKeySid: `SK${String(n).repeat(32)}`, apiKeySecret: new Secret(`secret-${n}`) });

/** A store whose answer and availability the test sets, counting reads. */
function fakeStore() {
  const s = { value: cred(1) as TwilioApiKeyCredential | undefined, down: false, reads: 0, gate: undefined as Promise<void> | undefined };
  return Object.assign(s, {
    async readCurrent() {
      s.reads++;
      await s.gate;
      if (s.down) throw new Error('store unavailable');
      return s.value;
    },
  });
}

describe('client credential cache (issue 15)', () => {
  it('reads once for many callers, keeps the credential for the refresh interval, then reads again', async () => {
    const store = fakeStore();
    let now = 0;
    const cache = new CredentialCache(store, 'twilio/x', 1000, () => now);
    const results = await Promise.all([cache.current(), cache.current(), cache.current()]);
    expect(results.map((r) => r?.apiKeySid)).toEqual([cred(1).apiKeySid, cred(1).apiKeySid, cred(1).apiKeySid]);
    expect(store.reads).toBe(1);
    now = 999;
    await cache.current();
    expect(store.reads).toBe(1);
    store.value = cred(2);
    now = 1000;
    expect((await cache.current())?.apiKeySid).toBe(cred(2).apiKeySid);
    expect(store.reads).toBe(2);
  });

  it('after a 401 re-reads at once, and retries only with another key', async () => {
    const store = fakeStore();
    const cache = new CredentialCache(store, 'twilio/x', 3_600_000);
    const changes: Array<string | undefined> = [];
    cache.onChange((k) => changes.push(k));
    await cache.current();
    expect(await cache.afterRefusal(cred(1).apiKeySid)).toBeUndefined();
    store.value = cred(2);
    expect((await cache.afterRefusal(cred(1).apiKeySid))?.apiKeySid).toBe(cred(2).apiKeySid);
    expect(cache.keySid).toBe(cred(2).apiKeySid);
    expect(changes).toEqual([cred(1).apiKeySid, cred(2).apiKeySid]);
  });

  it('keeps the application on its credential while the store cannot be read; fails only with nothing cached', async () => {
    const store = fakeStore();
    let now = 0;
    const cache = new CredentialCache(store, 'twilio/x', 1000, () => now);
    await cache.current();
    store.down = true;
    now = 5000;
    expect((await cache.current())?.apiKeySid).toBe(cred(1).apiKeySid);
    expect(await cache.afterRefusal(cred(1).apiKeySid)).toBeUndefined();
    const empty = new CredentialCache(store, 'twilio/y', 1000, () => now);
    await expect(empty.current()).rejects.toThrow('store unavailable');
  });
});
