import { drainMsOf, nextStep, stagingId, type RotationRecord } from '../../src/domain/rotation.ts';
import { PermanentError } from '../../src/domain/errors.ts';
import type { StepContext, StepOutcome } from './context.ts';

/**
 * Step 2. The pending version becomes current; the old one stays valid at Twilio and readable as
 * previous. The drain clock starts when this record says so: if the process dies after the store
 * write, the re-run stamps a later time, which only lengthens the drain. An urgent rotation's
 * drain is the one it asked for (drainMsOf).
 */
export async function operationalizeNewKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  if (!rec.newKeySid) throw new PermanentError('invariant', 'operationalize without a new key');
  const path = ctx.secretPath(rec.accountSid, rec.credential);
  ctx.crash('operationalize:start');
  // promotePending is itself idempotent (a no-op once the new key is current).
  await ctx.store.promotePending(path, stagingId(rec), rec.newKeySid);
  ctx.crash('operationalize:after-store');
  const at = rec.operationalizedAt ?? new Date(ctx.now()).toISOString();
  const bootstrap = rec.oldKeySid === null;
  ctx.crash('operationalize:done');
  return {
    kind: 'advance',
    patch: { operationalizedAt: at, ...(bootstrap ? {} : { promoteAfter: new Date(Date.parse(at) + drainMsOf(rec, ctx.drainMs)).toISOString() }) },
    next: nextStep('operationalize', bootstrap),
    detail: bootstrap ? 'new key current (bootstrap)' : 'new key current; old key valid through the drain',
  };
}
