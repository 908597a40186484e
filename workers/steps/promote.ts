import { PermanentError } from '../../src/domain/errors.ts';
import { credentialOf, type RotationRecord } from '../../src/domain/rotation.ts';
import type { StepContext, StepOutcome } from './context.ts';
import { kindSteps } from './kinds/index.ts';

/**
 * Step 3. Wait until every consumer can have moved to the new credential — the drain since
 * operationalize (or, with the consumer gate, until every live consumer reports the new key), then
 * any further gate — verify it again, and make it the primary at Twilio where the kind has such a
 * switch (the Auth Token's promotion, after which the old token fails). Waiting is a delayed job,
 * not a sleeping worker. An urgent rotation (a leaked key) waits its own short drain and passes
 * the gates: its admin chose to kill the old key before every consumer has reported the new one.
 * A force-promote (an operator, audited) passes the drain and the gates alike.
 */
export async function promoteNewKey(ctx: StepContext, rec: RotationRecord): Promise<StepOutcome> {
  const now = ctx.now();
  const drainEnds = Date.parse(rec.promoteAfter ?? rec.operationalizedAt ?? '') || now;
  let patch: Partial<RotationRecord> = {};
  let gateDetail = '';
  if (!rec.forcePromote) {
    if (ctx.drainGate && !rec.urgent) {
      const verdict = await ctx.drainGate.decide(rec, now, drainEnds);
      patch = verdict.patch ?? {};
      if (!verdict.ready) return { kind: 'wait', until: verdict.retryAt, reason: verdict.reason, patch };
      if (verdict.detail) gateDetail = `; ${verdict.detail}`;
    } else if (now < drainEnds) return { kind: 'wait', until: drainEnds, reason: `drain until ${new Date(drainEnds).toISOString()}` };
    for (const gate of rec.urgent ? [] : ctx.gates) {
      const verdict = await gate.check(rec, now);
      if (!verdict.ready) return { kind: 'wait', until: verdict.retryAt, reason: `${gate.name}: ${verdict.reason}`, patch };
    }
  } else gateDetail = `; force-promoted by ${rec.forcePromote.by ?? 'an operator'}`;
  ctx.crash('promote:start');
  const kind = kindSteps(rec);
  const entry = await ctx.store.read(ctx.secretPath(rec.accountSid, rec.credential));
  const current = entry.current?.credential;
  if (!current || current.apiKeySid !== rec.newKeySid) {
    throw new PermanentError('store_drift', `the store's current ${kind.noun} for ${credentialOf(rec)} is ${current?.apiKeySid ?? 'missing'}, not this rotation's ${rec.newKeySid}: something else wrote the secret`);
  }
  await kind.verify(ctx, rec, current);
  const detail = await kind.makePrimary(ctx, rec, current, entry);
  ctx.crash('promote:done');
  return { kind: 'advance', patch, next: 'delete-old', detail: `${detail}${gateDetail}` };
}
