import { PermanentError } from '../../src/domain/errors.ts';
import { credentialOf, type RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext, StepOutcome } from './context.ts';
import { verifyWithPropagation } from './verify.ts';

/**
 * Step 3. Wait until every consumer can have moved to the new key — the drain since
 * operationalize, then any further gate (consumer pickup reports) — and verify the new key again.
 * Waiting is a delayed job, not a sleeping worker. An urgent rotation (a leaked key) passes the
 * gates: its admin chose to kill the old key before every consumer has reported the new one.
 */
export async function promoteNewKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const now = ctx.now();
  const drainEnds = Date.parse(rec.promoteAfter ?? rec.operationalizedAt ?? '') || now;
  if (now < drainEnds) return { kind: 'wait', until: drainEnds, reason: `drain until ${new Date(drainEnds).toISOString()}` };
  for (const gate of rec.urgent ? [] : ctx.gates) {
    const verdict = await gate.check(rec, now);
    if (!verdict.ready) return { kind: 'wait', until: verdict.retryAt, reason: `${gate.name}: ${verdict.reason}` };
  }
  ctx.crash('promote:start');
  const current = await ctx.store.readCurrent(ctx.secretPath(rec.accountSid, rec.credential));
  if (!current || current.apiKeySid !== rec.newKeySid) {
    throw new PermanentError('store_drift', `the store's current key for ${credentialOf(rec)} is ${current?.apiKeySid ?? 'missing'}, not this rotation's ${rec.newKeySid}: something else wrote the secret`);
  }
  await verifyWithPropagation(ctx, current);
  ctx.crash('promote:done');
  return { kind: 'advance', patch: {}, next: 'delete-old', detail: 'new key verified, primary' };
}
