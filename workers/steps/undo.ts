import { PermanentError } from '../../src/domain/errors.ts';
import { credentialOf, stagingId, type RotationRecord, type UndoState } from '../../src/domain/rotation.ts';
import type { StepContext } from './context.ts';
import { heldIds, kindSteps } from './kinds/index.ts';

export type UndoOutcome =
  | { kind: 'persist'; undo: UndoState; detail: string }
  | { kind: 'wait'; until: number; reason: string }
  | { kind: 'finished'; detail: string };

/**
 * Undo a rotation that has not reached delete-old (cancel, rollback, or a permanent failure):
 * the old key becomes current again, and the new key is deleted at Twilio only once no
 * application can still hold it — after a drain when it had been current.
 *
 * Each call does one phase and says what to persist; the decision to drain is persisted before
 * the store is touched, so a crash between the two cannot skip the drain.
 */
export async function undoRotation(ctx: StepContext, rec: RotationRecord): Promise<UndoOutcome> {
  const undo = rec.undo;
  if (!undo) throw new PermanentError('invariant', 'undo without an undo request');
  const path = ctx.secretPath(rec.accountSid, rec.credential);

  const kind = kindSteps(rec);
  if (!undo.deleteAfter) await kind.assertUndoable?.(ctx, rec);
  if (undo.drain === undefined) {
    const entry = await ctx.store.read(path);
    const wasCurrent = !!rec.newKeySid && (entry.current?.credential.apiKeySid === rec.newKeySid || rec.operationalizedAt !== undefined);
    return { kind: 'persist', undo: { ...undo, drain: wasCurrent }, detail: wasCurrent ? 'new key was current: restoring the old key, then draining' : 'new key was never current' };
  }

  if (undo.drain && !undo.deleteAfter) {
    if (rec.newKeySid) await ctx.store.restorePrevious(path, rec.newKeySid);
    await ctx.store.discardPending(path, stagingId(rec));
    const deleteAfter = new Date(ctx.now() + ctx.drainMs).toISOString();
    return { kind: 'persist', undo: { ...undo, deleteAfter }, detail: `old key ${rec.oldKeySid ?? '(none)'} is current again; new key deleted after ${deleteAfter}` };
  }

  if (undo.deleteAfter && ctx.now() < Date.parse(undo.deleteAfter)) {
    return { kind: 'wait', until: Date.parse(undo.deleteAfter), reason: `draining the new key until ${undo.deleteAfter}` };
  }

  if (!undo.drain) await ctx.store.discardPending(path, stagingId(rec));
  // Whatever happened before, delete only keys of this rotation that no stage of the store holds.
  const held = heldIds(await ctx.store.read(path));
  if (rec.newKeySid && held.has(rec.newKeySid)) {
    throw new PermanentError('refused_delete_current', `refusing to delete ${rec.newKeySid}: the store still holds it for ${credentialOf(rec)}`);
  }
  return { kind: 'finished', detail: await kind.discardNew(ctx, rec, held) };
}
