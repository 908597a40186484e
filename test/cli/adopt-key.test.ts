import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../helpers/stack.ts';
import { startEngine, startRotation, waitFinished } from '../helpers/engine.ts';
import { findSecrets } from '../helpers/leaks.ts';

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
    stack = await startStack({ subaccounts: 2 });
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
});
