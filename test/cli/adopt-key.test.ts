import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished } from '../helpers/engine.ts';
import { findSecrets } from '../helpers/leaks.ts';
import { CONSUMER_POLICY, expectSettledKind, manageAs } from '../helpers/kinds.ts';

/** `npm run adopt-key` as an operator runs it: the key on stdin, a real process. */
function adopt(env: Record<string, string>, args: string[], stdin: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/adopt-key.ts', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, out }));
    child.stdin.end(stdin);
  });
}

describe('npm run adopt-key: a key applications already use becomes the current one, and the first rotation replaces it', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 3 });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('adopts a working key of the subaccount, refuses anything else, and never prints the secret', async () => {
    const [a, b] = stack.emu.subaccounts.map((s) => s.sid) as [string, string];
    const inUse = stack.emu.seedKey(a, 'billing app');
    const other = stack.emu.seedKey(b, 'another subaccount');
    const body = (sid: string, secret: string): string => JSON.stringify({ apiKeySid: sid, apiKeySecret: secret });

    // Refusals change nothing: another subaccount's key, bad input. (The subaccount rule itself is
    // subaccountVerdict's, tested with the API's guard.)
    const foreign = await adopt(stack.env, [a], body(other.sid, other.secret));
    expect(foreign).toMatchObject({ code: 1 });
    expect(foreign.out).toMatch(/is not one of .*'s API keys/);
    expect((await adopt(stack.env, [a], 'SK… secret')).code).toBe(2);
    expect((await stack.store.read(stack.path(a))).current).toBeUndefined();

    const ok = await adopt(stack.env, [a], body(inUse.sid, inUse.secret));
    expect(ok.code, ok.out).toBe(0);
    expect((await stack.store.readCurrent(stack.path(a)))?.apiKeySid).toBe(inUse.sid);
    // Another key while one is current: refused.
    const second = stack.emu.seedKey(a, 'second app');
    expect((await adopt(stack.env, [a], body(second.sid, second.secret))).code).toBe(1);

    // The first rotation replaces the adopted key and deletes it at Twilio, like any other.
    const rt = await startEngine(stack);
    try {
      const done = await waitFinished(rt, (await startRotation(rt, a, 'after adoption')).id);
      expect(done.status).toBe('succeeded');
      expect(done.oldKeySid).toBe(inUse.sid);
      expect(stack.emu.listKeys(a).map((k) => k.sid)).not.toContain(inUse.sid);
    } finally {
      await rt.close();
    }
    expect(findSecrets([inUse.secret, other.secret, second.secret], [ok.out, foreign.out])).toEqual([]);
  });

  it('adopts a restricted key for a restricted-key credential, so the next rotation copies its policy; a Standard key is refused for it', async () => {
    const [, b, c] = stack.emu.subaccounts.map((s) => s.sid) as [string, string, string];
    const body = (sid: string, secret: string): string => JSON.stringify({ apiKeySid: sid, apiKeySecret: secret });
    const rt = await startEngine(stack);
    try {
      await manageAs(stack, rt, [c], 'restricted-key');
      // Without a key in the store there is no policy to copy: the refusal says how to adopt one.
      const before = await waitFinished(rt, (await startRotation(rt, c, 'before adoption')).id);
      expect(before.status).toBe('failed');
      expect(before.error).toMatchObject({ code: 'restricted_key_bootstrap' });
      expect(before.error?.message).toContain(`npm run adopt-key -- ${c} default`);

      const standard = stack.emu.seedKey(c, 'standard app key');
      const refused = await adopt(stack.env, [c], body(standard.sid, standard.secret));
      expect(refused.code, refused.out).toBe(1);
      expect(refused.out).toMatch(/is not a restricted key .*kind restricted-key/);
      expect((await stack.store.read(stack.path(c))).current).toBeUndefined();

      // The other way round: a restricted key for an api-key credential would lose its policy.
      const narrowElsewhere = stack.emu.seedKey(b, 'restricted app key', 'restricted', undefined, CONSUMER_POLICY);
      const wrongKind = await adopt(stack.env, [b], body(narrowElsewhere.sid, narrowElsewhere.secret));
      expect(wrongKind.code, wrongKind.out).toBe(1);
      expect(wrongKind.out).toMatch(/is a restricted key, but the credential is of kind api-key/);
      expect((await stack.store.read(stack.path(b))).current).toBeUndefined();

      const narrow = stack.emu.seedKey(c, 'restricted app key', 'restricted', undefined, CONSUMER_POLICY);
      const ok = await adopt(stack.env, [c], body(narrow.sid, narrow.secret));
      expect(ok.code, ok.out).toBe(0);
      expect(ok.out).toMatch(/adopted restricted key/);
      expect((await stack.store.readCurrent(stack.path(c)))?.apiKeySid).toBe(narrow.sid);

      // The Standard key was only offered, never held: the rotation's end state counts one key.
      stack.emu.revokeCredential(standard.sid);
      const done = await waitFinished(rt, (await startRotation(rt, c, 'after adoption')).id);
      expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
      expect(done.kind).toBe('restricted-key');
      expect(done.oldKeySid).toBe(narrow.sid);
      // One key left, the new one, with exactly the adopted key's policy.
      expect(await expectSettledKind(stack, c, 'restricted-key')).toEqual({ problems: [], currentKeySid: done.newKeySid });
      expect(stack.emu.listKeys(c).find((k) => k.sid === done.newKeySid)?.policy).toEqual(CONSUMER_POLICY);
      expect(findSecrets([standard.secret, narrow.secret, narrowElsewhere.secret], [refused.out, wrongKind.out, ok.out, JSON.stringify([before, done])])).toEqual([]);
    } finally {
      await rt.close();
    }
  });
});
