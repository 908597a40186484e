import type { StepContext } from './steps/context.ts';

/**
 * The step context one delivery of a job works with: every call that changes Twilio or the store
 * first asks `fence` (the delivery's step lease, `HeldLease.assertHeld`), which throws once another
 * worker may be running the rotation. Reads pass straight through: a stale read is harmless, a
 * stale write or delete is not (it could delete the key another delivery just created and made
 * current, or create a key nobody will ever clean up).
 */
export function fencedContext(ctx: StepContext, fence: () => Promise<void>): StepContext {
  const fenced: StepContext = {
    ...ctx,
    twilio: guard(ctx.twilio, ['createKey', 'deleteKey'], fence),
    store: guard(ctx.store, ['putPending', 'promotePending', 'discardPending', 'restorePrevious', 'dropPrevious'], fence),
  };
  if (ctx.credentialOps) {
    fenced.credentialOps = guard(ctx.credentialOps, ['createRestrictedKey', 'deleteIamKey', 'createSecondaryAuthToken', 'deleteSecondaryAuthToken', 'promoteSecondaryAuthToken'], fence);
  }
  return fenced;
}

/** `target` with `writes` waiting for `fence` first; every other member as it is (methods bound to `target`). */
function guard<T extends object>(target: T, writes: readonly (keyof T & string)[], fence: () => Promise<void>): T {
  const fencedNames = new Set<string | symbol>(writes);
  return new Proxy(target, {
    get(t, name) {
      const value: unknown = Reflect.get(t, name, t);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (!fencedNames.has(name)) return fn.bind(t);
      return async (...args: unknown[]) => {
        await fence();
        return fn.apply(t, args);
      };
    },
  });
}
