/**
 * The one behaviour every SecretStore (file, AWS Secrets Manager, Vault) must show, run unchanged
 * against each (STYLE.md: one adapter-conformance suite). A harness supplies the store and, where
 * the backend can be steered (emulators), the faults: broken permissions, outages, and a "crash"
 * that kills the client after N writes so the suite can check that re-running any write finishes
 * it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SecretEntry, SecretStore } from '../../providers/secret-store.ts';
import { StoreError } from '../../providers/store-error.ts';
import { Secret } from '../../src/domain/secret.ts';
import type { TwilioApiKeyCredential } from '../../src/domain/secret.ts';

export interface SecretStoreHarness {
  store: SecretStore;
  /** Another instance on the same backend (a second worker), for races. */
  newStore(): Promise<SecretStore>;
  /** Close every store the harness made and remove what the tests wrote. */
  cleanup(): Promise<void>;
  /** Told every path a test writes, for cleanup on shared backends. */
  track?(path: string): void;
  /** Prefix of the paths tests use (default `contract/`). */
  pathPrefix?: string;
  /** The store's principal keeps its credential but loses every permission. */
  breakPermissions?(): Promise<void>;
  /** Reads stay allowed, writes are denied. */
  denyWrites?(deny: boolean): Promise<void>;
  /** A store whose credential the backend does not accept. */
  unauthorizedStore?(): Promise<SecretStore>;
  /** A store pointed at an address where nothing listens. */
  unreachableStore?(): Promise<SecretStore>;
  /** The backend answers every request with an outage error until restored. */
  makeUnavailable?(): Promise<void>;
  restoreAvailability?(): Promise<void>;
  /** Kill the client after `afterWrites` successful writes; with `applyLast` the fatal write lands but its answer is lost. */
  crash?: { arm(afterWrites: number, applyLast: boolean): void; fired(): boolean; heal(): void };
  /** Credentials of the store itself (tokens, secret keys) that must never show up in errors. */
  credentialsToHide?(): string[];
  /** Backend-level invariants after a race, e.g. exactly one AWSCURRENT label. */
  assertConsistent?(path: string): Promise<void>;
}

export type SecretStoreHarnessFactory = () => Promise<SecretStoreHarness>;

/** Every generated secret carries this marker, so a leak is found by searching for it. */
const SECRET_MARKER = 'contract-secret-';

function sid(prefix: 'AC' | 'SK'): string {
  return prefix + randomBytes(16).toString('hex');
}

const ACCOUNT = sid('AC');

function credential(): TwilioApiKeyCredential {
  return { accountSid: ACCOUNT, apiKeySid: sid('SK'), apiKeySecret: new Secret(SECRET_MARKER + randomBytes(12).toString('hex')) };
}

/** Stage → key sid, rotation id (pending only) and whether the secret matches; compact enough for toEqual. */
function summary(entry: SecretEntry): Record<string, string> {
  const out: Record<string, string> = {};
  for (const stage of ['current', 'pending', 'previous'] as const) {
    const v = entry[stage];
    if (v) out[stage] = v.credential.apiKeySid;
  }
  if (entry.pending?.rotationId) out.pendingRotation = entry.pending.rotationId;
  return out;
}

function expectSameCredential(actual: TwilioApiKeyCredential | undefined, expected: TwilioApiKeyCredential): void {
  expect(actual).toBeDefined();
  expect(actual?.accountSid).toBe(expected.accountSid);
  expect(actual?.apiKeySid).toBe(expected.apiKeySid);
  expect(actual?.apiKeySecret.reveal()).toBe(expected.apiKeySecret.reveal());
}

