import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { startStack, LogCapture, type Stack } from '../helpers/stack.ts';
import { expectSettled, startEngine, waitFinished } from '../helpers/engine.ts';
import { spawnRotator } from '../helpers/processes.ts';
import { makeTestCertificates, type TestCertificates } from '../helpers/tls-certs.ts';
import { ROTATOR_ACL, startTlsRedis, type RedisProcess } from '../helpers/redis-topologies.ts';
import { mintToken } from '../../src/api/tokens.ts';
import { loadConfig } from '../../src/config.ts';
import { waitForRedis } from '../../src/startup.ts';
import type { Runtime } from '../../src/runtime.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';

const PASSWORD = 'rotator-tls-test-password';

/**
 * Issue 18, TLS for real: a redis-server serving TLS only (no plain-text port), its certificate
 * signed by a throwaway CA made with openssl, an ACL user that is not `default`. Rotator's API and
 * worker (BullMQ included) connect with rediss://, REDIS_TLS_CA_FILE, REDIS_USERNAME and
 * REDIS_PASSWORD and rotate; a server whose certificate that CA did not sign stops start-up with
 * one line that says so and carries no secret.
 */
describe('Redis over TLS with an ACL user', () => {
  let stack: Stack;
  let server: RedisProcess;
  let certs: TestCertificates;
  let rogue: RedisProcess;
  let rt: Runtime;
  let env: Record<string, string>;
  const operator = mintToken('ops', 'operator');

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 1 });
    await stack.seedAll();
    certs = makeTestCertificates(join(stack.dir, 'certs'));
    // Another CA's server: what a man in the middle, or a misconfigured REDIS_URL, would present.
    const other = makeTestCertificates(join(stack.dir, 'rogue-certs'), 'rogue');
    const users = [`user rotator on >${PASSWORD} ${ROTATOR_ACL}`, 'user harness on >harness-pw ~* &* +@all'];
    const client = { username: 'harness', password: 'harness-pw' };
    [server, rogue] = await Promise.all([startTlsRedis(join(stack.dir, 'tls-redis'), certs, { users, client }), startTlsRedis(join(stack.dir, 'rogue-redis'), other, { users, client })]);
    env = { REDIS_URL: `rediss://127.0.0.1:${server.port}`, REDIS_TLS_CA_FILE: certs.caFile, REDIS_USERNAME: 'rotator', REDIS_PASSWORD: PASSWORD, API_TOKENS: operator.entry, ACCOUNT_SYNC_SECONDS: '0' };
    rt = await startEngine(stack, env);
  }, 120_000);
  afterAll(async () => {
    await rt?.close();
    await Promise.all([server?.stop(), rogue?.stop()]);
    await stack?.close();
  });

  it('rotates through the API and a BullMQ worker over rediss:// with the CA file and the ACL user', async () => {
    const sid = stack.emu.subaccounts[0]!.sid;
    const res = await rt.app!.inject({ method: 'POST', url: '/v1/rotations', headers: { authorization: `Bearer ${operator.token}` }, payload: { accountSid: sid, reason: 'tls' } });
    expect(res.statusCode).toBe(202);
    const done = await waitFinished(rt, (res.json() as RotationRecord).id);
    expect(done.status).toBe('succeeded');
    expect((await expectSettled(stack, sid)).problems).toEqual([]);
    // It all went through the TLS-only server (it has no other port), as the ACL user: BullMQ's
    // queue is there, and every connection but the test's own is Rotator's user.
    expect(await server.ask((r) => r.exists('rotator:bull:rotations:meta'))).toBe(1);
    const users = (await server.ask((r) => r.client('LIST') as Promise<string>)).split('\n').flatMap((l) => /\buser=(\S+)/.exec(l)?.[1] ?? []);
    expect(new Set(users)).toEqual(new Set(['rotator', 'harness']));
    expect(users.filter((u) => u === 'rotator').length).toBeGreaterThanOrEqual(3);
    // Nothing denied by the ACL along the way.
    expect(await server.ask((r) => r.call('ACL', 'LOG') as Promise<unknown[]>)).toEqual([]);
  }, 120_000);

  it('refuses a server whose certificate the CA did not sign: one start-up line, no secret, exit 1', async () => {
    const logs = new LogCapture();
    const p = spawnRotator('worker', { ...stack.env, ...env, REDIS_URL: `rediss://127.0.0.1:${rogue.port}` }, logs);
    const { code } = await p.exited;
    const out = logs.text().trim();
    expect(code).toBe(1);
    expect(out.split('\n')).toHaveLength(1);
    expect(out).toContain(`Redis at rediss://127.0.0.1:${rogue.port}: 127.0.0.1:${rogue.port} presented a TLS certificate Rotator does not trust (SELF_SIGNED_CERT_IN_CHAIN`);
    expect(out).toContain(`REDIS_TLS_CA_FILE (${certs.caFile}) did not sign it`);
    expect(out).not.toContain(PASSWORD);
  }, 120_000);

  it('says what is wrong, at once and without the secret, for a wrong password, a missing CA or TLS left out', async () => {
    const startup = async (over: Record<string, string | undefined>): Promise<string> => {
      const e: Record<string, string> = { ...stack.env, ...env };
      for (const [k, v] of Object.entries(over)) if (v === undefined) delete e[k];
      else e[k] = v;
      return waitForRedis(loadConfig(e).redis!, 60_000).then(() => 'started', (err: Error) => err.message);
    };
    const wrong = await startup({ REDIS_PASSWORD: 'not-the-password' });
    expect(wrong).toMatch(/^Redis at rediss:\/\/127\.0\.0\.1:\d+ refused the credentials \(WRONGPASS[^)]*\): .*REDIS_USERNAME and REDIS_PASSWORD/);
    expect(wrong).not.toMatch(/not-the-password|rotator-tls-test-password/);
    expect(await startup({ REDIS_TLS_CA_FILE: undefined })).toMatch(/presented a TLS certificate Rotator does not trust \(SELF_SIGNED_CERT_IN_CHAIN.*: set REDIS_TLS_CA_FILE/);
    expect(await startup({ REDIS_URL: `redis://127.0.0.1:${server.port}`, REDIS_TLS_CA_FILE: undefined })).toMatch(/speaks TLS .* write rediss:\/\/ in REDIS_URL/);
  }, 120_000);
});
