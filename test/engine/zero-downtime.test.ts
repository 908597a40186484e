import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import twilio from 'twilio';
import { startStack, waitFor, type Stack } from '../helpers/stack.ts';
import { expectSettledKind, seedKind, startKindRotation } from '../helpers/kinds.ts';
import { validateTwilioRequest, webhookTokens } from '../../src/client/webhook.ts';
import type { RotationRecord } from '../../src/domain/rotation.ts';
import { startEngine, startRotation, waitFinished, expectSettled, PromoteHold, waitWaiting } from '../helpers/engine.ts';
import { contractFailures, SimulatedConsumer } from '../helpers/consumer.ts';
import { dumpRedis, findSecrets } from '../helpers/leaks.ts';
import type { Runtime } from '../../src/runtime.ts';
import { ENGINE_STORE_BACKENDS, storeBackendUnavailable, type StoreBackendKind } from '../helpers/stores.ts';
import { Redis } from 'ioredis';

async function keysOf(url: string): Promise<string[]> {
  const r = new Redis(url);
  try {
    return await r.keys('*');
  } finally {
    r.disconnect();
  }
}

const REFRESH_MS = 250;
const DRAIN_SECONDS = 0.5; // ≥ the consumers' refresh interval, as the drain contract requires
const ROTATIONS_PER_ACCOUNT = 7;
/** Subaccounts 0–2 start with a key current in the store; the last one starts empty (bootstrap). */
const SEEDED = 3;

/**
 * Each store on one Redis server; the file store once more on a three-primary Redis Cluster
 * (issue 18: the same rotations with every key Rotator and BullMQ use under one hash tag); and
 * the file store once more with the consumer gate (issue 15) deciding promote: the consumers
 * report the key they read before they use it, the drain maximum is far longer than the test,
 * and the gate alone lets each rotation through once all five have moved.
 */
type Variant = { kind: StoreBackendKind; redis: 'single' | 'cluster'; gate: boolean; name: string };
const VARIANTS: readonly Variant[] = [
  ...ENGINE_STORE_BACKENDS.map((kind): Variant => ({ kind, redis: 'single', gate: false, name: `${kind} store on single` })),
  { kind: 'file', redis: 'cluster', gate: false, name: 'file store on cluster' },
  { kind: 'file', redis: 'single', gate: true, name: 'file store (consumer gate) on single' },
];
const GATE_DRAIN_SECONDS = 600;