/** Every way an error gets printed: message, stack, String(), JSON, util.inspect with hidden fields, and the cause chain. */
export function renderingsOf(err: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  let e: unknown = err;
  while (e !== undefined && e !== null && !seen.has(e)) {
    seen.add(e);
    out.push(String(e), inspect(e, { depth: 30, showHidden: true, getters: true }));
    try {
      out.push(JSON.stringify(e) ?? '');
    } catch {
      // Circular structures cannot leak through JSON.stringify either.
    }
    if (e instanceof Error) out.push(e.message, e.stack ?? '');
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

export function expectNoLeak(err: unknown, hidden: string[]): void {
  for (const text of renderingsOf(err)) {
    expect(text).not.toContain(SECRET_MARKER);
    for (const h of hidden) if (h.length >= 4) expect(text).not.toContain(h);
  }
}

export function runSecretStoreContract(name: string, factory: SecretStoreHarnessFactory): void {
  describe(`SecretStore contract: ${name}`, () => {
    let h: SecretStoreHarness;

    beforeEach(async () => {
      h = await factory();
    });
    afterEach(async () => {
      await h.cleanup();
    });

    const newPath = (): string => {
      const p = `${h.pathPrefix ?? 'contract/'}${randomUUID()}`;
      h.track?.(p);
      return p;
    };
    const hidden = (): string[] => h.credentialsToHide?.() ?? [];

    async function expectStoreError(work: Promise<unknown>, code: string): Promise<StoreError> {
      const err = await work.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `expected a StoreError ${code}`).toBeInstanceOf(StoreError);
      const se = err as StoreError;
      expect(se.code, se.message).toBe(code);
      expect(se.message.length).toBeGreaterThan(20);
      expectNoLeak(se, hidden());
      return se;
    }

    async function bootstrap(store: SecretStore, path: string, c = credential()): Promise<TwilioApiKeyCredential> {
      const r = randomUUID();
      await store.putPending(path, r, c);
      await store.promotePending(path, r, c.apiKeySid);
      return c;
    }

    async function rotate(store: SecretStore, path: string, c = credential()): Promise<TwilioApiKeyCredential> {
      return bootstrap(store, path, c);
    }

    /** What the engine does on store_conflict: re-read (the store does) and retry. */
    async function retryingConflicts(work: () => Promise<void>): Promise<void> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await work();
        } catch (err) {
          if (!(err instanceof StoreError) || err.code !== 'store_conflict' || attempt >= 5) throw err;
        }
      }
    }

    it('reads nothing from a path never written, and its no-op writes change nothing', async () => {
      const p = newPath();
      expect(await h.store.readCurrent(p)).toBeUndefined();
      expect(summary(await h.store.read(p))).toEqual({});
      await h.store.discardPending(p, randomUUID());
      await h.store.dropPrevious(p, sid('SK'));
      await h.store.restorePrevious(p, sid('SK'));
      expect(summary(await h.store.read(p))).toEqual({});
      await expectStoreError(h.store.promotePending(p, randomUUID(), sid('SK')), 'store_state');
    });

    it('bootstraps: empty → pending (not handed out) → current', async () => {
      const p = newPath();
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      expect(await h.store.readCurrent(p)).toBeUndefined();
      const staged = await h.store.read(p);
      expect(summary(staged)).toEqual({ pending: a.apiKeySid, pendingRotation: r });
      expectSameCredential(staged.pending?.credential, a);

      await h.store.promotePending(p, r, a.apiKeySid);
      expectSameCredential(await h.store.readCurrent(p), a);
      const done = await h.store.read(p);
      expect(summary(done)).toEqual({ current: a.apiKeySid });
      expectSameCredential(done.current?.credential, a);
    });

    it('rotates: current A, pending B, promote → current B and previous A, dropPrevious(A)', async () => {
      const p = newPath();
      const a = await bootstrap(h.store, p);
      const b = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, b);
      expectSameCredential(await h.store.readCurrent(p), a);
      expect(summary(await h.store.read(p))).toEqual({ current: a.apiKeySid, pending: b.apiKeySid, pendingRotation: r });

      await h.store.promotePending(p, r, b.apiKeySid);
      expectSameCredential(await h.store.readCurrent(p), b);
      const promoted = await h.store.read(p);
      expect(summary(promoted)).toEqual({ current: b.apiKeySid, previous: a.apiKeySid });
      expectSameCredential(promoted.previous?.credential, a);

      await h.store.dropPrevious(p, a.apiKeySid);
      expect(summary(await h.store.read(p))).toEqual({ current: b.apiKeySid });
      expectSameCredential(await h.store.readCurrent(p), b);
    });

    it('gives the same state when every write is repeated three times', async () => {
      const p = newPath();
      const thrice = async (write: () => Promise<void>, expected: Record<string, string>): Promise<void> => {
        await write();
        const once = summary(await h.store.read(p));
        expect(once).toEqual(expected);
        await write();
        await write();
        expect(summary(await h.store.read(p))).toEqual(once);
      };
      const a = credential();
      const r1 = randomUUID();
      await thrice(() => h.store.putPending(p, r1, a), { pending: a.apiKeySid, pendingRotation: r1 });
      await thrice(() => h.store.promotePending(p, r1, a.apiKeySid), { current: a.apiKeySid });
      const b = credential();
      const r2 = randomUUID();
      await thrice(() => h.store.putPending(p, r2, b), { current: a.apiKeySid, pending: b.apiKeySid, pendingRotation: r2 });
      await thrice(() => h.store.promotePending(p, r2, b.apiKeySid), { current: b.apiKeySid, previous: a.apiKeySid });
      await thrice(() => h.store.dropPrevious(p, a.apiKeySid), { current: b.apiKeySid });
      const c = credential();
      const r3 = randomUUID();
      await thrice(() => h.store.putPending(p, r3, c), { current: b.apiKeySid, pending: c.apiKeySid, pendingRotation: r3 });
      await thrice(() => h.store.discardPending(p, r3), { current: b.apiKeySid });
      const d = await rotate(h.store, p);
      expect(summary(await h.store.read(p))).toEqual({ current: d.apiKeySid, previous: b.apiKeySid });
      await thrice(() => h.store.restorePrevious(p, d.apiKeySid), { current: b.apiKeySid });
      expectSameCredential(await h.store.readCurrent(p), b);
    });

    describe('a write interrupted after any number of its steps finishes when run again', () => {
      interface Scenario {
        name: string;
        setup(store: SecretStore, path: string): Promise<{ op(store: SecretStore): Promise<void>; before: string | undefined; after: Record<string, string> }>;
      }
      const scenarios: Scenario[] = [
        {
          name: 'putPending (bootstrap)',
          async setup(_store, path) {
            const a = credential();
            const r = randomUUID();
            return { op: (s) => s.putPending(path, r, a), before: undefined, after: { pending: a.apiKeySid, pendingRotation: r } };
          },
        },
        {
          name: 'putPending (replacing another rotation’s pending)',
          async setup(store, path) {
            const c = await bootstrap(store, path);
            await store.putPending(path, randomUUID(), credential());
            const a = credential();
            const r = randomUUID();
            return { op: (s) => s.putPending(path, r, a), before: c.apiKeySid, after: { current: c.apiKeySid, pending: a.apiKeySid, pendingRotation: r } };
          },
        },
        {
          name: 'promotePending (bootstrap)',
          async setup(store, path) {
            const a = credential();
            const r = randomUUID();
            await store.putPending(path, r, a);
            return { op: (s) => s.promotePending(path, r, a.apiKeySid), before: undefined, after: { current: a.apiKeySid } };
          },
        },
        {
          name: 'promotePending',
          async setup(store, path) {
            const c = await bootstrap(store, path);
            const a = credential();
            const r = randomUUID();
            await store.putPending(path, r, a);
            return { op: (s) => s.promotePending(path, r, a.apiKeySid), before: c.apiKeySid, after: { current: a.apiKeySid, previous: c.apiKeySid } };
          },
        },
        {
          name: 'discardPending',
          async setup(store, path) {
            const c = await bootstrap(store, path);
            const r = randomUUID();
            await store.putPending(path, r, credential());
            return { op: (s) => s.discardPending(path, r), before: c.apiKeySid, after: { current: c.apiKeySid } };
          },
        },
        {
          name: 'restorePrevious',
          async setup(store, path) {
            const c = await bootstrap(store, path);
            const a = await rotate(store, path);
            return { op: (s) => s.restorePrevious(path, a.apiKeySid), before: a.apiKeySid, after: { current: c.apiKeySid } };
          },
        },
        {
          name: 'restorePrevious (bootstrap)',
          async setup(store, path) {
            const a = await bootstrap(store, path);
            return { op: (s) => s.restorePrevious(path, a.apiKeySid), before: a.apiKeySid, after: {} };
          },
        },
        {
          name: 'dropPrevious',
          async setup(store, path) {
            const c = await bootstrap(store, path);
            const a = await rotate(store, path);
            return { op: (s) => s.dropPrevious(path, c.apiKeySid), before: a.apiKeySid, after: { current: a.apiKeySid } };
          },
        },
      ];

      for (const scenario of scenarios) {
        it(scenario.name, async (ctx) => {
          if (!h.crash) return ctx.skip();
          const crash = h.crash;
          for (let afterWrites = 0; afterWrites < 8; afterWrites++) {
            for (const applyLast of [false, true]) {
              const path = newPath();
              const { op, before, after } = await scenario.setup(h.store, path);
              const dying = await h.newStore();
              crash.arm(afterWrites, applyLast);
              const outcome = await op(dying).then(
                () => undefined,
                (e: unknown) => e,
              );
              const fired = crash.fired();
              crash.heal();
              if (fired) {
                expect(outcome, 'the interrupted write reports a StoreError').toBeInstanceOf(StoreError);
                expectNoLeak(outcome, hidden());
                // Between the crash and the re-run, readers see the old current or the new one, whole.
                const midway = await h.store.readCurrent(path);
                expect([before, after.current]).toContain(midway?.apiKeySid);
              } else {
                expect(outcome).toBeUndefined();
              }
              const rerun = await h.newStore();
              await op(rerun);
              expect(summary(await rerun.read(path)), `${scenario.name}, crash after ${afterWrites} writes, applyLast=${applyLast}`).toEqual(after);
              expect((await rerun.readCurrent(path))?.apiKeySid).toBe(after.current);
              await h.assertConsistent?.(path);
              if (!fired) return;
            }
          }
          throw new Error(`${scenario.name} still crashing after 8 writes: the harness never let it finish`);
        });
      }
    });

    it('refuses to stage another value under the same rotation id (store_conflict)', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      const other = { ...a, apiKeySecret: new Secret(SECRET_MARKER + 'other-' + randomBytes(8).toString('hex')) };
      const err = await expectStoreError(h.store.putPending(p, r, other), 'store_conflict');
      expect(err.transient).toBe(true);
      const after = await h.store.read(p);
      expect(summary(after)).toEqual({ current: c.apiKeySid, pending: a.apiKeySid, pendingRotation: r });
      expectSameCredential(after.pending?.credential, a);
    });

    it('replaces a stale pending of another rotation', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const stale = credential();
      const r1 = randomUUID();
      await h.store.putPending(p, r1, stale);
      const b = credential();
      const r2 = randomUUID();
      await h.store.putPending(p, r2, b);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid, pending: b.apiKeySid, pendingRotation: r2 });
      await h.store.discardPending(p, r1);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid, pending: b.apiKeySid, pendingRotation: r2 });
      await expectStoreError(h.store.promotePending(p, r1, stale.apiKeySid), 'store_state');
      await h.store.promotePending(p, r2, b.apiKeySid);
      expect(summary(await h.store.read(p))).toEqual({ current: b.apiKeySid, previous: c.apiKeySid });
    });

    it('promotes only the pending it was asked for', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      await expectStoreError(h.store.promotePending(p, randomUUID(), sid('SK')), 'store_state');
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      await expectStoreError(h.store.promotePending(p, r, sid('SK')), 'store_state');
      await expectStoreError(h.store.promotePending(p, randomUUID(), a.apiKeySid), 'store_state');
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid, pending: a.apiKeySid, pendingRotation: r });
      // Current already holding the key is success, whatever rotation id comes with it.
      await h.store.promotePending(p, randomUUID(), c.apiKeySid);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid, pending: a.apiKeySid, pendingRotation: r });
    });

    it('discards only its own rotation’s pending', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const r = randomUUID();
      await h.store.putPending(p, r, credential());
      await h.store.discardPending(p, randomUUID());
      expect(summary(await h.store.read(p)).pendingRotation).toBe(r);
      await h.store.discardPending(p, r);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid });
      expectSameCredential(await h.store.readCurrent(p), c);
    });

    it('drops previous only when it holds the named key', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = await rotate(h.store, p);
      await h.store.dropPrevious(p, a.apiKeySid);
      await h.store.dropPrevious(p, sid('SK'));
      expect(summary(await h.store.read(p))).toEqual({ current: a.apiKeySid, previous: c.apiKeySid });
    });

    it('restorePrevious rolls a promotion back, and the next rotation works', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = await rotate(h.store, p);
      await h.store.restorePrevious(p, a.apiKeySid);
      expectSameCredential(await h.store.readCurrent(p), c);
      const restored = await h.store.read(p);
      expect(summary(restored)).toEqual({ current: c.apiKeySid });
      await h.store.restorePrevious(p, a.apiKeySid);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid });
      const b = await rotate(h.store, p);
      expect(summary(await h.store.read(p))).toEqual({ current: b.apiKeySid, previous: c.apiKeySid });
    });

    it('restorePrevious rolls a bootstrap back to no credential, and a new bootstrap works', async () => {
      const p = newPath();
      const a = await bootstrap(h.store, p);
      await h.store.restorePrevious(p, a.apiKeySid);
      expect(await h.store.readCurrent(p)).toBeUndefined();
      expect(summary(await h.store.read(p))).toEqual({});
      const b = await bootstrap(h.store, p);
      expectSameCredential(await h.store.readCurrent(p), b);
      expect(summary(await h.store.read(p))).toEqual({ current: b.apiKeySid });
    });

    it('restorePrevious leaves alone a current that does not hold the key', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      await h.store.restorePrevious(p, a.apiKeySid);
      expect(summary(await h.store.read(p))).toEqual({ current: c.apiKeySid, pending: a.apiKeySid, pendingRotation: r });
    });

    it('ends consistent, with exactly one current, when two workers race the same writes 10× each', async () => {
      const p = newPath();
      const other = await h.newStore();
      const racers = [h.store, other];
      const race = async (write: (s: SecretStore) => Promise<void>): Promise<void> => {
        await Promise.all(Array.from({ length: 20 }, (_, i) => retryingConflicts(() => write(racers[i % 2] as SecretStore))));
      };
      // Bootstrap race: both create the secret.
      const a = credential();
      const r1 = randomUUID();
      await race((s) => s.putPending(p, r1, a));
      expect(summary(await h.store.read(p))).toEqual({ pending: a.apiKeySid, pendingRotation: r1 });
      await race((s) => s.promotePending(p, r1, a.apiKeySid));
      expect(summary(await h.store.read(p))).toEqual({ current: a.apiKeySid });
      await h.assertConsistent?.(p);

      const b = credential();
      const r2 = randomUUID();
      await race((s) => s.putPending(p, r2, b));
      await race((s) => s.promotePending(p, r2, b.apiKeySid));
      for (const s of racers) {
        expect(summary(await s.read(p))).toEqual({ current: b.apiKeySid, previous: a.apiKeySid });
        expectSameCredential(await s.readCurrent(p), b);
      }
      await h.assertConsistent?.(p);
    });

    it('hands readers a complete current credential at every moment of 20 rotations', async () => {
      const p = newPath();
      const known = new Map<string, string>();
      const first = credential();
      known.set(first.apiKeySid, first.apiKeySecret.reveal());
      await bootstrap(h.store, p, first);
      const reader = await h.newStore();
      let done = false;
      let reads = 0;
      const readLoop = (async () => {
        while (!done) {
          const c = await reader.readCurrent(p);
          reads++;
          expect(c, 'current vanished during a rotation').toBeDefined();
          expect(c?.accountSid).toBe(ACCOUNT);
          expect(known.get(c?.apiKeySid ?? ''), 'torn or unknown credential').toBe(c?.apiKeySecret.reveal());
        }
      })();
      try {
        let previous = first;
        for (let i = 0; i < 20; i++) {
          const next = credential();
          known.set(next.apiKeySid, next.apiKeySecret.reveal());
          const r = randomUUID();
          await h.store.putPending(p, r, next);
          await h.store.promotePending(p, r, next.apiKeySid);
          await h.store.dropPrevious(p, previous.apiKeySid);
          previous = next;
        }
      } finally {
        done = true;
        await readLoop;
      }
      expect(reads).toBeGreaterThan(20);
    });

    it('reports a principal without permissions as store_permission, on every operation', async (ctx) => {
      if (!h.breakPermissions) return ctx.skip();
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      await h.breakPermissions();
      const store = h.store;
      for (const work of [
        () => store.readCurrent(p),
        () => store.read(p),
        () => store.putPending(p, randomUUID(), credential()),
        () => store.promotePending(p, r, a.apiKeySid),
        () => store.discardPending(p, r),
        () => store.restorePrevious(p, c.apiKeySid),
        () => store.dropPrevious(p, c.apiKeySid),
        () => store.check(),
      ]) {
        const err = await expectStoreError(work(), 'store_permission');
        expect(err.transient).toBe(false);
      }
    });

    it('reads but refuses writes when only writes are denied', async (ctx) => {
      if (!h.denyWrites) return ctx.skip();
      const p = newPath();
      const c = await bootstrap(h.store, p);
      await h.denyWrites(true);
      expectSameCredential(await h.store.readCurrent(p), c);
      await expectStoreError(h.store.putPending(p, randomUUID(), credential()), 'store_permission');
      await h.denyWrites(false);
      await rotate(h.store, p);
    });

    it('reports a credential the backend does not accept as store_permission', async (ctx) => {
      if (!h.unauthorizedStore) return ctx.skip();
      const stranger = await h.unauthorizedStore();
      const p = newPath();
      await expectStoreError(stranger.readCurrent(p), 'store_permission');
      await expectStoreError(stranger.putPending(p, randomUUID(), credential()), 'store_permission');
      await expectStoreError(stranger.check(), 'store_permission');
    });

    it('reports an outage as store_unavailable (transient) and works again afterwards', async (ctx) => {
      if (!h.makeUnavailable || !h.restoreAvailability) return ctx.skip();
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = credential();
      const r = randomUUID();
      await h.makeUnavailable();
      const store = h.store;
      for (const work of [() => store.readCurrent(p), () => store.read(p), () => store.putPending(p, r, a), () => store.promotePending(p, r, a.apiKeySid), () => store.check()]) {
        const err = await expectStoreError(work(), 'store_unavailable');
        expect(err.transient).toBe(true);
      }
      await h.restoreAvailability();
      expectSameCredential(await h.store.readCurrent(p), c);
      await h.store.putPending(p, r, a);
      await h.store.promotePending(p, r, a.apiKeySid);
      expectSameCredential(await h.store.readCurrent(p), a);
    });

    it('reports an unreachable backend as store_unavailable', async (ctx) => {
      if (!h.unreachableStore) return ctx.skip();
      const lost = await h.unreachableStore();
      const p = newPath();
      for (const work of [() => lost.readCurrent(p), () => lost.putPending(p, randomUUID(), credential()), () => lost.check()]) {
        const err = await expectStoreError(work(), 'store_unavailable');
        expect(err.transient).toBe(true);
      }
    });

    it('never shows the secret in errors or in printed results', async () => {
      const p = newPath();
      const c = await bootstrap(h.store, p);
      const a = credential();
      const r = randomUUID();
      await h.store.putPending(p, r, a);
      const errors: unknown[] = [];
      const collect = (work: Promise<unknown>): Promise<void> =>
        work.then(
          () => undefined,
          (e: unknown) => void errors.push(e),
        );
      // Writes carrying a secret that fail for every reason the harness can produce.
      await collect(h.store.putPending(p, r, { ...a, apiKeySecret: new Secret(SECRET_MARKER + 'conflicting') }));
      if (h.unreachableStore) await collect((await h.unreachableStore()).putPending(p, randomUUID(), credential()));
      if (h.unauthorizedStore) await collect((await h.unauthorizedStore()).putPending(p, randomUUID(), credential()));
      if (h.makeUnavailable && h.restoreAvailability) {
        await h.makeUnavailable();
        await collect(h.store.putPending(p, randomUUID(), credential()));
        await h.restoreAvailability();
      }
      expect(errors.length).toBeGreaterThan(0);
      for (const err of errors) expectNoLeak(err, hidden());

      const entry = await h.store.read(p);
      const current = await h.store.readCurrent(p);
      for (const printed of [inspect(entry, { depth: 10 }), JSON.stringify(entry), inspect(current), JSON.stringify(current), `${String(current?.apiKeySecret)}`]) {
        expect(printed).not.toContain(SECRET_MARKER);
      }
      expect(current?.apiKeySecret.reveal()).toBe(c.apiKeySecret.reveal());
    });

    it('passes its readiness check', async () => {
      await h.store.check();
    });
  });
}
