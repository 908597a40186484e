import type { SecretStore } from '../providers/secret-store.ts';
import type { TwilioKeyOps } from '../src/twilio/admin.ts';
import type { AuthTokenOps, RestrictedKeyOps } from '../src/twilio/kinds.ts';
import type { StepContext } from './steps/context.ts';

/**
 * The step context one delivery of a job works with: every call that changes Twilio or the store
 * first asks `fence` (the delivery's step lease, `HeldLease.assertHeld`), which throws once another
 * worker may be running the rotation. Reads pass straight through: a stale read is harmless, a
 * stale write or delete is not (it could delete the key another delivery just created and made
 * current, or create a key nobody will ever clean up).
 */
/** The calls that change Twilio or the store, by the member of the context that makes them (names checked against the interfaces). */
const TWILIO_WRITES: ReadonlySet<string | symbol> = new Set(['createKey', 'deleteKey'] satisfies (keyof TwilioKeyOps)[]);
const STORE_WRITES: ReadonlySet<string | symbol> = new Set(['putPending', 'promotePending', 'discardPending', 'restorePrevious', 'dropPrevious'] satisfies (keyof SecretStore)[]);
const KIND_WRITES: ReadonlySet<string | symbol> = new Set(
  ['createRestrictedKey', 'deleteIamKey', 'createSecondaryAuthToken', 'deleteSecondaryAuthToken', 'promoteSecondaryAuthToken'] satisfies (keyof (RestrictedKeyOps & AuthTokenOps))[],
);

export function fencedContext(ctx: StepContext, fence: () => Promise<void>): StepContext {
  const fenced: StepContext = {
    ...ctx,
    twilio: guard(ctx.twilio, TWILIO_WRITES, fence),
    store: guard(ctx.store, STORE_WRITES, fence),
  };
  if (ctx.credentialOps) fenced.credentialOps = guard(ctx.credentialOps, KIND_WRITES, fence);
  return fenced;
}

/** `target` with `writes` waiting for `fence` first; every other member as it is (methods bound to `target`). */
function guard<T extends object>(target: T, writes: ReadonlySet<string | symbol>, fence: () => Promise<void>): T {
  return new Proxy(target, {
    get(t, name) {
      const value: unknown = Reflect.get(t, name, t);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (!writes.has(name)) return fn.bind(t);
      return async (...args: unknown[]) => {
        await fence();
        return fn.apply(t, args);
      };
    },
  });
}