describe.each(VARIANTS)('zero downtime with the $name Redis', ({ kind, redis, gate }) => {
  const unavailable = storeBackendUnavailable(kind);
  let stack: Stack;
  let rt: Runtime;
  const drainSeconds = gate ? GATE_DRAIN_SECONDS : DRAIN_SECONDS;
  let consumerNames = 0;
  /** A heartbeat for each credential read (gate variant), straight into the registry the gate reads. */
  const reporter = () => {
    const consumer = `zd-${++consumerNames}`;
    return gate ? { onKey: async (accountSid: string, keySid: string) => void (await rt.consumers.report({ consumer, accountSid, credential: 'default', keySid, by: 'test' }, Date.now())) } : {};
  };

  beforeAll(async () => {
    if (unavailable) return;
    stack = await startStack({ subaccounts: SEEDED + 1, drainSeconds, store: kind, redis, ...(gate ? { env: { CONSUMER_GATE_RECHECK_SECONDS: '0.2' } } : {}) });
    await stack.seed(stack.emu.subaccounts.slice(0, SEEDED).map((s) => s.sid));
    rt = await startEngine(stack);
    if (gate) await rt.policies.put({ name: 'default', interval: 'P90D', consumerGate: { minDrain: 'PT0S', maxWait: 'PT1H', onMaxWait: 'hold' } });
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it.skipIf(!!unavailable)('5 consumers re-reading the store never get a 401 through 21 rotations over 3 subaccounts', async () => {
    const accounts = stack.emu.subaccounts.slice(0, SEEDED).map((s) => s.sid);
    const consumers = Array.from({ length: 5 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts, refreshMs: REFRESH_MS, baseUrl: stack.emu.url, ...reporter() }));
    consumers.forEach((c) => c.start());
    // Gate variant: every consumer has reported before the first rotation (else the drain decides).
    if (gate) await waitFor('5 consumers to report on each subaccount', async () => (await Promise.all(accounts.map((sid) => rt.consumers.forCredential(sid, 'default', Date.now())))).every((l) => l.length === 5));

    const finished = await Promise.all(
      accounts.map(async (sid) => {
        const done = [];
        for (let i = 0; i < ROTATIONS_PER_ACCOUNT; i++) {
          const rec = await startRotation(rt, sid, `zero-downtime ${i}`);
          done.push(await waitFinished(rt, rec.id));
        }
        return done;
      }),
    );
    const stats = await Promise.all(consumers.map((c) => c.stop()));

    const all = finished.flat();
    expect(all).toHaveLength(21);
    expect(all.map((r) => r.status)).toEqual(all.map(() => 'succeeded'));
    // Each rotation really replaced a key and waited out the drain before deleting it.
    for (const r of all) {
      expect(r.oldKeySid).toMatch(/^SK/);
      expect(r.newKeySid).toMatch(/^SK/);
      const deletedAt = Date.parse(r.history.find((h) => h.step === 'delete-old' && h.status === 'completed')!.at);
      if (!gate) expect(deletedAt - Date.parse(r.operationalizedAt!)).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
      // With the gate: long before the drain maximum, once all five consumers reported the new key.
      else {
        expect(deletedAt).toBeLessThan(Date.parse(r.promoteAfter!));
        expect(r.history.find((h) => h.step === 'promote' && h.status === 'completed')!.detail).toContain('5 of 5 consumers on the new key');
      }
    }
    const total = stats.reduce((a, s) => ({ requests: a.requests + s.requests, unauthorized: a.unauthorized + s.unauthorized, keys: a.keys + s.keysUsed.size }), { requests: 0, unauthorized: 0, keys: 0 });
    // Every 401 within the contract is a failure; one with a credential read more than a drain
    // before Twilio refused it is this process being starved, not Rotator (contractFailures).
    const failed = contractFailures(stats.flatMap((s) => s.failures), stack.emu, drainSeconds * 1000);
    expect(failed.within, JSON.stringify(failed.within)).toEqual([]);
    if (failed.late) console.log(`zero-downtime (${kind}): ${failed.late} 401(s) with a credential used more than a drain after it was read (host starved), outside the contract`);
    expect(total.requests).toBeGreaterThan(200);
    // Consumers did move through the new keys (not just the first one).
    expect(new Set(stats.flatMap((s) => [...s.keysUsed])).size).toBeGreaterThanOrEqual(15);

    for (const sid of accounts) {
      const settled = await expectSettled(stack, sid);
      expect(settled.problems).toEqual([]);
      expect(settled.currentKeySid).toBe(finished[accounts.indexOf(sid)]!.at(-1)!.newKeySid);
    }

    // No key secret or auth token the emulator ever issued is anywhere in Redis or the logs.
    const secrets = [...stack.emu.issuedSecrets(), ...stack.backend.secrets];
    expect(secrets.length).toBeGreaterThan(21);
    expect(findSecrets(secrets, await dumpRedis(stack.redis.urls))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);

    // On the Cluster, every key (Rotator's and BullMQ's) carries the one hash tag: all on one node.
    if (redis === 'cluster') {
      const keysByNode = await Promise.all(stack.redis.urls.map((url) => keysOf(url)));
      expect(keysByNode.flat().filter((k) => !k.startsWith('{rotator}:'))).toEqual([]);
      expect(keysByNode.filter((keys) => keys.length > 0)).toHaveLength(1);
    }
  });

  it.skipIf(!!unavailable)('bootstraps the subaccount whose store entry is empty, then rotates it like any other', async () => {
    const sid = stack.emu.subaccounts[SEEDED]!.sid;
    expect(await stack.store.readCurrent(stack.path(sid))).toBeUndefined();
    const consumer = new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts: [sid], refreshMs: REFRESH_MS, baseUrl: stack.emu.url, ...reporter() });
    consumer.start();
    const bootstrap = await waitFinished(rt, (await startRotation(rt, sid, 'bootstrap')).id);
    const next = await waitFinished(rt, (await startRotation(rt, sid, 'after bootstrap')).id);
    const stats = await consumer.stop();

    expect(bootstrap.status, JSON.stringify(bootstrap.error ?? bootstrap.lastError)).toBe('succeeded');
    // Steps 1–2 only: no old key, so no drain and nothing deleted.
    expect(bootstrap.oldKeySid).toBeNull();
    expect(bootstrap.history.filter((h) => h.status === 'completed').map((h) => h.step)).toEqual(['create-secondary', 'operationalize']);
    expect(next.status, JSON.stringify(next.error ?? next.lastError)).toBe('succeeded');
    expect(next.oldKeySid).toBe(bootstrap.newKeySid);
    const settled = await expectSettled(stack, sid);
    expect(settled.problems).toEqual([]);
    expect(settled.currentKeySid).toBe(next.newKeySid);
    // The consumer waited while the entry was empty, then used the keys without a 401.
    expect(contractFailures(stats.failures, stack.emu, drainSeconds * 1000).within).toEqual([]);
    expect(stats.keysUsed.has(next.newKeySid!)).toBe(true);
  });
});

