import { PermanentError } from '../../src/domain/errors.ts';
import { credentialOf, type RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext, StepOutcome } from './context.ts';
import { verifyWithPropagation } from './verify.ts';

/**
 * Step 3. Wait until every consumer can have moved to the new key — the drain since
 * operationalize (or, with the consumer gate, until every live consumer reports the new key), then
 * any further gate — and verify the new key again. Waiting is a delayed job, not a sleeping worker.
 * An urgent rotation (a leaked key) waits its own short drain and passes the gates: its admin chose
 * to kill the old key before every consumer has reported the new one. A force-promote (an operator,
 * audited) passes the drain and the gates alike.
 */
export async function promoteNewKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const now = ctx.now();
  const drainEnds = Date.parse(rec.promoteAfter ?? rec.operationalizedAt ?? '') || now;
  let patch: Partial<RotationRecord> = {};
  let detail = 'new key verified, primary';
  if (!rec.forcePromote) {
    if (ctx.drainGate && !rec.urgent) {
      const verdict = await ctx.drainGate.decide(rec, now, drainEnds);
      patch = verdict.patch ?? {};
      if (!verdict.ready) return { kind: 'wait', until: verdict.retryAt, reason: verdict.reason, patch };
      if (verdict.detail) detail = `${detail}; ${verdict.detail}`;
    } else if (now < drainEnds) return { kind: 'wait', until: drainEnds, reason: `drain until ${new Date(drainEnds).toISOString()}` };
    for (const gate of rec.urgent ? [] : ctx.gates) {
      const verdict = await gate.check(rec, now);
      if (!verdict.ready) return { kind: 'wait', until: verdict.retryAt, reason: `${gate.name}: ${verdict.reason}`, patch };
    }
  } else detail = `${detail}; force-promoted by ${rec.forcePromote.by ?? 'an operator'}`;
  ctx.crash('promote:start');
  const current = await ctx.store.readCurrent(ctx.secretPath(rec.accountSid, rec.credential));
  if (!current || current.apiKeySid !== rec.newKeySid) {
    throw new PermanentError('store_drift', `the store's current key for ${credentialOf(rec)} is ${current?.apiKeySid ?? 'missing'}, not this rotation's ${rec.newKeySid}: something else wrote the secret`);
  }
  await verifyWithPropagation(ctx, current);
  ctx.crash('promote:done');
  return { kind: 'advance', patch, next: 'delete-old', detail };
}
