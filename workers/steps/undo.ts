import { PermanentError, RotatorError } from '../../src/domain/errors.ts';
import { credentialOf, stagingId, type RotationRecord, type UndoState } from '../../src/domain/rotation.ts';
import { keyName, type StepContext } from './context.ts';

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
  const entry = await ctx.store.read(path);
  const held = new Set([entry.current, entry.pending, entry.previous].filter((v) => v).map((v) => v!.credential.apiKeySid));
  if (rec.newKeySid && held.has(rec.newKeySid)) {
    throw new PermanentError('refused_delete_current', `refusing to delete ${rec.newKeySid}: the store still holds it for ${credentialOf(rec)}`);
  }
  const name = keyName(ctx.keyNamePrefix, rec.id);
  const deleted: string[] = [];
  let keys;
  try {
    keys = await ctx.twilio.listKeys(rec.accountSid);
  } catch (err) {
    // Twilio does not know the subaccount (404): no key of it exists, so none is left to delete.
    // Stopping here would hold the subaccount for a failure that left nothing behind at Twilio.
    if (err instanceof RotatorError && err.code === 'twilio_not_found') return { kind: 'finished', detail: `no new key to delete: Twilio does not know ${rec.accountSid}` };
    throw err;
  }
  for (const key of keys) {
    if ((key.sid === rec.newKeySid || key.friendlyName === name) && !held.has(key.sid)) {
      if ((await ctx.twilio.deleteKey(rec.accountSid, key.sid)) === 'deleted') deleted.push(key.sid);
    }
  }
  return { kind: 'finished', detail: deleted.length ? `deleted new key ${deleted.join(', ')}` : 'no new key to delete' };
}