/**
 * The same contract for the other credential kinds, on the file store (the stores are kind-blind:
 * the api-key runs above cover every backend). Restricted keys: the new key carries exactly the old
 * key's policy, and a call outside it is still refused. The Auth Token: consumers see no 401
 * across promotion, and a webhook Twilio signs — with the old token until promotion, the new one
 * after — validates throughout with validateTwilioRequest over the store's tokens.
 */
describe.each(['restricted-key', 'auth-token'] as const)('zero downtime for %s credentials (file store)', (credentialKind) => {
  const ROTATIONS = 3;
  const hold = new PromoteHold();
  let stack: Stack;
  let rt: Runtime;

  beforeAll(async () => {
    stack = await startStack({ subaccounts: 2, drainSeconds: DRAIN_SECONDS });
    rt = await startEngine(stack, {}, { gates: [hold] });
    await seedKind(stack, rt, stack.emu.subaccounts.map((s) => s.sid), credentialKind);
  });

  afterAll(async () => {
    await rt?.close();
    await stack?.close();
  });

  it(`consumers re-reading the store never get a 401 through ${ROTATIONS} rotations of each of 2 subaccounts`, async () => {
    const accounts = stack.emu.subaccounts.map((s) => s.sid);
    const consumers = Array.from({ length: 3 }, () => new SimulatedConsumer({ store: stack.store, pathOf: stack.path, accounts, refreshMs: REFRESH_MS, baseUrl: stack.emu.url }));
    consumers.forEach((c) => c.start());
    const webhooks = credentialKind === 'auth-token' ? new WebhookReceiver(stack, accounts) : undefined;
    webhooks?.start();

    const finished = await Promise.all(
      accounts.map(async (sid) => {
        const done: RotationRecord[] = [];
        for (let i = 0; i < ROTATIONS; i++) {
          const checkWebhooks = credentialKind === 'auth-token' && i === 0;
          if (checkWebhooks) hold.hold(sid);
          const rec = await startKindRotation(rt, sid, credentialKind, `zero-downtime ${credentialKind} ${i}`);
          if (checkWebhooks) await webhooks!.checkDuringDrain(rt, rec.id, sid, () => hold.release(sid));
          done.push(await waitFinished(rt, rec.id));
        }
        return done;
      }),
    );
    const stats = await Promise.all(consumers.map((c) => c.stop()));
    const hooks = await webhooks?.stop();

    const all = finished.flat();
    expect(all.map((r) => `${r.status} ${r.error?.message ?? ''}`.trim())).toEqual(all.map(() => 'succeeded'));
    for (const r of all) {
      expect(r.kind).toBe(credentialKind);
      expect(r.oldKeySid).toMatch(credentialKind === 'auth-token' ? /^AT-[0-9a-f]{16}$/ : /^SK/);
      const deletedAt = Date.parse(r.history.find((h) => h.step === 'delete-old' && h.status === 'completed')!.at);
      expect(deletedAt - Date.parse(r.operationalizedAt!)).toBeGreaterThanOrEqual(DRAIN_SECONDS * 1000);
    }
    const failed = contractFailures(stats.flatMap((s) => s.failures), stack.emu, DRAIN_SECONDS * 1000);
    expect(failed.within, JSON.stringify(failed.within)).toEqual([]);
    expect(stats.reduce((n, s) => n + s.requests, 0)).toBeGreaterThan(50);
    expect(new Set(stats.flatMap((s) => [...s.keysUsed])).size).toBeGreaterThanOrEqual(accounts.length * 2);

    for (const sid of accounts) {
      const settled = await expectSettledKind(stack, sid, credentialKind);
      expect(settled.problems).toEqual([]);
      expect(settled.currentKeySid).toBe(finished[accounts.indexOf(sid)]!.at(-1)!.newKeySid);
    }
    if (credentialKind === 'restricted-key') {
      // The policy is the old one (expectSettledKind compared it), and it still binds: a call outside it is refused.
      for (const sid of accounts) {
        const c = (await stack.store.readCurrent(stack.path(sid)))!;
        const client = twilio(c.apiKeySid, c.apiKeySecret.reveal(), { accountSid: sid, httpClient: emulatorHttp(stack.emu.url) });
        await expect(client.api.v2010.accounts(sid).balance.fetch()).rejects.toMatchObject({ status: 403, code: 70051 });
        await expect(client.api.v2010.accounts(sid).messages.page({ pageSize: 1 })).resolves.toBeDefined();
      }
    }
    if (hooks) {
      expect(hooks.invalid, JSON.stringify(hooks.invalid.slice(0, 3))).toEqual([]);
      // Both tokens really signed webhooks while they were live.
      expect(hooks.signedWithPrevious).toBeGreaterThan(0);
      expect(hooks.checked).toBeGreaterThan(20);
    }

    const secrets = [...stack.emu.issuedSecrets(), ...stack.backend.secrets];
    expect(findSecrets(secrets, await dumpRedis(stack.redis.url))).toEqual([]);
    expect(findSecrets(secrets, [stack.logs.text()])).toEqual([]);
  });
});

function emulatorHttp(origin: string): never {
  const inner = new twilio.RequestClient();
  return { request: (o: { uri: string }) => inner.request({ ...(o as object as { method: 'get' }), uri: o.uri.replace(/^https:\/\/(api|iam|accounts)\.twilio\.com/, origin) }) } as never;
}

/**
 * An application validating Twilio's webhooks with the store's tokens while Rotator rotates the
 * Auth Token. Twilio signs with the account's primary token (the emulator's), which changes at
 * promotion; the application validates with whatever the store holds when the webhook arrives.
 */
class WebhookReceiver {
  checked = 0;
  signedWithPrevious = 0;
  readonly invalid: Array<{ accountSid: string; at: number; reason: string }> = [];
  #running = false;
  #loop?: Promise<void>;

  constructor(
    private readonly stack: Stack,
    private readonly accounts: string[],
  ) {}

  start(): void {
    this.#running = true;
    this.#loop = (async () => {
      for (let i = 0; this.#running; i++) {
        const sid = this.accounts[i % this.accounts.length]!;
        // The store first, then what Twilio signs with: a promotion cannot fall between the two
        // (it comes a drain after the store changed).
        const tokens = webhookTokens(await this.stack.store.read(this.stack.path(sid)));
        const verdict = this.#deliver(sid, this.stack.emu.account(sid)!.authToken, tokens);
        this.checked++;
        if (verdict.valid && verdict.signedWith === 'previous') this.signedWithPrevious++;
        if (!verdict.valid) this.invalid.push({ accountSid: sid, at: Date.now(), reason: verdict.reason });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
  }

  async stop(): Promise<{ checked: number; signedWithPrevious: number; invalid: WebhookReceiver['invalid'] }> {
    this.#running = false;
    await this.#loop;
    return { checked: this.checked, signedWithPrevious: this.signedWithPrevious, invalid: this.invalid };
  }

  /**
   * While the rotation waits in promote (new token current in the store, old one still primary at
   * Twilio): a webhook signed with the old token and one signed with the new both validate; after
   * the rotation, one signed with the old token no longer does.
   */
  async checkDuringDrain(rt: Runtime, rotationId: string, sid: string, release: () => void): Promise<void> {
    // Held in promote by the test's gate: operationalized, not promoted.
    await waitWaiting(rt, rotationId);
    await waitFor(`rotation ${rotationId} to pass its drain`, async () => (await rt.repo.get(rotationId))?.history.at(-1)?.detail?.includes('held by the test'));
    const tokens = webhookTokens(await this.stack.store.read(this.stack.path(sid)));
    const primary = this.stack.emu.account(sid)!.authToken;
    expect(tokens.previous).toBe(primary);
    expect(this.#deliver(sid, primary, tokens)).toEqual({ valid: true, signedWith: 'previous' });
    expect(this.#deliver(sid, tokens.current, tokens)).toEqual({ valid: true, signedWith: 'current' });
    release();
    const done = await waitFinished(rt, rotationId);
    const after = webhookTokens(await this.stack.store.read(this.stack.path(sid)));
    expect(after.previous).toBeUndefined();
    expect(this.#deliver(sid, tokens.previous ?? 'never-a-token', after).valid).toBe(false);
    expect(done.status).toBe('succeeded');
  }

  #deliver(sid: string, signingToken: string, tokens: ReturnType<typeof webhookTokens>) {
    const url = `https://app.example.com/twilio/sms?account=${sid}`;
    const params = { AccountSid: sid, From: '+15005550006', Body: `hello ${this.checked}` };
    const signature = twilio.getExpectedTwilioSignature(signingToken, url, params);
    return validateTwilioRequest(tokens, { url, signature, params });
  }
}
